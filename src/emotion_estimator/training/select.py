"""The paper's blendshape selection (§4.1): keep a blendshape whose score exceeds ``threshold``
in more than ``min_count`` images of the train split; plus its figures (paper Fig. 2 and 5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError
from .data import read_dataset

# the 27 blendshapes the paper kept, as MediaPipe indices (1-5, 9-20, 25, 34, 35, 38, 44-49)
PAPER_INDICES: tuple[int, ...] = (*range(1, 6), *range(9, 21), 25, 34, 35, 38, *range(44, 50))
PAPER_NAMES: tuple[str, ...] = tuple(BLENDSHAPE_NAMES[i] for i in PAPER_INDICES)


@dataclass(frozen=True)
class Selection:
    """Names kept by the rule (MediaPipe order) and the per-blendshape counts behind them."""

    names: tuple[str, ...]
    counts: dict[str, int]  # images with score > threshold, for each of the 52
    threshold: float
    min_count: int
    rows: int

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(BLENDSHAPE_NAMES.index(n) for n in self.names)

    def overlap(self) -> dict[str, list[str]]:
        """Names in both, only in ours and only in the paper's 27 (MediaPipe order)."""
        ours, paper = set(self.names), set(PAPER_NAMES)
        return {"both": [n for n in BLENDSHAPE_NAMES if n in ours & paper],
                "only_ours": [n for n in BLENDSHAPE_NAMES if n in ours - paper],
                "only_paper": [n for n in BLENDSHAPE_NAMES if n in paper - ours]}


def select(scores: pd.DataFrame, threshold: float = 0.4, min_count: int = 100) -> Selection:
    """Apply the rule to a table with the 52 blendshape columns (one row per image)."""
    values = scores[list(BLENDSHAPE_NAMES)].to_numpy(dtype=np.float32)
    above = (values > threshold).sum(axis=0)
    counts = {n: int(c) for n, c in zip(BLENDSHAPE_NAMES, above, strict=True)}
    names = tuple(n for n in BLENDSHAPE_NAMES if counts[n] > min_count)
    return Selection(names, counts, threshold, min_count, len(values))


def load_train_rows(path: str | Path, *, preprocess: str | None = None,
                    include_augmented: bool = False) -> tuple[pd.DataFrame, str]:
    """The train rows of a prepared dataset (file or its folder) and the variant used.

    With several preprocessing variants and none asked for, ``raw`` is used if present (the
    paper's 48x48 images), else the first one.
    """
    table = read_dataset(path, required=("split",))
    path = Path(table.attrs["path"])
    rows = table[table["split"] == "train"]
    if not include_augmented and "augmented" in rows.columns:
        rows = rows[~rows["augmented"].astype(bool)]
    variant = ""
    if "preprocess" in rows.columns:
        present = list(dict.fromkeys(rows["preprocess"]))
        variant = preprocess or ("raw" if "raw" in present else (present[0] if present else ""))
        if variant not in present:
            raise InputError(f"{path}: no train rows with preprocess={variant!r} "
                             f"(present: {', '.join(present) or 'none'})")
        rows = rows[rows["preprocess"] == variant]
    if rows.empty:
        raise InputError(f"{path}: no train rows to select from")
    return rows.reset_index(drop=True), variant


def plot_histogram(row: pd.Series, path: Path, threshold: float) -> None:
    """Paper Fig. 2: the 52 scores of one image as bars, the threshold as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.bar(range(len(BLENDSHAPE_NAMES)), row[list(BLENDSHAPE_NAMES)].to_numpy(dtype=float),
           color="tab:blue")
    ax.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold}")
    ax.set_xticks(range(len(BLENDSHAPE_NAMES)), BLENDSHAPE_NAMES, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    title = f"blendshapes of image {int(row['image_id'])}" if "image_id" in row else "blendshapes"
    if "source_label" in row:
        title += f" ({row['source_label']})"
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def plot_scatter(rows: pd.DataFrame, selection: Selection, path: Path, *,
                 max_points: int = 5000, seed: int = 0) -> None:
    """Paper Fig. 5: every image's score per blendshape (jittered), kept ones coloured."""
    plt = _pyplot()
    if len(rows) > max_points:
        rows = rows.sample(max_points, random_state=seed)
    values = rows[list(BLENDSHAPE_NAMES)].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(13, 5))
    kept = set(selection.names)
    for i, name in enumerate(BLENDSHAPE_NAMES):
        x = i + rng.uniform(-0.3, 0.3, size=len(values))
        ax.scatter(x, values[:, i], s=1, alpha=0.25, rasterized=True,
                   color="tab:green" if name in kept else "tab:gray")
    ax.axhline(selection.threshold, color="tab:red", linestyle="--",
               label=f"threshold {selection.threshold} (kept if > {selection.min_count} images)")
    ax.set_xticks(range(len(BLENDSHAPE_NAMES)), BLENDSHAPE_NAMES, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title(f"blendshape scores over {selection.rows} train images "
                 f"({len(rows)} drawn); green = kept ({len(selection.names)})")
    ax.legend(loc="upper right", markerscale=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
