"""Blendshape dataset (Parquet) -> standardised tensors per split.

The dataset has one row per image (or augmented copy) and preprocess: ``image_id, split,
source_label, label, augmented, aug_params, preprocess, <52 blendshape columns>``. Images
MediaPipe missed are either absent (listed in ``undetected.parquet`` beside it) or rows with NaN
scores; both count as undetected.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError

CLASSES: tuple[str, ...] = ("happy", "sad", "unknown")
# The paper's 27 (§4.1): MediaPipe indices 1-5, 9-20, 25, 34, 35, 38, 44-49.
PAPER_INDICES = (1, 2, 3, 4, 5, *range(9, 21), 25, 34, 35, 38, *range(44, 50))
PAPER_27: tuple[str, ...] = tuple(BLENDSHAPE_NAMES[i] for i in PAPER_INDICES)
META_COLUMNS = ("image_id", "split", "label", "preprocess")


def read_dataset(path: str | Path, required: Sequence[str] = META_COLUMNS,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The dataset table (a ``.parquet`` file, or a folder holding ``dataset.parquet``).

    ``required``: the columns it must have besides the 52 blendshapes. ``columns``: read only
    these (those the file has) besides the required ones, the blendshapes and ``augmented``
    (e.g. to leave the bytes columns unread); ``None`` reads all.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.parquet"
    if not path.is_file():
        raise InputError(f"dataset not found: {path} (run `emotion-estimator prepare` first)")
    try:
        if columns is None:
            frame = pd.read_parquet(path)
        else:
            import pyarrow.parquet as pq

            wanted = {*required, *BLENDSHAPE_NAMES, "augmented", *columns}
            frame = pd.read_parquet(path, columns=[c for c in pq.read_schema(path).names
                                                   if c in wanted])
    except Exception as exc:
        raise InputError(f"not a readable Parquet dataset: {path} ({exc})") from exc
    missing = [c for c in (*required, *BLENDSHAPE_NAMES) if c not in frame.columns]
    if missing:
        raise InputError(f"dataset {path} lacks columns {missing[:4]}")
    if "augmented" not in frame.columns:
        frame["augmented"] = False
    frame.attrs["path"] = str(path)
    return frame


def provenance(path: str | Path) -> dict:
    """What the dataset was built from (its ``report.json`` written by ``prepare``), if known."""
    path = Path(path)
    report = (path if path.is_dir() else path.parent) / "report.json"
    if not report.is_file():
        return {"dataset": str(path)}
    try:
        raw = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError):
        return {"dataset": str(path)}
    keys = ("input", "class_map", "caps", "seed", "augment", "preprocess", "versions",
            "landmarker_sha256", "fingerprint", "rows")
    return {"dataset": str(path), **{k: raw[k] for k in keys if k in raw}}


def read_undetected(dataset: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Images MediaPipe missed: ``undetected.parquet`` beside the dataset plus NaN rows;
    ``extra`` columns (e.g. ``source_label``) too where both have them."""
    nan_rows = dataset[dataset[list(BLENDSHAPE_NAMES)].isna().any(axis=1)]
    source = dataset.attrs.get("path")
    beside = Path(source).with_name("undetected.parquet") if source else None
    names = pq_names(beside) if beside is not None and beside.is_file() else None
    columns = [*META_COLUMNS, *(c for c in extra if c in nan_rows.columns
                                and (names is None or c in names))]
    parts = [nan_rows[columns]]
    if names is not None:
        parts.append(pd.read_parquet(beside, columns=columns))
    return pd.concat(parts, ignore_index=True).drop_duplicates()


def pq_names(path: Path) -> list[str]:
    """The column names of a Parquet file."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def resolve_blendshapes(spec: str | Sequence[str], train: pd.DataFrame | None = None) -> list[str]:
    """``paper27`` | ``all`` | ``rule`` (score > 0.4 in > 100 train images) | JSON file | names."""
    if not isinstance(spec, str):
        names = list(spec)
    elif spec == "paper27":
        names = list(PAPER_27)
    elif spec == "all":
        names = list(BLENDSHAPE_NAMES)
    elif spec == "rule":
        if train is None:
            raise ValueError("the selection rule needs the train split")
        counts = (train[list(BLENDSHAPE_NAMES)] > 0.4).sum()
        names = [n for n in BLENDSHAPE_NAMES if counts[n] > 100]
        if not names:
            raise InputError("the selection rule (score > 0.4 in > 100 train images) kept no "
                             "blendshapes: too few train rows; use --blendshapes all or paper27")
    elif Path(spec).is_file():
        try:
            raw = json.loads(Path(spec).read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"blendshape selection {spec} is not JSON ({exc})") from exc
        if isinstance(raw, dict):  # select-blendshapes writes "names"; model JSONs "blendshapes"
            raw = raw.get("names", raw.get("blendshapes", []))
        names = list(raw)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BLENDSHAPE_NAMES]
    if unknown or not names:
        raise InputError(f"unknown blendshape selection {spec!r} (bad names: {unknown[:3]})")
    return [n for n in BLENDSHAPE_NAMES if n in names]  # MediaPipe order, no duplicates


@dataclass
class Split:
    """Features ``x`` (n, k) float32, labels ``y`` (n,) int64 and image ids of one split."""

    x: np.ndarray
    y: np.ndarray
    image_id: np.ndarray
    preprocess: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def pick_preprocess(frame: pd.DataFrame, preprocess: str | None = None) -> str:
    """``preprocess`` if the dataset holds that variant; ``None``: its only variant (``pad``
    for FER2013 datasets of this version, ``raw`` for a folder of photos)."""
    variants = sorted(frame["preprocess"].dropna().astype(str).unique())
    where = frame.attrs.get("path", "the dataset")
    if preprocess is None and len(variants) == 1:
        return variants[0]
    if preprocess is None:
        raise InputError(f"dataset {where} holds preprocess variants {variants}: name one "
                         "(--preprocess)")
    if preprocess not in variants:
        raise InputError(f"dataset {where} has no preprocess variant {preprocess!r} "
                         f"(it holds {variants})")
    return preprocess


def select_rows(
    frame: pd.DataFrame,
    split: str,
    preprocess: Sequence[str] | None = None,
    *,
    augmented: bool = True,
) -> pd.DataFrame:
    """Detected rows of one split, optionally restricted by preprocess and augmentation."""
    rows = frame[(frame["split"] == split) & frame[list(BLENDSHAPE_NAMES)].notna().all(axis=1)]
    if preprocess:
        rows = rows[rows["preprocess"].isin(preprocess)]
    if not augmented and "augmented" in rows.columns:
        rows = rows[~rows["augmented"].astype(bool)]
    return rows


def to_split(rows: pd.DataFrame, names: Sequence[str], classes: Sequence[str] = CLASSES) -> Split:
    """Raw (unstandardised) arrays of the chosen blendshapes."""
    unknown = sorted(set(rows["label"]) - set(classes))
    if unknown:
        raise InputError(f"dataset labels {unknown} are not among the classes {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return Split(
        x=rows[list(names)].to_numpy(np.float32),
        y=rows["label"].map(index).to_numpy(np.int64),
        image_id=rows["image_id"].to_numpy(),
        preprocess=rows["preprocess"].astype(str).to_numpy(),
    )


def fit_standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (std floored so constant columns stay finite)."""
    return x.mean(axis=0).astype(np.float32), np.maximum(x.std(axis=0), 1e-6).astype(np.float32)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights ``n / (k * count)``; a class absent from ``y`` gets weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)
