"""What ``prepare`` extracts from: a *source* yields every sample (id, split, labels, whether
it is kept) with one item per sample and the loader that turns an item into an image.

- :func:`fer2013_source`: FER2013 (Kaggle CSV or image folders), the paper's class map and
  train caps; labels from FER2013 itself (``labels="fer"``) or the FER+ majority vote
  (``labels="ferplus"``, the vote counts kept as ``ferplus_*`` columns).
- :func:`folder_source`: a labelled folder of photos (:mod:`.folders`), used as they are; its
  fixed held-out part is the ``test`` split, a fixed share of the rest ``val``.

Everything here only reads: a bad input raises :class:`InputError` before ``prepare`` writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from . import ferplus as fp
from .caps import apply_caps, class_map, parse_caps
from .extract import StillFiles, pixels

FOLDER_HOLDOUT = 0.3  # default share of a folder held out as its test split
FOLDER_VAL = 0.15  # default share of the rest that becomes val


@dataclass
class Source:
    """Samples to extract and how to get their images.

    ``samples``: one row per loaded image: ``image_id, split, source_label, label, kept``
    plus ``extra_columns`` (copied into the dataset rows) and any other per-image columns
    (kept in ``samples.parquet`` only). ``items[i]`` is what ``loader`` turns into the image
    of ``samples.iloc[i]``; ``identity[i]`` what the resume fingerprint hashes for it.
    """

    kind: str  # "fer2013" | "folder"
    input: str
    samples: pd.DataFrame
    items: np.ndarray
    loader: Callable[[Any], np.ndarray]
    identity: np.ndarray
    classes: list[str]
    class_map: dict[str, str]
    settings: dict  # the options that define the samples (fingerprint and report)
    extra_columns: tuple[str, ...] = ()
    extra_candidates: int = 0  # MediaPipe detections beyond the largest face (extract)
    info: dict = field(default_factory=dict)  # source-specific report entries

    def identity_bytes(self, mask: np.ndarray) -> bytes:
        chosen = self.identity[mask]
        if chosen.dtype == object:
            return "\n".join(map(str, chosen)).encode()
        return np.ascontiguousarray(chosen).tobytes()


def fer2013_source(path: Path, *, limit: int | None = None, classes: str = "3",
                   caps: str = "paper", seed: int = 0, on_bad_row: str = "stop",
                   labels: str = "fer", ferplus: Path | None = None) -> Source:
    """FER2013 with the paper's class map and caps, or FER+ majority labels (see
    :mod:`.ferplus`: images without one are not kept; caps act on FER2013's own label)."""
    from .fer2013 import load

    if labels not in ("fer", "ferplus"):
        raise InputError(f"--labels must be fer or ferplus, not {labels!r}")
    if labels == "fer" and ferplus is not None:
        raise InputError("--ferplus is only read with --labels ferplus")
    if labels == "ferplus":
        if ferplus is None:
            raise InputError("--labels ferplus needs --ferplus VOTES_CSV (FER+ fer2013new.csv)")
        if classes != "3":
            raise InputError("--labels ferplus folds the votes into happy/sad/unknown: "
                             "leave --classes at 3")
        if Path(path).is_dir():
            raise InputError("--labels ferplus needs the Kaggle CSV: the votes follow its row "
                             "order, not an image-folder layout")
        votes = fp.read_votes(ferplus)  # a bad votes file stops before FER2013 is parsed
    mapping = class_map(classes)
    cap_spec = parse_caps(caps)
    data = load(path, limit=limit, on_bad_row=on_bad_row)
    samples = data.samples.copy()
    samples["label"] = samples["source_label"].map(mapping)
    settings: dict = {"source": "fer2013", "labels": labels, "classes": mapping,
                      "caps": cap_spec, "seed": seed}
    info: dict = {"bad_rows": [str(b) for b in data.bad_rows], "caps": cap_spec,
                  "labels": {"source": "fer"}}
    usable = np.ones(len(samples), dtype=bool)
    extra: tuple[str, ...] = ()
    out_classes = list(dict.fromkeys(mapping.values()))
    if labels == "ferplus":
        rows = _aligned_votes(votes, samples, Path(ferplus), limit, len(data.bad_rows))
        y, dropped = fp.majority(rows)
        fer_label = samples["label"].to_numpy()
        samples["label"] = pd.Series(np.array(fp.THREE, dtype=object)[np.maximum(y, 0)],
                                     index=samples.index).where(y >= 0)
        for name, column in zip(fp.VOTE_NAMES, fp.DATASET_COLUMNS, strict=True):
            samples[column] = rows[name].to_numpy().astype(np.int16)
        usable = y >= 0
        extra, out_classes = fp.DATASET_COLUMNS, list(fp.THREE)
        same = (samples["label"].to_numpy() == fer_label)[usable]
        info["labels"] = {"source": "ferplus", "votes": str(ferplus), "rule": fp.RULE,
                          "dropped": dropped, "labelled": int(usable.sum()),
                          "agree_with_fer": round(float(same.mean()), 4) if same.size else None}
        settings["votes_sha256"] = _sha256(Path(ferplus))
    kept = usable.copy()
    if usable.any():
        part = samples[usable]
        kept[usable] = apply_caps(part, cap_spec, seed).to_numpy()
    samples["kept"] = kept
    return Source("fer2013", str(path), samples, data.pixels, pixels, data.pixels, out_classes,
                  mapping, settings, extra_columns=extra, info=info)


