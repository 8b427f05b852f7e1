"""A prepared dataset -> the fusion model's arrays per split, with hard or FER+ soft targets.

``prepare`` stores per detected image the 52 scores and, as raw bytes, the ``landmarks``
(float32 478x3) and ``face`` (uint8 crop) inputs of :mod:`emotion_estimator.features`. FER+
votes (10 annotators per FER2013 image) fold into the same three classes as soft targets
(:mod:`.ferplus`: happiness -> happy, sadness -> sad, every other emotion -> unknown;
``unknown`` and ``NF`` (not a face) votes are left out). They come from the dataset's own
``ferplus_*`` vote columns (``prepare --labels ferplus``) or, for a dataset built without them,
from the vote CSV (same row order as FER2013).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...blendshapes import BLENDSHAPE_NAMES
from ...errors import InputError
from ...features import N_LANDMARKS
from .. import ferplus as fp
from ..caps import THREE_CLASSES
from ..data import CLASSES, provenance, read_dataset
from ..fer2013 import EMOTIONS

FERPLUS_EMOTIONS = fp.FERPLUS_EMOTIONS
FERPLUS_TO_3 = fp.FERPLUS_TO_3
# The emotions behind the 3 classes, for an auxiliary training head (so the model need not
# learn "unknown" as one blob of five expressions); a folder's label names map in by synonym.
FINE_CLASSES = EMOTIONS  # the expression head speaks FER2013's seven, in its order
FINE_SYNONYMS = {"anger": "angry", "happiness": "happy", "sadness": "sad"}
LABELS = ("fer", "ferplus", "source", "blend")
FINE_LABELS = ("source", "ferplus", "blend")  # the expression head's targets (load_splits)


@dataclass
class FusionSplit:
    """One split: inputs by name, hard labels ``y``, soft targets ``target`` (n, k)."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray
    target: np.ndarray
    image_id: np.ndarray
    fine: np.ndarray | None = None  # index into FINE_CLASSES per row, -1 where none
    source: np.ndarray | None = None  # which merged dataset each row came from (0, 1, ...)
    fine_target: np.ndarray | None = None  # soft targets over FINE_CLASSES (n, 7), if any

    def __len__(self) -> int:
        return len(self.y)


def vote_table(path: str | Path) -> pd.DataFrame:
    """The FER+ vote CSV indexed by ``image_id`` (its row order, FER2013's)."""
    votes = fp.read_votes(path)
    votes.index = pd.RangeIndex(len(votes), name="image_id")
    return votes


