"""Plots of a result table (matplotlib, imported only here): a timeline of the class
probabilities per face for video, a bar chart per face for a still."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(name: str, classes: Sequence[str]) -> tuple[float, float, float]:
    from .render import class_color

    b, g, r = class_color(name, classes)
    return r / 255, g / 255, b / 255


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lower().lstrip(".") or "png", dpi=110)
    finally:
        plt.close(fig)
    return path


def _folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")
    return path


def label_runs(rows: pd.DataFrame, step: float) -> list[tuple[float, float, str | None]]:
    """One face's rows (sorted by time) as ``(start, end, label)`` runs of the label it
    showed, ``None`` while undecided; a run ends half a frame after its last row."""
    runs: list[tuple[float, float, str | None]] = []
    decided = (rows["decided"].fillna(True) if "decided" in rows  # NA: a table without it
               else [True] * len(rows))
    for t, label, ok in zip(rows["timestamp_s"], rows["label"], decided, strict=True):
        shown = str(label) if bool(ok) and not _isna(label) else None
        if runs and runs[-1][2] == shown and t - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], t + step / 2, shown)
        else:
            runs.append((t - step / 2, t + step / 2, shown))
    return runs


def _isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def plot_timeline(table: pd.DataFrame, classes: Sequence[str], path: str | os.PathLike,
                  title: str = "") -> Path:
    """One panel per face id: its filtered probabilities (0-1) over time in seconds, frames
    without a face shaded, and above them a strip of the label the face showed (hatched grey
    while undecided); written atomically to ``path`` in the format its suffix names."""
    plt = _pyplot()
    path = _folder(path)
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
            ax.plot(rows["timestamp_s"], rows[f"p_{name}"], lw=1.4, label=name,
                    marker="." if len(rows) < 5 else None, color=_rgb(name, classes))
        for t0, t1 in spans:
            ax.axvspan(t0, t1, color="0.85", lw=0)
        if face_id is not None and "label" in rows:
            for t0, t1, label in label_runs(rows, step):
                if label is None:  # undecided: white, hatched
                    ax.broken_barh([(t0, t1 - t0)], (1.03, 0.07), facecolor="white",
                                   edgecolor="0.45", lw=0.5, hatch="////")
                else:
                    ax.broken_barh([(t0, t1 - t0)], (1.03, 0.07), lw=0,
                                   color=_rgb(label, classes))
        ax.set_ylim(0, 1.12)
        ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.set_ylabel("no face" if face_id is None else f"face {face_id}\nprobability")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower right", ncol=len(classes), fontsize="small")
    axes[0, 0].set_title(title or "class probabilities per face (grey: no face; "
                                  "strip: label shown, hatched while undecided)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def plot_still(table: pd.DataFrame, classes: Sequence[str], path: str | os.PathLike,
               title: str = "") -> Path:
    """A still: one group of bars per face, its class probabilities, the label above."""
    plt = _pyplot()
    path = _folder(path)
    faces = table[table["face_detected"]].sort_values("face_id")
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * max(len(faces), 1), 3.6))
    width = 0.8 / max(len(classes), 1)
    for k, name in enumerate(classes):
        xs = [i + (k - (len(classes) - 1) / 2) * width for i in range(len(faces))]
        ax.bar(xs, faces[f"p_{name}"].tolist(), width, label=name, color=_rgb(name, classes))
    ticks = []
    for _, row in faces.iterrows():
        label = row.get("label")
        decided = row.get("decided", True)
        shown = (f"{label} {row[f'p_{label}']:.0%}" if (_isna(decided) or bool(decided))
                 and f"p_{label}" in row else "undecided")
        ticks.append(f"face {int(row['face_id'])}\n{shown}")
    ax.set_xticks(range(len(faces)), ticks)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("probability")
    if faces.empty:
        ax.text(0.5, 0.5, "no face", ha="center", va="center", transform=ax.transAxes)
    ax.legend(loc="upper right", ncol=len(classes), fontsize="small")
    ax.set_title(title or "class probabilities per face")
    fig.tight_layout()
    return _save(fig, path)


def _spans(times: np.ndarray, step: float) -> list[tuple[float, float]]:
    """Runs of consecutive frame times (gaps up to 1.5 steps) as ``(start, end)`` spans."""
    spans: list[tuple[float, float]] = []
    for t in np.sort(times):
        if spans and t - spans[-1][1] <= 1.5 * step:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return [(a - step / 2, b + step / 2) for a, b in spans]
