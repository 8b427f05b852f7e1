"""FER+ votes (Barsoum et al. 2016: 10 annotators per FER2013 image, same row order).

One rule for the whole project (``prepare --labels ferplus``, fusion soft targets, the accuracy
bench):

- the eight emotions fold into three classes: ``happiness`` -> happy, ``sadness`` -> sad, the
  six others -> unknown; the ``unknown`` and ``NF`` (not a face) votes are no emotion and are
  left out of the fold;
- soft targets: the folded counts as shares (NaN where an image has no emotion vote);
- majority label: the class with most folded votes; none (-1) where the image is *not a face*
  (its ``unknown`` or ``NF`` count is at least its top single emotion's count) or where two
  classes tie for the most votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

FERPLUS_EMOTIONS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger",
                                     "disgust", "fear", "contempt")
NON_EMOTIONS: tuple[str, ...] = ("unknown", "NF")
VOTE_NAMES: tuple[str, ...] = (*FERPLUS_EMOTIONS, *NON_EMOTIONS)
FERPLUS_TO_3: dict[str, str] = {"happiness": "happy", "sadness": "sad"}  # others: unknown
PREFIX = "ferplus_"
# the integer vote columns a dataset built with ``prepare --labels ferplus`` carries
DATASET_COLUMNS: tuple[str, ...] = tuple(PREFIX + name for name in VOTE_NAMES)
THREE = ("happy", "sad", "unknown")
RULE = ("FER+ votes folded to happy (happiness), sad (sadness), unknown (the six other "
        "emotions); label = the class with most votes; images whose unknown or NF (not a face) "
        "votes are at least their top emotion's, and ties between classes, get no label "
        "(left out)")


def read_votes(path: str | Path) -> pd.DataFrame:
    """The vote table (``fer2013new.csv``): the ten vote columns as int64, plus ``Usage``
    when present. Raises :class:`InputError` for a file that is not such a table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"FER+ votes not found: {path}")
    try:
        votes = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read FER+ votes {path}: {exc}") from exc
    missing = [c for c in VOTE_NAMES if c not in votes.columns]
    if missing:
        raise InputError(f"{path} is not a FER+ vote table (columns {', '.join(VOTE_NAMES)}; "
                         f"missing {', '.join(missing[:3])})")
    if not len(votes):
        raise InputError(f"{path}: no rows")
    counts = votes[list(VOTE_NAMES)].apply(pd.to_numeric, errors="coerce")
    ok = counts.notna().all(axis=1) & (counts >= 0).all(axis=1) & \
        (counts.fillna(0) % 1 == 0).all(axis=1)
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise InputError(f"{path}: line {row + 2}: vote counts must be integers >= 0")
    out = counts.astype(np.int64)
    if "Usage" in votes.columns:
        out.insert(0, "Usage", votes["Usage"].astype(str))
    return out


def fold(votes: pd.DataFrame, classes: Sequence[str] = THREE) -> np.ndarray:
    """``(n, len(classes))`` emotion votes folded to ``classes`` (which must hold happy, sad,
    unknown); ``votes`` has the vote names as columns (or ``ferplus_`` + name)."""
    missing = [c for c in THREE if c not in classes]
    if missing:
        raise InputError(f"FER+ votes fold into happy/sad/unknown; the classes lack {missing}")
    counts = np.zeros((len(votes), len(classes)))
    for emotion in FERPLUS_EMOTIONS:
        counts[:, list(classes).index(FERPLUS_TO_3.get(emotion, "unknown"))] += \
            _column(votes, emotion)
    return counts


def shares(votes: pd.DataFrame, classes: Sequence[str] = THREE) -> np.ndarray:
    """Soft targets: folded vote shares per class, NaN rows where no emotion vote."""
    return _as_shares(fold(votes, classes))


def majority(votes: pd.DataFrame, classes: Sequence[str] = THREE) -> tuple[np.ndarray, dict]:
    """Majority labels (index into ``classes``; -1 = none, see the module docstring) and how
    many images each reason dropped: ``{"not_face_or_unknown": n, "tie": n}``."""
    counts = fold(votes, classes)
    emotions = np.stack([_column(votes, e) for e in FERPLUS_EMOTIONS], axis=1)
    others = np.stack([_column(votes, e) for e in NON_EMOTIONS], axis=1)
    not_face = others.max(axis=1) >= emotions.max(axis=1)
    top = counts.max(axis=1, keepdims=True)
    tie = ((counts == top).sum(axis=1) > 1) & ~not_face
    y = np.where(not_face | tie, -1, counts.argmax(axis=1)).astype(np.int64)
    return y, {"not_face_or_unknown": int(not_face.sum()), "tie": int(tie.sum())}


def majority_expressions(votes: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Majority labels over the seven expressions (index into
    :data:`emotion_estimator.expressions.EXPRESSIONS`; -1 = none): the emotion with most of
    the eight emotions' votes; none where the image is not a face (as in :func:`majority`),
    where two emotions tie, or where ``contempt`` wins (it has no expression). Returns the
    labels and ``{"not_face_or_unknown": n, "tie": n, "contempt": n}``."""
    from ..expressions import EXPRESSIONS, SOURCE_NAMES

    emotions = np.stack([_column(votes, e) for e in FERPLUS_EMOTIONS], axis=1)
    others = np.stack([_column(votes, e) for e in NON_EMOTIONS], axis=1)
    top = emotions.max(axis=1, keepdims=True)
    not_face = others.max(axis=1) >= top[:, 0]
    tie = ((emotions == top).sum(axis=1) > 1) & ~not_face
    winner = emotions.argmax(axis=1)
    to7 = np.array([EXPRESSIONS.index(SOURCE_NAMES[e]) if e in SOURCE_NAMES else -1
                    for e in FERPLUS_EMOTIONS])
    contempt = (to7[winner] < 0) & ~not_face & ~tie
    y = np.where(not_face | tie | contempt, -1, to7[winner]).astype(np.int64)
    return y, {"not_face_or_unknown": int(not_face.sum()), "tie": int(tie.sum()),
               "contempt": int(contempt.sum())}


def expression_shares(votes: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """Soft targets over the expressions ``names`` (in any spelling
    :data:`emotion_estimator.expressions.SOURCE_NAMES` knows, e.g. FER2013's): each FER+
    emotion's votes go to its expression; ``contempt`` (no expression) and the non-emotion
    votes are left out; NaN rows where no vote is left."""
    from ..expressions import SOURCE_NAMES

    target = [SOURCE_NAMES.get(n, n) for n in names]
    counts = np.zeros((len(votes), len(names)))
    for emotion in FERPLUS_EMOTIONS:
        if SOURCE_NAMES.get(emotion) in target:
            counts[:, target.index(SOURCE_NAMES[emotion])] += _column(votes, emotion)
    return _as_shares(counts)


def _as_shares(counts: np.ndarray) -> np.ndarray:
    """Vote counts per row as shares; NaN rows where a row has no vote."""
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


RULE7 = ("FER+ votes over the eight emotions; label = the emotion with most votes, mapped to "
         "the seven expressions; images whose unknown or NF votes are at least their top "
         "emotion's, ties, and contempt (no expression) get no label (left out)")


def _column(votes: pd.DataFrame, name: str) -> np.ndarray:
    column = name if name in votes.columns else PREFIX + name
    return votes[column].to_numpy(np.float64)