def load_splits(dataset: str | Path, inputs: tuple[str, ...], *, preprocess: str | None = "pad",
                classes: tuple[str, ...] = CLASSES, ferplus: str | Path | None = None,
                labels: str | None = None, fine_labels: str = "source",
                splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, FusionSplit]:
    """Detected, un-augmented rows of one preprocess variant, per split (``preprocess=None``:
    the dataset's only variant, e.g. ``raw`` for a labelled folder of photos).

    Targets: one-hot of ``label`` (``labels="fer"``); FER+ vote shares (``labels="ferplus"``)
    from the dataset's ``ferplus_*`` columns, else from the ``ferplus`` CSV (rows without an
    emotion vote keep their one-hot); ``"source"``: one-hot of ``source_label`` through the
    dataset's class map (``y`` too); ``"blend"``: half that one-hot, half the FER+ shares.
    ``labels=None`` (older callers): soft targets exactly when a ``ferplus`` CSV is given.
    The expression head's targets (``fine_target``): its source label (``fine_labels=
    "source"``: none stored), FER+ vote shares over the seven (``"ferplus"``, contempt's votes
    left out) or half each (``"blend"``); rows without such votes keep the one-hot.
    """
    if labels not in (None, *LABELS):
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, not {labels!r}")
    if fine_labels not in FINE_LABELS:
        raise ValueError(f"fine_labels must be one of {', '.join(FINE_LABELS)}, "
                         f"not {fine_labels!r}")
    columns = ["image_id", "split", "label", "source_label", "preprocess", "augmented",
               *BLENDSHAPE_NAMES]
    frame = read_dataset(dataset)
    needs = [c for c in ("landmarks", "face") if c in inputs]
    require_columns(frame, inputs, dataset)
    has_votes = all(c in frame.columns for c in fp.DATASET_COLUMNS)
    votes_wanted = labels in ("ferplus", "blend")
    fine_votes = fine_labels != "source"
    use_votes = (votes_wanted or fine_votes) and has_votes
    if (votes_wanted or fine_votes) and not has_votes and not ferplus:
        raise InputError(f"dataset {dataset} has no FER+ vote columns: build it with "
                         "`emotion-estimator prepare --labels ferplus --ferplus VOTES_CSV`, "
                         "or give the votes with --ferplus")
    keep = [*columns, *needs, *(fp.DATASET_COLUMNS if use_votes else ())]
    frame = frame[[c for c in keep if c in frame.columns]]
    if preprocess is None:
        variants = sorted(frame["preprocess"].unique())
        if len(variants) != 1:
            raise InputError(f"dataset {dataset} holds preprocess variants {variants}: name one")
        preprocess = variants[0]
    frame = frame[(frame["preprocess"] == preprocess) & ~frame["augmented"].astype(bool)]
    frame = frame[frame[list(BLENDSHAPE_NAMES)].notna().all(axis=1)]
    if labels in ("source", "blend"):
        frame = frame.assign(label=source_classes(frame["source_label"], dataset, classes))
        frame = frame[frame["label"].notna()]
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise InputError(f"dataset labels {unknown} are not among the classes {list(classes)}")
    soft = votes_wanted or (labels is None and bool(ferplus))  # the 3 classes from votes
    # the votes: the dataset's own columns, else the CSV (read once, for both heads)
    table = vote_table(ferplus) if ferplus and not use_votes and (soft or fine_votes) else None
    out = {}
    for split in splits:
        rows = frame[frame["split"] == split]
        y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64, copy=True)
        target = np.eye(len(classes), dtype=np.float32)[y]
        votes = rows if use_votes else None if table is None else table.reindex(rows["image_id"])
        if soft and votes is not None:
            shares = fp.shares(votes, classes).astype(np.float32)
            ok = ~np.isnan(shares).any(axis=1)
            target[ok] = (shares[ok] if labels != "blend"
                          else 0.5 * (target[ok] + shares[ok]))
        fine = fine_indices(rows["source_label"]) if "source_label" in rows else None
        fine_target = None
        if fine_votes and fine is not None:
            fine_target = _fine_targets(fine, fp.expression_shares(votes, FINE_CLASSES),
                                        fine_labels)
        out[split] = FusionSplit(decode_inputs(rows, inputs), y, target,
                                 rows["image_id"].to_numpy(), fine, fine_target=fine_target)
    return out


def fine_onehot(fine: np.ndarray) -> np.ndarray:
    """Expression indices as one-hot rows over :data:`FINE_CLASSES` (-1, no expression: any
    row; the expression loss leaves those rows out)."""
    return np.eye(len(FINE_CLASSES), dtype=np.float32)[fine.clip(0)]


def _fine_targets(fine: np.ndarray, shares: np.ndarray, mode: str) -> np.ndarray:
    """The expression head's soft targets: FER+ ``shares`` (``ferplus``) or half those, half
    the one-hot of ``fine`` (``blend``); the one-hot where a row has no shares."""
    onehot = fine_onehot(fine)
    ok = ~np.isnan(shares).any(axis=1)
    out = onehot.copy()
    out[ok] = shares[ok] if mode == "ferplus" else 0.5 * (onehot[ok] + shares[ok])
    return out.astype(np.float32)


def source_classes(source: pd.Series, dataset: str | Path,
                   classes: tuple[str, ...]) -> pd.Series:
    """Each row's source label folded into ``classes`` by the dataset's stored class map
    (``report.json``; FER2013's fold where it has none); NaN where the map leaves it out."""
    cmap = provenance(dataset).get("class_map") or THREE_CLASSES
    folded = source.astype(str).map(lambda n: cmap.get(n, cmap.get(n.lower())))
    return folded.where(folded.isin(classes))


