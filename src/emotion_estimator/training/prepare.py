"""FER2013 or a labelled folder -> blendshape dataset: load, label, cap, detect + extract,
augment, write.

The source (:mod:`.sources`) gives the samples and how to load each image; the rest is shared.
Files in ``out``: ``dataset.parquet`` (one row per detected image or augmented copy and
preprocessing variant), ``undetected.parquet`` (the calls that found no face), ``samples.parquet``
(every loaded row with its label and whether the caps kept it), ``report.json`` / ``report.md``.
A folder source's images are used as they are (preprocess ``raw``): its ``test`` split is the
folder's fixed held-out part, the one it is scored on when it is used for training.
With ``table3_full`` the train images the caps dropped also go through MediaPipe (own shards),
only to count Table 3 over the whole train split; the three Parquet files stay the same.
``dataset.parquet`` is written last: once it exists the run is finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_parquet, write_text
from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError
from ..features import DEFAULT_FACE_SIZE, FEATURES
from . import report as report_mod
from .augment import Preprocess
from .extract import ExtractConfig, describe_loader, extract, make_chunks
from .sources import FOLDER_HOLDOUT, FOLDER_VAL, Source, fer2013_source, folder_source

META_COLUMNS = ("image_id", "split", "source_label", "label", "augmented", "aug_params",
                "preprocess")
GEOMETRY_COLUMNS = ("landmarks", "face")  # raw bytes of the features module's inputs
DATASET = "dataset.parquet"
WORK = ".work"


@dataclass(kw_only=True)
class PrepareOptions:
    """Everything that defines a prepared dataset (and its resumable work folder).

    Exactly one source: ``fer2013`` (with ``classes``, ``caps``, ``on_bad_row``,
    ``table3_full``, ``labels``/``ferplus``) or ``folder`` (with ``class_map``, ``holdout``,
    ``val``, ``on_bad_image``). ``None`` = the source's default (see :meth:`resolved`).
    """

    out: Path
    fer2013: Path | None = None
    folder: Path | None = None
    limit: int | None = None
    classes: str | None = None  # FER2013: 3
    caps: str | None = None  # FER2013: paper
    labels: str = "fer"  # FER2013: fer | ferplus
    ferplus: Path | None = None  # FER+ votes CSV (labels="ferplus")
    on_bad_row: str | None = None  # FER2013: stop
    table3_full: bool = False
    class_map: str | None = None  # folder: the default map of .folders
    holdout: float | None = None  # folder: FOLDER_HOLDOUT
    val: float | None = None  # folder: FOLDER_VAL
    on_bad_image: str | None = None  # folder: skip
    seed: int = 0
    preprocess: tuple[str, ...] | None = None  # FER2013: pad; folder: raw (only)
    pad: int = 12
    size: int = 144
    augment_copies: int | None = None  # FER2013: 1; folder: 0
    max_angle: float = 36.0
    min_detection_confidence: float = 0.5
    retry_stills: bool = False
    workers: int = 1
    chunk_size: int = 256
    force: bool = False
    progress: bool = True
    model_path: str | None = None
    face_size: int = DEFAULT_FACE_SIZE

    def resolved(self) -> PrepareOptions:
        """A copy with each ``None`` replaced by its source's default; an :class:`InputError`
        for no source, both, or an option the chosen source does not take."""
        if (self.fer2013 is None) == (self.folder is None):
            raise InputError("give exactly one source: --fer2013 PATH or --folder DIR")
        if self.fer2013 is not None:
            wrong = {"--class-map": self.class_map, "--holdout": self.holdout,
                     "--val": self.val, "--on-bad-image": self.on_bad_image}
            _only_with("--fer2013", "--folder", wrong)
            return replace(self, classes=self.classes or "3", caps=self.caps or "paper",
                           on_bad_row=self.on_bad_row or "stop",
                           preprocess=self.preprocess or ("pad",),
                           augment_copies=_default(self.augment_copies, 1))
        wrong = {"--classes": self.classes, "--caps": self.caps, "--on-bad-row": self.on_bad_row,
                 "--table3-full": self.table3_full or None, "--ferplus": self.ferplus,
                 "--labels ferplus": None if self.labels == "fer" else self.labels}
        _only_with("--folder", "--fer2013", wrong)
        if self.preprocess not in (None, ("raw",)):
            raise InputError("--folder images are used as they are: --preprocess must be raw")
        return replace(self, preprocess=("raw",), holdout=_default(self.holdout, FOLDER_HOLDOUT),
                       val=_default(self.val, FOLDER_VAL),
                       on_bad_image=self.on_bad_image or "skip",
                       augment_copies=_default(self.augment_copies, 0))


def _default(value, default):
    return default if value is None else value


def _only_with(chosen: str, other: str, options: dict) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise InputError(f"{given[0]} belongs to {other}, not {chosen}")


def is_finished(out: Path) -> bool:
    return (out / DATASET).is_file()


def load_source(opts: PrepareOptions) -> Source:
    """The samples of the options' source (``opts`` resolved); reads only."""
    if opts.folder is not None:
        return folder_source(opts.folder, class_map_path=opts.class_map, limit=opts.limit,
                             holdout=opts.holdout, val=opts.val, on_bad_image=opts.on_bad_image)
    return fer2013_source(opts.fer2013, limit=opts.limit, classes=opts.classes, caps=opts.caps,
                          seed=opts.seed, on_bad_row=opts.on_bad_row, labels=opts.labels,
                          ferplus=opts.ferplus)


