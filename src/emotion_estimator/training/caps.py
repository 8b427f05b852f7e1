"""Class mapping (7 FER emotions -> training labels) and seeded per-class caps (paper Table 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .fer2013 import EMOTIONS

# paper §3.1: happy -> happy, sad -> sad, the other five -> unknown
THREE_CLASSES: dict[str, str] = {e: e if e in ("happy", "sad") else "unknown" for e in EMOTIONS}
SEVEN_CLASSES: dict[str, str] = {e: e for e in EMOTIONS}
# paper Table 2, train split only; None = keep every row ("maximum possible")
PAPER_CAPS: dict[str, int | None] = {"happy": 4000, "sad": 4000, "angry": 1500, "fear": 1500,
                                     "surprise": 1500, "neutral": 1500, "disgust": None}


def class_map(spec: str) -> dict[str, str]:
    """``"3"`` (paper), ``"7"`` (identity) or a JSON file ``{"angry": "unknown", ...}``."""
    if spec == "3":
        return dict(THREE_CLASSES)
    if spec == "7":
        return dict(SEVEN_CLASSES)
    path = Path(spec)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--classes must be 3, 7 or a JSON mapping file: {exc}") from exc
    if not isinstance(mapping, dict) or set(mapping) != set(EMOTIONS) or not all(
            isinstance(v, str) and v for v in mapping.values()):
        raise InputError(f"{path}: the mapping must give a label (string) for each of "
                         f"{', '.join(EMOTIONS)}")
    return mapping


def parse_caps(spec: str) -> dict[str, int | None]:
    """``"paper"``, ``"none"`` or ``"happy=4000,sad=4000,..."`` (unlisted classes: no cap)."""
    if spec == "paper":
        return dict(PAPER_CAPS)
    caps: dict[str, int | None] = dict.fromkeys(EMOTIONS)
    if spec == "none":
        return caps
    for item in spec.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in caps or not value.strip().isdigit():
            raise InputError(f"--caps: expected paper, none or CLASS=N,... with classes from "
                             f"{', '.join(EMOTIONS)}; got {item!r}")
        caps[name] = int(value)
    return caps


def apply_caps(samples: pd.DataFrame, caps: dict[str, int | None], seed: int) -> pd.Series:
    """Boolean mask of the kept rows: train rows sampled per source class, val/test all kept.

    The draw depends only on ``seed`` and the image ids of each class (not on row order), so
    the same input and seed keep the same images.
    """
    keep = pd.Series(True, index=samples.index)
    train = samples["split"] == "train"
    for offset, label in enumerate(EMOTIONS):
        cap = caps.get(label)
        rows = samples.index[train & (samples["source_label"] == label)]
        if cap is None or len(rows) <= cap:
            continue
        order = np.argsort(samples.loc[rows, "image_id"].to_numpy(), kind="stable")
        rng = np.random.default_rng([seed, offset])
        chosen = rng.choice(len(rows), size=cap, replace=False)
        dropped = np.setdiff1d(np.arange(len(rows)), chosen)
        keep[rows[order[dropped]]] = False
    return keep