def require_columns(frame: pd.DataFrame, inputs: Sequence[str], dataset: str | Path) -> None:
    """The dataset holds the bytes columns that ``inputs`` (``landmarks``, ``face``) read."""
    missing = [c for c in ("landmarks", "face") if c in inputs and c not in frame.columns]
    if missing:
        raise InputError(f"dataset {dataset} has no {', '.join(missing)} columns: rebuild it "
                         "with this version's `emotion-estimator prepare`")


def decode_inputs(rows: pd.DataFrame, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    """Model inputs by kind from dataset rows: ``blendshapes`` (n, 52) float32 from the score
    columns, ``landmarks`` (n, 478, 3) float32 and ``face`` (n, s, s) uint8 decoded from the
    bytes columns (as :mod:`emotion_estimator.features` built them)."""
    arrays: dict[str, np.ndarray] = {}
    if "blendshapes" in inputs:
        arrays["blendshapes"] = rows[list(BLENDSHAPE_NAMES)].to_numpy(np.float32, copy=True)
    if "landmarks" in inputs:
        arrays["landmarks"] = _stack(rows["landmarks"], np.float32, (N_LANDMARKS, 3))
    if "face" in inputs:
        raw = rows["face"].iloc[0] if len(rows) else b""
        side = int(round(np.sqrt(len(raw)))) if raw else 48
        arrays["face"] = _stack(rows["face"], np.uint8, (side, side))
    return arrays


def fine_indices(source: pd.Series) -> np.ndarray:
    """Source labels (FER2013's, or a folder's such as ``sadness``) -> index into
    :data:`FINE_CLASSES`; -1 for labels outside it (e.g. ``contempt``)."""
    index = {c: i for i, c in enumerate(FINE_CLASSES)}
    names = source.astype(str).str.lower().map(lambda n: FINE_SYNONYMS.get(n, n))
    return names.map(index).fillna(-1).to_numpy(np.int64, copy=True)


def merge_splits(parts: list[FusionSplit], repeats: list[int] | None = None) -> FusionSplit:
    """One split from several (e.g. FER2013 + a real-face folder), each part repeated
    ``repeats[i]`` times (oversampling a small source); inputs must agree in shape."""
    repeats = repeats or [1] * len(parts)
    given = parts
    origin = [i for i, (p, r) in enumerate(zip(parts, repeats, strict=True))
              for _ in range(r) if len(p)]
    parts = [p for p, r in zip(parts, repeats, strict=True) for _ in range(r) if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else given[0]
    names = set(parts[0].inputs)
    for p in parts[1:]:
        if set(p.inputs) != names or any(p.inputs[k].shape[1:] != parts[0].inputs[k].shape[1:]
                                         for k in names):
            raise InputError("datasets to train on together must hold the same inputs and "
                             "face crop size")
    fine = None if any(p.fine is None for p in parts) else np.concatenate([p.fine for p in parts])
    fine_target = None
    if fine is not None and any(p.fine_target is not None for p in parts):
        fine_target = np.concatenate([p.fine_target if p.fine_target is not None
                                      else fine_onehot(p.fine) for p in parts])
    return FusionSplit({k: np.concatenate([p.inputs[k] for p in parts]) for k in names},
                       np.concatenate([p.y for p in parts]),
                       np.concatenate([p.target for p in parts]),
                       np.concatenate([p.image_id for p in parts]), fine,
                       np.concatenate([np.full(len(p), i) for p, i in zip(parts, origin,
                                                                            strict=True)]),
                       fine_target)


def _stack(column: pd.Series, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    bad = column.map(len) != size
    if bad.any():
        raise InputError(f"dataset column {column.name!r} holds {int(bad.sum())} entries of the "
                         f"wrong size (expected {shape} {np.dtype(dtype).name})")
    return np.frombuffer(b"".join(column), dtype=dtype).reshape(len(column), *shape).copy()
