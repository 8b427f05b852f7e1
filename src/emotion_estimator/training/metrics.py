"""Classification metrics from labels and probabilities (numpy + scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cross_entropy(y: np.ndarray, proba: np.ndarray, eps: float = 1e-7) -> float:
    """Mean categorical cross-entropy of integer labels under ``proba`` (Keras-style clipping)."""
    p = np.clip(proba[np.arange(len(y)), y], eps, 1.0)
    return float(-np.log(p).mean()) if len(y) else float("nan")


def classification_metrics(
    y: np.ndarray, pred: np.ndarray, classes: Sequence[str], proba: np.ndarray | None = None
) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support, confusion (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(classes))
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    out = {
        "n": int(len(y)),
        "accuracy": float((y == pred).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1.mean()),
        "per_class": {
            c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }
    if proba is not None:
        out["cce"] = cross_entropy(y, proba)
    return out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising validation NLL of ``softmax(logits / T)`` (grid, deterministic)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(4.0), 161)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


OFFSET_OBJECTIVES = ("f1", "acc+f1")


def accuracy_and_macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """Both from one confusion matrix (fast enough for grid searches)."""
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    f1 = 2 * tp / np.maximum(cm.sum(0) + cm.sum(1), 1)
    return float(tp.sum() / max(len(y), 1)), float(f1.mean())


def fit_offsets(
    logits: np.ndarray, y: np.ndarray, objective: str = "f1", span: float = 2.0,
    steps: int = 41,
) -> np.ndarray:
    """Per-class logit offsets maximising ``f1`` (macro F1) or ``acc+f1`` on held-out data.

    The last class stays at 0; a full grid for three classes, coordinate search beyond.
    """
    if objective not in OFFSET_OBJECTIVES:
        raise ValueError(f"objective must be one of {OFFSET_OBJECTIVES}")
    k = logits.shape[1]
    grid = np.linspace(-span, span, steps)

    def score(b: np.ndarray) -> float:
        acc, f1 = accuracy_and_macro_f1(y, (logits + b).argmax(1), k)
        return f1 if objective == "f1" else acc + f1

    if k == 3:
        trials = [np.array([a, b, 0.0]) for a in grid for b in grid]
        scores = [score(t) for t in trials]
        best = float(max(scores))
        # ties: the offsets closest to zero (the least change to the model)
        return min((t for t, s in zip(trials, scores, strict=True) if s >= best - 1e-12),
                   key=lambda t: float(np.abs(t).sum()))
    offsets, best = np.zeros(k), score(np.zeros(k))
    for _ in range(3):
        for c in range(k - 1):
            for v in grid:
                trial = offsets.copy()
                trial[c] = v
                s = score(trial)
                if s > best + 1e-12:
                    best, offsets = s, trial
    return offsets


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
