"""The seven-expression view: names, the source-emotion mapping, valence and arousal.

Models that have the view output, beside the 3-class decision, probabilities over
:data:`EXPRESSIONS` (the basic expressions `fer`, py-feat, HSEmotion and ROS4HRI report).
Valence and arousal are an **estimate**: no labelled valence/arousal data trained them; each
expression is placed on Russell's circumplex (:data:`CIRCUMPLEX`, coordinates in [-1, 1] after
the published placements of the basic emotions) and a face's point is the probability-weighted
mean of those places.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .errors import InputError

EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "disgusted",
                                "fearful")
# dataset label names (FER2013's, muxspace's folder names) -> expression; contempt has none
SOURCE_NAMES: dict[str, str] = {
    "neutral": "neutral", "happy": "happy", "happiness": "happy", "sad": "sad",
    "sadness": "sad", "angry": "angry", "anger": "angry", "surprise": "surprised",
    "surprised": "surprised", "disgust": "disgusted", "disgusted": "disgusted",
    "fear": "fearful", "fearful": "fearful",
}
# (valence, arousal) per expression: the circumplex places of the basic emotions
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0), "happy": (0.8, 0.5), "sad": (-0.65, -0.3),
    "angry": (-0.5, 0.6), "surprised": (0.35, 0.7), "disgusted": (-0.6, 0.3),
    "fearful": (-0.6, 0.6),
}


def validate(names: object, where: str) -> tuple[str, ...]:
    """A model's declared expression names: exactly the seven, each once (any order)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{where}: 'expressions' must be a list of names")
    if len(set(names)) != len(names) or set(names) != set(EXPRESSIONS):
        raise InputError(f"{where}: 'expressions' must name each of {', '.join(EXPRESSIONS)} "
                         f"once, got {names}")
    return tuple(names)


def valence_arousal(probabilities: np.ndarray,
                    names: Sequence[str] = EXPRESSIONS) -> np.ndarray:
    """``(n, 7)`` expression probabilities -> ``(n, 2)`` estimated (valence, arousal)."""
    places = _places(tuple(names))
    p = np.asarray(probabilities, np.float64)
    return p @ places / np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)


@lru_cache(maxsize=8)
def _places(names: tuple[str, ...]) -> np.ndarray:
    """The circumplex places of ``names`` as a ``(7, 2)`` array (built once per order: the
    per-frame step asks for it for every face)."""
    places = np.array([CIRCUMPLEX[n] for n in names], np.float64)
    places.flags.writeable = False
    return places
