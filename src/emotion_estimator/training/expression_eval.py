"""Scoring the seven-expression view and the robot's failure slices (issues 16 and 19).

Numpy only, shared by ``evaluate`` and ``benchmarks/bench_accuracy.py``.

- Truth for the seven: a data set's source labels (FER2013's codes or names, muxspace's folder
  names, any case) mapped by :data:`emotion_estimator.expressions.SOURCE_NAMES`; labels with
  no expression (``contempt``) are left out and counted.
- :func:`expression_metrics`: accuracy, macro F1 over the seven, per-class figures and the
  7 x 8 confusion whose last column is ``no face`` (a face the tool did not find counts as
  wrong).
- :func:`slices`: sad faces whose mouth MediaPipe reads as a smile (mean ``mouthSmileLeft`` /
  ``mouthSmileRight`` >= :data:`SMILE_MIN`): count, sad recall, sad -> happy; angry and
  disgusted faces (source labels): the share called happy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..expressions import EXPRESSIONS, SOURCE_NAMES

NO_FACE = -1  # a prediction where the tool found no face
FER2013_CODES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                  "neutral")
SMILE = ("mouthSmileLeft", "mouthSmileRight")
SMILE_MIN = 0.3
SLICE_RULE = (f"smile-shaped sad: truth sad, a face MediaPipe found, mean of {SMILE[0]} and "
              f"{SMILE[1]} >= {SMILE_MIN}; angry + disgusted: source label angry or "
              "disgusted (all images: no face = not happy)")


def expression_labels(source: Sequence[object] | np.ndarray) -> np.ndarray:
    """Source labels (names in any case, or FER2013 codes 0..6) -> index into
    :data:`EXPRESSIONS`; -1 where a label has no expression (e.g. ``contempt``)."""
    index = {n: i for i, n in enumerate(EXPRESSIONS)}
    out = np.full(len(source), -1, np.int64)
    for k, label in enumerate(source):
        if isinstance(label, int | np.integer) and 0 <= label < len(FER2013_CODES):
            label = FER2013_CODES[int(label)]
        name = SOURCE_NAMES.get(str(label).strip().lower())
        if name is not None:
            out[k] = index[name]
    return out


def reorder(probabilities: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``(n, 7)`` probabilities over ``names`` (a model's or a tool's order, names as
    :data:`SOURCE_NAMES` knows them) -> columns in :data:`EXPRESSIONS` order."""
    mapped = [SOURCE_NAMES.get(str(n).lower()) for n in names]
    if sorted(m for m in mapped if m) != sorted(EXPRESSIONS):
        raise ValueError(f"{list(names)} do not name the seven expressions")
    p = np.asarray(probabilities)
    return p[:, [mapped.index(n) for n in EXPRESSIONS]]


def predictions(probabilities: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
    """Argmax over :data:`EXPRESSIONS`-ordered probabilities; :data:`NO_FACE` where not
    ``found`` (or where the row is NaN)."""
    p = np.asarray(probabilities, np.float64)
    ok = ~np.isnan(p).any(axis=1) if p.size else np.zeros(len(p), bool)
    if found is not None:
        ok &= np.asarray(found, bool)
    pred = np.full(len(p), NO_FACE, np.int64)
    pred[ok] = p[ok].argmax(axis=1)
    return pred


def expression_metrics(y: np.ndarray, pred: np.ndarray,
                       names: Sequence[str] = EXPRESSIONS) -> dict:
    """Metrics over the seven; ``pred`` may hold :data:`NO_FACE` (wrong, its own column)."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    k = len(names)
    if y.shape != pred.shape or not y.size:
        raise ValueError("y and pred must be non-empty and of equal length")
    if y.min() < 0 or y.max() >= k or pred.min() < NO_FACE or pred.max() >= k:
        raise ValueError(f"labels must be in 0..{k - 1} (predictions also {NO_FACE})")
    cm = np.zeros((k, k + 1), np.int64)
    np.add.at(cm, (y, np.where(pred == NO_FACE, k, pred)), 1)
    tp = np.diag(cm[:, :k]).astype(np.float64)
    called, support = cm[:, :k].sum(0), cm.sum(1)
    precision = np.divide(tp, called, out=np.zeros(k), where=called > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {"n": int(y.size), "accuracy": float(tp.sum() / y.size),
            "macro_f1": float(f1.mean()), "no_face": int(cm[:, k].sum()),
            "per_class": {n: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(support[i])}
                          for i, n in enumerate(names)},
            "confusion": cm.tolist(), "columns": [*names, "no face"]}


def smile(scores: np.ndarray) -> np.ndarray:
    """``(n, 2)`` mouthSmileLeft/Right -> their mean (NaN where no face)."""
    return np.asarray(scores, np.float64).mean(axis=1)


def slices(classes: Sequence[str], y3: np.ndarray, pred3: np.ndarray, y7: np.ndarray,
           smile_score: np.ndarray) -> dict:
    """The two failure slices of one method on one set.

    ``y3``/``pred3``: 3-class truth and prediction (index into ``classes``; a missed face is
    predicted ``unknown``); ``y7``: index into :data:`EXPRESSIONS` (-1: none);
    ``smile_score``: :func:`smile` of the face MediaPipe found (NaN: none)."""
    happy, sad = list(classes).index("happy"), list(classes).index("sad")
    y3, pred3, y7 = np.asarray(y3), np.asarray(pred3), np.asarray(y7)
    with np.errstate(invalid="ignore"):
        smiling_sad = (y3 == sad) & (np.asarray(smile_score) >= SMILE_MIN)
    rough = np.isin(y7, [EXPRESSIONS.index("angry"), EXPRESSIONS.index("disgusted")])

    def share(mask: np.ndarray, cls: int) -> float | None:
        return float((pred3[mask] == cls).mean()) if mask.any() else None

    return {"smile_sad": {"n": int(smiling_sad.sum()), "sad_recall": share(smiling_sad, sad),
                          "sad_to_happy": share(smiling_sad, happy)},
            "angry_disgusted": {"n": int(rough.sum()), "called_happy": share(rough, happy)}}