def _aligned_votes(votes: pd.DataFrame, samples: pd.DataFrame, path: Path,
                   limit: int | None, n_bad: int) -> pd.DataFrame:
    """The vote rows of the loaded FER2013 rows; an :class:`InputError` when the two files do
    not line up (row count, or a ``Usage`` that differs from FER2013's)."""
    from .fer2013 import USAGE_TO_SPLIT

    ids = samples["image_id"].to_numpy()
    rows_in_fer = len(samples) + n_bad
    if (limit is None and len(votes) != rows_in_fer) or (ids.size and ids.max() >= len(votes)):
        raise InputError(f"{path}: {len(votes)} vote rows, but the FER2013 input has "
                         f"{rows_in_fer if limit is None else f'at least {ids.max() + 1}'}: "
                         "not the FER+ table of this file (one row per FER2013 row, same order)")
    rows = votes.iloc[ids].reset_index(drop=True)
    if "Usage" in rows.columns:
        split = rows["Usage"].map(USAGE_TO_SPLIT).to_numpy()
        wrong = np.flatnonzero(split != samples["split"].to_numpy())
        if wrong.size:
            k = int(wrong[0])
            raise InputError(f"{path}: line {ids[k] + 2}: Usage {rows['Usage'].iloc[k]!r}, but "
                             f"FER2013 row {ids[k]} is in {samples['split'].iloc[k]}: the vote "
                             "rows do not line up with the FER2013 rows")
    return rows


def folder_source(root: Path, *, class_map_path: str | None = None, limit: int | None = None,
                  holdout: float = FOLDER_HOLDOUT, val: float = FOLDER_VAL,
                  on_bad_image: str = "skip") -> Source:
    """A labelled folder (:func:`.folders.read_labelled_folder`): split ``test`` = its fixed
    held-out part (:func:`.folders.holdout_mask`), ``val`` = a fixed share of the rest
    (:func:`.folders.val_mask`), ``train`` = the remainder; every image kept."""
    from ..blendshapes import STILL_EXTRA_FACES
    from .folders import CLASSES, holdout_mask, read_labelled_folder, val_mask

    if not 0 <= holdout < 1:
        raise InputError(f"--holdout must be in [0, 1), not {holdout}")
    if not 0 <= val < 1:
        raise InputError(f"--val must be in [0, 1), not {val}")
    if on_bad_image not in ("skip", "stop"):
        raise InputError(f"--on-bad-image must be skip or stop, not {on_bad_image!r}")
    folder = read_labelled_folder(root, class_map_path, on_bad_image=on_bad_image)
    found = folder.samples
    samples = found.iloc[:limit] if limit else found
    ids = samples["image_id"].to_numpy()
    test = holdout_mask(ids, holdout) if holdout > 0 else np.zeros(len(ids), dtype=bool)
    to_val = val_mask(ids, val) & ~test if val > 0 else np.zeros(len(ids), dtype=bool)
    split = np.where(test, "test", np.where(to_val, "val", "train"))
    paths = [str(Path(p).resolve()) for p in samples["path"]]
    stamps = [f"{p}\t{s.st_size}\t{s.st_mtime_ns}" for p, s in
              zip(paths, (Path(p).stat() for p in paths), strict=True)]
    table = pd.DataFrame({"image_id": ids, "split": split,
                          "source_label": samples["source_label"].astype(str).to_numpy(),
                          "label": samples["label"].to_numpy(), "kept": True,
                          "path": samples["path"].astype(str).to_numpy()})
    loader = StillFiles()
    settings = {"source": "folder", "root": str(Path(root).resolve()),
                "class_map": folder.class_map, "holdout": holdout, "val": val,
                "loader": loader.describe(), "extra_candidates": STILL_EXTRA_FACES}
    bad = [{"path": p, "source_label": str(s), "reason": r}
           for p, s, r in folder.bad.itertuples(index=False)]
    info = {"bad_images": bad, "images_found": len(found) + len(bad),
            "splits": {"test": f"held-out part: holdout_mask(image_id, {holdout})",
                       "val": f"val_mask(image_id, {val}) of the rest", "train": "the rest"}}
    return Source("folder", str(root), table, np.array(paths, dtype=object), loader,
                  np.array(stamps, dtype=object), list(CLASSES), folder.class_map, settings,
                  extra_candidates=STILL_EXTRA_FACES, info=info)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

