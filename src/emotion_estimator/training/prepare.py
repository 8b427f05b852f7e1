"""FER2013 -> blendshape dataset: load, map classes, cap, detect + extract, augment, write.

Files in ``out``: ``dataset.parquet`` (one row per detected image or augmented copy and
preprocessing variant), ``undetected.parquet`` (the calls that found no face), ``samples.parquet``
(every loaded row with its label and whether the caps kept it), ``report.json`` / ``report.md``.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_parquet, write_text
from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError
from ..features import DEFAULT_FACE_SIZE, FEATURES
from . import report as report_mod
from .augment import Preprocess
from .caps import apply_caps, class_map, parse_caps
from .extract import ExtractConfig, extract, make_chunks
from .fer2013 import load

META_COLUMNS = ("image_id", "split", "source_label", "label", "augmented", "aug_params",
                "preprocess")
GEOMETRY_COLUMNS = ("landmarks", "face")  # raw bytes of the features module's inputs
DATASET = "dataset.parquet"
WORK = ".work"


@dataclass
class PrepareOptions:
    """Everything that defines a prepared dataset (and its resumable work folder)."""

    fer2013: Path
    out: Path
    limit: int | None = None
    classes: str = "3"
    caps: str = "paper"
    seed: int = 0
    preprocess: tuple[str, ...] = ("pad",)
    pad: int = 12
    size: int = 144
    augment_copies: int = 1
    max_angle: float = 36.0
    min_detection_confidence: float = 0.5
    workers: int = 1
    chunk_size: int = 256
    on_bad_row: str = "stop"
    force: bool = False
    progress: bool = True
    table3_full: bool = False
    model_path: str | None = None
    face_size: int = DEFAULT_FACE_SIZE


def is_finished(out: Path) -> bool:
    return (out / DATASET).is_file()


def prepare(opts: PrepareOptions) -> dict:
    """Build the dataset in ``opts.out``; returns the report dict (also written as files)."""
    import mediapipe

    from ..assets import landmarker_path, sha256_of

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
    mapping = class_map(opts.classes)
    caps = parse_caps(opts.caps)
    model = landmarker_path(opts.model_path)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    data = load(opts.fer2013, limit=opts.limit, on_bad_row=opts.on_bad_row)
    timings["load"] = round(time.perf_counter() - start, 2)
    samples = data.samples.copy()
    samples["label"] = samples["source_label"].map(mapping)
    samples["kept"] = apply_caps(samples, caps, opts.seed).to_numpy()
    kept = samples["kept"].to_numpy()
    copies = np.where(samples["split"].to_numpy() == "train", opts.augment_copies, 0)[kept]
    ids = samples["image_id"].to_numpy()[kept]

    config = ExtractConfig(variants=variants, seed=opts.seed, max_angle=opts.max_angle,
                           min_detection_confidence=opts.min_detection_confidence,
                           model_path=str(model), face_size=opts.face_size)
    fingerprint = _fingerprint(opts, config, ids, copies, data.pixels[kept])
    work = out / WORK / fingerprint
    work.mkdir(parents=True, exist_ok=True)
    chunks = make_chunks(ids, copies, data.pixels[kept], opts.chunk_size)
    total = sum(c.n_tasks for c in chunks) * len(variants)
    start = time.perf_counter()
    with _Bar(total, opts.progress) as bar:
        extracted = extract(chunks, config, work, workers=opts.workers, progress=bar.update)
    timings["extract"] = round(time.perf_counter() - start, 2)
    resumed = bar.initial or 0

    start = time.perf_counter()
    extracted = _with_labels(extracted, samples)
    detected = extracted["detected"].to_numpy()
    dataset = extracted.loc[detected, [*META_COLUMNS, *BLENDSHAPE_NAMES, *GEOMETRY_COLUMNS]]
    dataset = dataset.reset_index(drop=True)
    undetected = extracted.loc[~detected, list(META_COLUMNS)].reset_index(drop=True)
    counts = report_mod.build(samples, extracted, [v.name for v in variants],
                              list(dict.fromkeys(mapping.values())))
    timings["assemble"] = round(time.perf_counter() - start, 2)
    table3 = None
    if opts.table3_full:
        start = time.perf_counter()
        dropped = _extract_dropped(opts, config, samples, data.pixels, out / WORK)
        timings["extract_table3"] = round(time.perf_counter() - start, 2)
        train = extracted[(extracted["split"] == "train") & (extracted["copy"] == 0)]
        counts["table3_full_train"] = report_mod.table3_full(
            pd.concat([train, dropped], ignore_index=True), [v.name for v in variants])
        table3 = {"images_dropped_by_caps": len(dropped) // len(variants), "calls": len(dropped)}

    report = {
        "input": str(opts.fer2013), "rows_loaded": len(samples),
        "bad_rows": [str(b) for b in data.bad_rows],
        "class_map": mapping, "caps": caps, "seed": opts.seed,
        "augment": {"copies": opts.augment_copies, "max_angle": opts.max_angle,
                    "flip_p": 0.5, "split": "train"},
        "preprocess": [v.describe() for v in variants],
        "min_detection_confidence": opts.min_detection_confidence,
        "features": {**{k: f"v{v}" for k, v in FEATURES.items()}, "face_size": opts.face_size},
        "limit": opts.limit, "workers": opts.workers, "chunk_size": opts.chunk_size,
        "versions": {"mediapipe": mediapipe.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": sys.version.split()[0]},
        "landmarker_sha256": sha256_of(model),
        "fingerprint": fingerprint, "calls": total, "calls_resumed": resumed,
        "calls_per_s": round((total - resumed) / max(timings["extract"], 1e-9), 1),
        "timings": timings, "rows": {"dataset": len(dataset), "undetected": len(undetected)},
        "counts": counts,
    }
    if table3 is not None:
        report["table3_full"] = table3
    write_parquet(samples, out / "samples.parquet")
    write_parquet(undetected, out / "undetected.parquet")
    write_text(json.dumps(report, indent=2) + "\n", out / "report.json")
    write_text(report_mod.markdown(report), out / "report.md")
    write_parquet(dataset, out / DATASET)  # last: its presence marks a finished run
    shutil.rmtree(out / WORK, ignore_errors=True)
    return report


def _extract_dropped(opts: PrepareOptions, config: ExtractConfig, samples: pd.DataFrame,
                     pixels: np.ndarray, work_root: Path) -> pd.DataFrame:
    """MediaPipe on the train images the caps dropped (originals only), in resumable shards."""
    dropped = ((samples["split"] == "train") & ~samples["kept"]).to_numpy()
    ids = samples["image_id"].to_numpy()[dropped]
    copies = np.zeros(len(ids), dtype=np.int64)
    fingerprint = _fingerprint(opts, config, ids, copies, pixels[dropped])
    chunks = make_chunks(ids, copies, pixels[dropped], opts.chunk_size)
    with _Bar(len(ids) * len(config.variants), opts.progress, "table3") as bar:
        extracted = extract(chunks, config, work_root / f"table3-{fingerprint}",
                            workers=opts.workers, progress=bar.update)
    return _with_labels(extracted, samples)


def _with_labels(extracted: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Add split, source_label, label (from the image id) and the augmented flag."""
    meta = samples.set_index("image_id")[["split", "source_label", "label"]]
    extracted = extracted.join(meta, on="image_id")
    extracted["augmented"] = extracted["copy"] > 0
    return extracted


def _fingerprint(opts: PrepareOptions, config: ExtractConfig, ids: np.ndarray,
                 copies: np.ndarray, pixels: np.ndarray) -> str:
    """Hash of everything that decides the shards' content, so a resume never mixes runs."""
    digest = hashlib.sha256()
    settings = {"variants": [v.describe() for v in config.variants], "seed": config.seed,
                "max_angle": config.max_angle, "conf": config.min_detection_confidence,
                "model": config.model_path, "chunk_size": opts.chunk_size,
                "features": FEATURES, "face_size": config.face_size}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for array in (ids, copies, pixels):
        digest.update(np.ascontiguousarray(array).tobytes())
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

