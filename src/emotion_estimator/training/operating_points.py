"""Operating points: per-class logit offsets fitted on validation data for what a robot needs.

A point is chosen on the validation split under the robot's constraints: sad faces called
happy at most ``max_sad_as_happy`` (the worst error), and a floor on sad recall; among the
offsets that meet them, the ones with the best accuracy + macro F1. Where the validation rows
come from several datasets (FER2013 and a folder of real photos), each dataset counts alike:
the score is the mean over datasets and the sad-recall floor holds on each, so the small
real-face set is not outvoted by the large one. The
graph carries the ``balanced`` offsets; every other point is stored in the model's metadata as
offsets relative to it (:mod:`emotion_estimator.operating`), applied at run time.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import accuracy_and_macro_f1

# name -> minimum validation sad recall on each dataset; "balanced" is the graph's own point
POINTS: dict[str, float] = {"balanced": 0.60, "sad-sensitive": 0.85}


def fit_operating_point(logits: np.ndarray, y: np.ndarray, classes: tuple[str, ...],
                        max_sad_as_happy: float, min_sad_recall: float = 0.0,
                        span: float = 2.0, steps: int = 41,
                        groups: np.ndarray | None = None,
                        happy_at_most: float = math.inf,
                        sad_at_least: float = -math.inf) -> np.ndarray:
    """Offsets (last class 0) maximising accuracy + macro F1 (the mean over ``groups``, the
    dataset of each row) with sad -> happy <= the cap and sad recall >= ``min_sad_recall`` in
    every group; the happy offset at most ``happy_at_most``, the sad one at least
    ``sad_at_least``.

    Where no offsets meet both, the ones closest to them are taken (the cap first).
    """
    k = logits.shape[1]
    sad, happy = classes.index("sad"), classes.index("happy")
    is_sad = y == sad
    groups = np.zeros(len(y), int) if groups is None else np.asarray(groups)
    members = [groups == g for g in np.unique(groups)]
    grid = np.linspace(-span, span, steps)
    best, best_key = np.zeros(k), (-math.inf,) * 4
    for a in grid[grid <= happy_at_most + 1e-9]:
        for b in grid[grid >= sad_at_least - 1e-9]:
            off = np.zeros(k)
            off[happy], off[sad] = a, b
            pred = (logits + off).argmax(1)
            rate = float((pred[is_sad] == happy).mean()) if is_sad.any() else 0.0
            recalls = [float((pred[m & is_sad] == sad).mean()) for m in members
                       if (m & is_sad).any()]
            score = float(np.mean([sum(accuracy_and_macro_f1(y[m], pred[m], k))
                                   for m in members]))  # acc + F1, datasets alike
            short = min(min(recalls, default=1.0) - min_sad_recall, 0.0)
            key = (float(rate <= max_sad_as_happy), -rate if rate > max_sad_as_happy else 0.0,
                   short, score - 1e-4 * float(np.abs(off).sum()))
            if key > best_key:
                best, best_key = off, key
    return best


def fit_points(logits: np.ndarray, y: np.ndarray, classes: tuple[str, ...],
               max_sad_as_happy: float, points: dict[str, float] | None = None,
               groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Absolute offsets per named point (``balanced`` first). Every other point leans toward
    sad from ``balanced``: its happy offset at most balanced's and its sad offset at least
    balanced's, so a face it calls happy ``balanced`` calls happy too (a point chosen for sad
    recall never calls more faces happy)."""
    points = POINTS if points is None else points
    first, *others = points.items()
    base = fit_operating_point(logits, y, classes, max_sad_as_happy, first[1], groups=groups)
    happy, sad = float(base[classes.index("happy")]), float(base[classes.index("sad")])
    return {first[0]: base, **{
        name: fit_operating_point(logits, y, classes, max_sad_as_happy, floor, groups=groups,
                                  happy_at_most=happy, sad_at_least=sad)
        for name, floor in others}}


def relative_points(fitted: dict[str, np.ndarray],
                    classes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The metadata form: each point's offsets minus ``balanced``'s, by class name."""
    base = fitted["balanced"]
    return {name: {c: round(float(v), 4) for c, v in zip(classes, off - base, strict=True)}
            for name, off in fitted.items()}