def prepare(opts: PrepareOptions) -> dict:
    """Build the dataset in ``opts.out``; returns the report dict (also written as files)."""
    import mediapipe

    from ..assets import landmarker_path, sha256_of

    opts = opts.resolved()
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if is_finished(out) and not opts.force:
        # with --force the old files stay until the new ones replace them, one by one
        raise InputError(f"{out} already holds a finished dataset; use --force to rebuild it")
    if opts.augment_copies < 0:
        raise InputError("--augment-copies must be 0 or more")
    if not 0 <= opts.max_angle <= 180:
        raise InputError("--max-angle must be within 0..180 degrees")
    try:
        variants = tuple(Preprocess(name, pad=opts.pad, size=opts.size)
                         for name in dict.fromkeys(opts.preprocess))
    except ValueError as exc:
        raise InputError(f"--preprocess: {exc}") from exc
    model = landmarker_path(opts.model_path)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    source = load_source(opts)  # every input error is raised here, before anything is written
    timings["load"] = round(time.perf_counter() - start, 2)
    samples = source.samples
    kept = samples["kept"].to_numpy()
    copies = np.where(samples["split"].to_numpy() == "train", opts.augment_copies, 0)[kept]
    ids = samples["image_id"].to_numpy()[kept]

    config = ExtractConfig(variants=variants, seed=opts.seed, max_angle=opts.max_angle,
                           min_detection_confidence=opts.min_detection_confidence,
                           model_path=str(model), face_size=opts.face_size,
                           loader=source.loader, extra_candidates=source.extra_candidates,
                           retry_stills=opts.retry_stills)
    fingerprint = _fingerprint(opts, config, source, ids, copies, kept)
    work = out / WORK / fingerprint
    work.mkdir(parents=True, exist_ok=True)
    chunks = make_chunks(ids, copies, source.items[kept], opts.chunk_size)
    total = sum(c.n_tasks for c in chunks) * len(variants)
    start = time.perf_counter()
    with _Bar(total, opts.progress) as bar:
        extracted = extract(chunks, config, work, workers=opts.workers, progress=bar.update)
    timings["extract"] = round(time.perf_counter() - start, 2)
    resumed = bar.initial or 0

    start = time.perf_counter()
    extracted = _with_labels(extracted, samples, source.extra_columns)
    detected = extracted["detected"].to_numpy()
    dataset = extracted.loc[detected, [*META_COLUMNS, *BLENDSHAPE_NAMES, *GEOMETRY_COLUMNS,
                                       *source.extra_columns]]
    dataset = dataset.reset_index(drop=True)
    undetected = extracted.loc[~detected, list(META_COLUMNS)].reset_index(drop=True)
    names = [v.name for v in variants]
    counts = (report_mod.build_folder(samples, extracted, names, source.classes)
              if source.kind == "folder" else
              report_mod.build(samples, extracted, names, source.classes))
    timings["assemble"] = round(time.perf_counter() - start, 2)
    table3 = None
    if opts.table3_full:
        start = time.perf_counter()
        dropped = _extract_dropped(opts, config, source, out / WORK)
        timings["extract_table3"] = round(time.perf_counter() - start, 2)
        train = extracted[(extracted["split"] == "train") & (extracted["copy"] == 0)]
        counts["table3_full_train"] = report_mod.table3_full(
            pd.concat([train, dropped], ignore_index=True), names)
        table3 = {"images_dropped_by_caps": len(dropped) // len(variants), "calls": len(dropped)}

    report = {
        "source": source.kind, "input": source.input, "rows_loaded": len(samples),
        **source.info,
        "class_map": source.class_map, "seed": opts.seed,
        "augment": {"copies": opts.augment_copies, "max_angle": opts.max_angle,
                    "flip_p": 0.5, "split": "train"},
        "preprocess": [v.describe() for v in variants],
        "min_detection_confidence": opts.min_detection_confidence,
        "retry_stills": opts.retry_stills,
        "features": {**{k: f"v{v}" for k, v in FEATURES.items()}, "face_size": opts.face_size},
        "limit": opts.limit, "workers": opts.workers, "chunk_size": opts.chunk_size,
        "versions": {"mediapipe": mediapipe.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": sys.version.split()[0]},
        "landmarker_sha256": sha256_of(model),
        "fingerprint": fingerprint, "calls": total, "calls_resumed": resumed,
        "calls_per_s": round((total - resumed) / max(timings["extract"], 1e-9), 1),
        "timings": timings,
        "rows": {"dataset": len(dataset), "undetected": len(undetected),
                 "dataset_by_split": {s: int((dataset["split"] == s).sum())
                                      for s in ("train", "val", "test")}},
        "counts": counts,
    }
    if source.kind == "folder":
        report["folder"] = {"holdout": opts.holdout, "val": opts.val,
                            "loader": config.loader.describe(),
                            "extra_candidates": config.extra_candidates}
    if table3 is not None:
        report["table3_full"] = table3
    write_parquet(samples, out / "samples.parquet")
    write_parquet(undetected, out / "undetected.parquet")
    write_text(json.dumps(report, indent=2) + "\n", out / "report.json")
    write_text(report_mod.markdown(report), out / "report.md")
    write_parquet(dataset, out / DATASET)  # last: its presence marks a finished run
    shutil.rmtree(out / WORK, ignore_errors=True)
    return report


def _extract_dropped(opts: PrepareOptions, config: ExtractConfig, source: Source,
                     work_root: Path) -> pd.DataFrame:
    """MediaPipe on the train images the caps dropped (originals only), in resumable shards."""
    samples = source.samples
    dropped = ((samples["split"] == "train") & ~samples["kept"]).to_numpy()
    ids = samples["image_id"].to_numpy()[dropped]
    copies = np.zeros(len(ids), dtype=np.int64)
    fingerprint = _fingerprint(opts, config, source, ids, copies, dropped)
    chunks = make_chunks(ids, copies, source.items[dropped], opts.chunk_size)
    with _Bar(len(ids) * len(config.variants), opts.progress, "table3") as bar:
        extracted = extract(chunks, config, work_root / f"table3-{fingerprint}",
                            workers=opts.workers, progress=bar.update)
    return _with_labels(extracted, samples)


def _with_labels(extracted: pd.DataFrame, samples: pd.DataFrame,
                 extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Add split, source_label, label, the ``extra`` columns (from the image id) and the
    augmented flag."""
    meta = samples.set_index("image_id")[["split", "source_label", "label", *extra]]
    extracted = extracted.join(meta, on="image_id")
    extracted["augmented"] = extracted["copy"] > 0
    return extracted


def _fingerprint(opts: PrepareOptions, config: ExtractConfig, source: Source, ids: np.ndarray,
                 copies: np.ndarray, mask: np.ndarray) -> str:
    """Hash of everything that decides the shards' content, so a resume never mixes runs:
    the extraction settings, the source's options, and each image's identity (FER2013: its
    pixels; a folder: path, size and modification time of its file)."""
    digest = hashlib.sha256()
    settings = {"variants": [v.describe() for v in config.variants], "seed": config.seed,
                "max_angle": config.max_angle, "conf": config.min_detection_confidence,
                "model": config.model_path, "chunk_size": opts.chunk_size,
                "features": FEATURES, "face_size": config.face_size,
                "loader": describe_loader(config.loader),
                "extra_candidates": config.extra_candidates, "source": source.settings,
                **({"retry_stills": True} if config.retry_stills else {})}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for array in (ids, copies):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(source.identity_bytes(mask))
    return digest.hexdigest()[:16]


class _Bar:
    """The tqdm bar, or a silent stand-in; ``initial`` counts work found already done."""

    def __init__(self, total: int, show: bool, desc: str = "mediapipe") -> None:
        from tqdm import tqdm

        self.initial = None
        self._bar = tqdm(total=total, unit="call", desc=desc, disable=not show,
                         smoothing=0.05, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.initial is None:
            self.initial = n
        self._bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

