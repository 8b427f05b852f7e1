"""Trained run -> ``model.onnx`` + ``model.json`` that :class:`EmotionClassifier` loads."""

from __future__ import annotations

import io
import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_path, write_text
from ..classifier import METADATA_FORMAT, metadata_path
from .checkpoint import Checkpoint, load_checkpoint
from .model import Probabilities, build_model

OPSET = 17


def onnx_bytes(module: torch.nn.Module, n_inputs: int) -> bytes:
    """The module as an ONNX graph with input ``x`` ``(n, n_inputs)`` and output ``probs``."""
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tracer / deprecation notes; agreement is checked instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, n_inputs),),
            buffer,
            input_names=["x"],
            output_names=["probs"],
            dynamic_axes={"x": {0: "n"}, "probs": {0: "n"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def build_metadata(ckpt: Checkpoint, **extra: Any) -> dict[str, Any]:
    """The JSON that travels beside the ONNX file."""
    meta = {
        "format": METADATA_FORMAT,
        "format_version": 1,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "trained": True,
        "classes": list(ckpt.classes),
        "blendshapes": list(ckpt.blendshapes),
        "normalization": {"mean": list(map(float, ckpt.mean)), "std": list(map(float, ckpt.std))},
        "temperature": ckpt.temperature,
        "offsets": list(ckpt.offsets) or [0.0] * len(ckpt.classes),
        "model": ckpt.dims.to_dict(),
        "command": ckpt.config.get("command", ""),
        "training": ckpt.config,
        "training_data": ckpt.metrics.get("data", {}),
        "metrics": {k: v for k, v in ckpt.metrics.items() if k != "data"},
    }
    meta.update(extra)
    return meta


def export(
    ckpt: Checkpoint | str | os.PathLike,
    out: str | os.PathLike,
    *,
    check: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``out`` (.onnx) and its .json; returns the metadata (with ``max_abs_diff``)."""
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    out = Path(out).with_suffix(".onnx")
    model = build_model(ckpt.dims)
    model.load_state_dict(ckpt.state_dict)
    module = Probabilities(model, ckpt.temperature, ckpt.offsets).eval()
    data = onnx_bytes(module, ckpt.dims.n_inputs)
    meta = build_metadata(ckpt, **extra)
    meta["onnx_bytes"] = len(data)
    if check:
        meta["onnx_torch_max_abs_diff"] = agreement(module, data, ckpt.dims.n_inputs)
        if meta["onnx_torch_max_abs_diff"] > 1e-5:
            raise RuntimeError(
                f"ONNX and torch disagree by {meta['onnx_torch_max_abs_diff']:.2e} (> 1e-5)"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_text(json.dumps(meta, indent=1) + "\n", metadata_path(out))
    return meta


def agreement(module: torch.nn.Module, data: bytes, n_inputs: int, n: int = 512) -> float:
    """Largest absolute difference of ONNX Runtime and torch probabilities on random inputs."""
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(n, n_inputs)).astype(np.float32) * 2
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    return float(np.abs(got - want).max())
