"""PNG timeline of the class probabilities per face (matplotlib, imported only here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

MAX_FACES = 6  # panels; the faces seen longest are drawn


def require_matplotlib() -> None:
    """Fail early, with the install hint, where matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise InputError("--plot needs matplotlib: pip install 'emotion-estimator[train]' "
                         "(or pip install matplotlib)") from exc


def plot_timeline(table: pd.DataFrame, classes: Sequence[str], path: str | os.PathLike,
                  title: str = "") -> Path:
    """One panel per face id: its filtered probabilities over time, frames without a face
    shaded; written atomically to ``path`` in the format its suffix names (png, svg, pdf)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .render import class_color

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")
    faces = table[table["face_detected"]]
    ids = faces["face_id"].value_counts().index[:MAX_FACES].sort_values().tolist()
    times = table.drop_duplicates("timestamp_s")["timestamp_s"]
    step = float(times.diff().median()) if len(times) > 1 else 0.04
    spans = _spans(table.loc[~table["face_detected"], "timestamp_s"].to_numpy(), step)
    fig, axes = plt.subplots(max(len(ids), 1), 1, sharex=True, squeeze=False,
                             figsize=(10, 1.2 + 1.8 * max(len(ids), 1)))
    for ax, face_id in zip(axes[:, 0], ids or [None], strict=True):
        rows = faces[faces["face_id"] == face_id].sort_values("timestamp_s")
        for name in classes:
            b, g, r = class_color(name, classes)
            ax.plot(rows["timestamp_s"], rows[f"p_{name}"], lw=1.4, label=name,
                    marker="." if len(rows) < 5 else None, color=(r / 255, g / 255, b / 255))
        for t0, t1 in spans:
            ax.axvspan(t0, t1, color="0.85", lw=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel("no face" if face_id is None else f"face {face_id}")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", ncol=len(classes), fontsize="small")
    axes[0, 0].set_title(title or "class probabilities per face (grey: no face)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lower().lstrip(".") or "png", dpi=110)
    finally:
        plt.close(fig)
    return path


def _spans(times: np.ndarray, step: float) -> list[tuple[float, float]]:
    """Runs of consecutive frame times (gaps up to 1.5 steps) as ``(start, end)`` spans."""
    spans: list[tuple[float, float]] = []
    for t in np.sort(times):
        if spans and t - spans[-1][1] <= 1.5 * step:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return [(a - step / 2, b + step / 2) for a, b in spans]
