"""Figures: training curves, confusion matrix, contact sheet of images (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(*args, **kwargs)


def _save(plt, fig, path: str | os.PathLike) -> None:
    from ..atomic import atomic_path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(path).suffix[1:] or "png")
    finally:
        plt.close(fig)


def training_curves(history: Sequence[dict[str, float]], path: str | os.PathLike) -> None:
    """Train/val loss and val accuracy / macro F1 per epoch."""
    plt, fig, (a, b) = _figure(1, 2, figsize=(10, 3.5))
    epochs = [h["epoch"] for h in history]
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["val_loss"] for h in history], label="val")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    a.legend()
    b.plot(epochs, [h["val_accuracy"] for h in history], label="val accuracy")
    b.plot(epochs, [h["val_macro_f1"] for h in history], label="val macro F1")
    b.set(xlabel="epoch", title="validation")
    b.legend()
    _save(plt, fig, path)


def confusion_matrix(
    matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Counts with row-normalised shading; rows = truth, columns = prediction."""
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    plt, fig, ax = _figure(figsize=(4.2, 3.8))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, f"{n}\n{rates[i, j]:.0%}", ha="center", va="center",
                color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="truth", title=title)
    _save(plt, fig, path)


def contact_sheet(
    images: Sequence[np.ndarray], captions: Sequence[str], path: str | os.PathLike,
    columns: int = 12,
) -> None:
    """Grey images in a grid with one caption each."""
    rows = max(1, -(-len(images) // columns))
    plt, fig, axes = _figure(rows, columns, figsize=(columns * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=6)
    _save(plt, fig, path)
