"""A prepared dataset -> the fusion model's arrays per split, with hard or FER+ soft targets.

``prepare`` stores per detected image the 52 scores and, as raw bytes, the ``landmarks``
(float32 478x3) and ``face`` (uint8 crop) inputs of :mod:`emotion_estimator.features`. FER+
votes (10 annotators per FER2013 image, same row order) fold into the same three classes as
soft targets: happiness -> happy, sadness -> sad, every other emotion -> unknown; ``unknown`` and
``NF`` (not a face) votes are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError
from ..features import N_LANDMARKS
from .data import CLASSES, read_dataset

FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                    "contempt")
FERPLUS_TO_3 = {"happiness": "happy", "sadness": "sad"}


@dataclass
class FusionSplit:
    """One split: inputs by name, hard labels ``y``, soft targets ``target`` (n, k)."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray
    target: np.ndarray
    image_id: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def ferplus_targets(path: str | Path, classes: tuple[str, ...] = CLASSES) -> pd.DataFrame:
    """``image_id`` -> vote shares over ``classes`` (rows with no emotion vote: NaN)."""
    path = Path(path)
    try:
        votes = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read FER+ votes {path}: {exc}") from exc
    missing = [c for c in FERPLUS_EMOTIONS if c not in votes.columns]
    if missing:
        raise InputError(f"{path} is not a FER+ vote table (missing {missing[:3]})")
    counts = np.zeros((len(votes), len(classes)))
    for emotion in FERPLUS_EMOTIONS:
        counts[:, classes.index(FERPLUS_TO_3.get(emotion, "unknown"))] += votes[emotion]
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, counts / np.maximum(total, 1), np.nan)
    frame = pd.DataFrame(shares, columns=list(classes))
    frame.insert(0, "image_id", np.arange(len(votes)))
    return frame


def load_splits(dataset: str | Path, inputs: tuple[str, ...], *, preprocess: str = "pad",
                classes: tuple[str, ...] = CLASSES, ferplus: str | Path | None = None,
                splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, FusionSplit]:
    """Detected, un-augmented rows of one preprocess variant, per split."""
    columns = ["image_id", "split", "label", "preprocess", "augmented", *BLENDSHAPE_NAMES]
    frame = read_dataset(dataset)
    needs = [c for c in ("landmarks", "face") if c in inputs]
    if any(c not in frame.columns for c in needs):
        raise InputError(f"dataset {dataset} has no {', '.join(needs)} columns: rebuild it "
                         "with this version's `emotion-estimator prepare`")
    frame = frame[[c for c in [*columns, *needs] if c in frame.columns]]
    frame = frame[(frame["preprocess"] == preprocess) & ~frame["augmented"].astype(bool)]
    frame = frame[frame[list(BLENDSHAPE_NAMES)].notna().all(axis=1)]
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise InputError(f"dataset labels {unknown} are not among the classes {list(classes)}")
    soft = ferplus_targets(ferplus, classes).set_index("image_id") if ferplus else None
    out = {}
    for split in splits:
        rows = frame[frame["split"] == split]
        y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
        target = np.eye(len(classes), dtype=np.float32)[y]
        if soft is not None:
            shares = soft.reindex(rows["image_id"]).to_numpy(np.float32)
            ok = ~np.isnan(shares).any(axis=1)
            target[ok] = shares[ok]
        arrays: dict[str, np.ndarray] = {}
        if "blendshapes" in inputs:
            arrays["blendshapes"] = rows[list(BLENDSHAPE_NAMES)].to_numpy(np.float32)
        if "landmarks" in inputs:
            arrays["landmarks"] = _stack(rows["landmarks"], np.float32, (N_LANDMARKS, 3))
        if "face" in inputs:
            raw = rows["face"].iloc[0] if len(rows) else b""
            side = int(round(np.sqrt(len(raw)))) if raw else 48
            arrays["face"] = _stack(rows["face"], np.uint8, (side, side))
        out[split] = FusionSplit(arrays, y, target, rows["image_id"].to_numpy())
    return out


def _stack(column: pd.Series, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    bad = column.map(len) != size
    if bad.any():
        raise InputError(f"dataset column {column.name!r} holds {int(bad.sum())} entries of the "
                         f"wrong size (expected {shape} {np.dtype(dtype).name})")
    return np.frombuffer(b"".join(column), dtype=dtype).reshape(len(column), *shape).copy()
