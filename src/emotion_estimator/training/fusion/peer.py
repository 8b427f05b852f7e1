"""A peer's CNN as a training-time teacher: ``fer``'s mini-Xception (MIT) on the run's own
aligned crops, mixed into the distillation targets. Never a run-time dependency: it runs once
per training run, in the peer's own venv (TensorFlow), through :mod:`.peer_fer`.

Why: a network of another architecture, trained on FER2013's own labels, errs elsewhere than
ours; averaging the two at run time lifted macro F1 and cut sad->happy on held-out real adults
(issue 16). Its seven probabilities also teach the expression head (issue 19). Measured as a
teacher (README, ablation): within the recipe's seed spread, so not the default.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..caps import THREE_CLASSES
from ..fer2013 import EMOTIONS

SCRIPT = Path(__file__).with_name("peer_fer.py")
FER_ORDER = EMOTIONS  # fer's CNN answers in FER2013's label order


def peer_python(explicit: str = "") -> Path:
    """The peer venv's interpreter: ``explicit``, else ``$FER_VENV/bin/python``, else
    ``benchmarks/.venv-fer/bin/python`` under the working directory (``setup_fer.sh``)."""
    if explicit:
        return Path(explicit)
    venv = os.environ.get("FER_VENV") or "benchmarks/.venv-fer"
    return Path(venv) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def peer_expressions(crops: np.ndarray, python: str = "") -> np.ndarray:
    """fer's seven probabilities (``FER_ORDER``) for ``(n, s, s)`` uint8 crops."""
    exe = peer_python(python)
    if not exe.is_file():
        raise InputError(f"--peer-teacher fer: no peer interpreter at {exe} (run "
                         "benchmarks/peers/setup_fer.sh, or give --peer-python)")
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        src, dst = Path(tmp) / "crops.npy", Path(tmp) / "probs.npy"
        np.save(src, np.ascontiguousarray(crops, np.uint8))
        done = subprocess.run([str(exe), str(SCRIPT), str(src), str(dst)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not dst.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"--peer-teacher fer failed (exit {done.returncode}): {last}")
        probs = np.load(dst)
    if probs.shape != (len(crops), len(FER_ORDER)) or not np.isfinite(probs).all():
        raise InputError(f"--peer-teacher fer returned {probs.shape} for {len(crops)} crops")
    return (probs / probs.sum(1, keepdims=True).clip(1e-7)).astype(np.float32)


def fold(expressions: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Seven probabilities -> ``classes`` by the paper's map (``caps.THREE_CLASSES``: happy,
    sad; the other five are unknown); ``classes`` must hold those three."""
    index = {c: i for i, c in enumerate(classes)}
    if not set(THREE_CLASSES.values()) <= set(index):
        raise InputError(f"--peer-teacher: cannot map the peer's expressions to {list(classes)}")
    out = np.zeros((len(expressions), len(classes)), np.float32)
    for j, emotion in enumerate(FER_ORDER):
        out[:, index[THREE_CLASSES[emotion]]] += expressions[:, j]
    return out
