"""Runtime emotion classifier: 52 blendshape scores -> class probabilities (ONNX Runtime).

A model is two files with one stem: ``name.onnx`` (input ``x``: ``(n, k)`` standardised scores
of the ``k`` blendshapes it uses; output: ``(n, len(classes))`` probabilities) and
``name.json`` (classes, blendshape names, normalisation statistics, provenance). This module
never imports torch.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .blendshapes import BLENDSHAPE_NAMES
from .errors import InputError

DEFAULT_MODEL = "default.onnx"
METADATA_FORMAT = "emotion-estimator/classifier"


def default_model_path() -> Path:
    """The classifier shipped inside the package."""
    return shipped_model_path(DEFAULT_MODEL)


def shipped_model_path(name: str) -> Path:
    """A model shipped inside the package, by file name or stem (``default``, ``lstm``)."""
    stem = name[:-5] if name.endswith(".onnx") else name
    return Path(str(resources.files("emotion_estimator") / "models" / f"{stem}.onnx"))


def shipped_models() -> list[str]:
    """Stems of the models shipped inside the package."""
    folder = default_model_path().parent
    return sorted(p.stem for p in folder.glob("*.onnx"))


def resolve_model(path: str | os.PathLike | None) -> Path:
    """``None`` -> the default; a shipped model's name (``lstm``) -> its file; else a path."""
    if path is None:
        return default_model_path()
    model = Path(path)
    if not model.exists() and model.name == str(path) and model.stem in shipped_models():
        return shipped_model_path(model.name)
    return model


def metadata_path(model_path: str | os.PathLike) -> Path:
    """The metadata JSON beside an ``.onnx`` file (same stem)."""
    return Path(model_path).with_suffix(".json")


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"model metadata not found: {path} (expected beside the .onnx file)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model metadata is not valid JSON: {path} ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(f"model metadata must be a JSON object: {path}")
    for key in ("classes", "blendshapes", "normalization"):
        if key not in meta:
            raise InputError(f"model metadata {path} lacks {key!r}")
    unknown = [n for n in meta["blendshapes"] if n not in BLENDSHAPE_NAMES]
    if unknown:
        raise InputError(f"model metadata {path} names unknown blendshapes: {unknown[:3]}")
    norm = meta["normalization"]
    k = len(meta["blendshapes"])
    if not isinstance(norm, dict) or any(len(norm.get(s) or ()) != k for s in ("mean", "std")):
        raise InputError(f"model metadata {path}: normalization needs mean and std of length {k}")
    if len(meta["classes"]) < 2:
        raise InputError(f"model metadata {path}: needs at least two classes")
    return meta


class EmotionClassifier:
    """Blendshape scores in MediaPipe order -> probabilities over :attr:`classes`.

    Use :meth:`load`; ``predict_proba`` selects the model's blendshapes, standardises them with
    the stored statistics and runs the ONNX graph.
    """

    def __init__(self, session: Any, metadata: dict[str, Any], path: Path) -> None:
        self._session = session
        self.metadata = metadata
        self.path = path
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.blendshapes: tuple[str, ...] = tuple(metadata["blendshapes"])
        self._columns = np.array([BLENDSHAPE_NAMES.index(n) for n in self.blendshapes])
        norm = metadata["normalization"]
        self._mean = np.asarray(norm["mean"], dtype=np.float32)
        self._scale = (1.0 / np.maximum(np.asarray(norm["std"], dtype=np.float32), 1e-6)).astype(
            np.float32
        )
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int = 1) -> EmotionClassifier:
        """Load ``path`` (``.onnx`` with its ``.json`` beside it).

        ``None`` is the shipped default; the name of another shipped model (``"lstm"``, the
        paper's architecture) loads that one.
        """
        import onnxruntime as ort

        model = resolve_model(path)
        if not model.is_file():
            raise InputError(f"classifier model not found: {model} "
                             f"(shipped models: {', '.join(shipped_models())})")
        meta = _read_metadata(metadata_path(model))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise InputError(f"not a readable ONNX model: {model}") from exc
        shape = session.get_inputs()[0].shape
        k = len(meta["blendshapes"])
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k):
            raise InputError(
                f"model {model} takes input shape {shape}, but its metadata lists {k} blendshapes"
            )
        out = session.get_outputs()[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != len(meta["classes"])):
            raise InputError(
                f"model {model} outputs shape {out}, but its metadata lists "
                f"{len(meta['classes'])} classes"
            )
        return cls(session, meta, model)

    @property
    def trained(self) -> bool:
        """False for a placeholder model that was never trained."""
        return bool(self.metadata.get("trained", True))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 52)`` (or ``(52,)``) scores in MediaPipe order -> ``(n, len(classes))``."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(BLENDSHAPE_NAMES):
            raise InputError(
                f"expected blendshape scores of shape (n, {len(BLENDSHAPE_NAMES)}), got {x.shape}"
            )
        if x.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        z = (x[:, self._columns] - self._mean) * self._scale
        (p,) = self._session.run([self._output], {self._input: np.ascontiguousarray(z)})
        return p

    def predict(self, x: np.ndarray) -> list[str]:
        """The most probable class name per row."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(axis=1)]

    def __repr__(self) -> str:
        return (
            f"EmotionClassifier({self.path.name!r}, classes={self.classes}, "
            f"blendshapes={len(self.blendshapes)})"
        )
