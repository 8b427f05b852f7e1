"""Trained fusion run -> one ONNX graph with named inputs + the metadata JSON declaring them."""

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
from ..features import FEATURES, N_LANDMARKS
from .export import OPSET
from .fusion import FusionProbabilities
from .fusion_train import load_fusion


def example_inputs(names: list[str], size: int, n: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of the graph's types and shapes (for tracing and the agreement check)."""
    rng = np.random.default_rng(seed)
    made = {"face": rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            "landmarks": rng.normal(0, 0.6, (n, N_LANDMARKS, 3)).astype(np.float32),
            "blendshapes": rng.random((n, 52), dtype=np.float32)}
    return [made[k] for k in names]


def export_fusion(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                  check: bool = True, **extra: Any) -> dict[str, Any]:
    """Write ``out`` (.onnx) and its .json; returns the metadata."""
    model, ckpt = load_fusion(checkpoint)
    module = FusionProbabilities(model, ckpt["temperature"], ckpt["offsets"]).eval()
    names, size = module.names, model.dims.face_size
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(torch.from_numpy(a) for a in example_inputs(names, size)), buffer,
            input_names=names, output_names=["probs"],
            dynamic_axes={**{k: {0: "n"} for k in names}, "probs": {0: "n"}},
            opset_version=OPSET, dynamo=False)
    data = buffer.getvalue()
    inputs = [{"name": k, "kind": k, "version": FEATURES[k], **({"size": size} if k == "face"
                                                                 else {})} for k in names]
    meta = {
        "format": METADATA_FORMAT, "format_version": 2, "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "trained": True,
        "classes": ckpt["classes"], "inputs": inputs,
        "temperature": ckpt["temperature"], "offsets": ckpt["offsets"],
        "model": {"kind": "fusion", **ckpt["dims"]},
        "command": ckpt["config"].get("command", ""), "training": ckpt["config"],
        "training_data": ckpt["metrics"].get("data", {}),
        "metrics": {k: v for k, v in ckpt["metrics"].items() if k != "data"},
        "onnx_bytes": len(data),
    }
    meta.update(extra)
    if check:
        meta["onnx_torch_max_abs_diff"] = agreement(module, data, names, size)
        if meta["onnx_torch_max_abs_diff"] > 1e-4:
            raise RuntimeError(f"ONNX and torch disagree by "
                               f"{meta['onnx_torch_max_abs_diff']:.2e} (> 1e-4)")
    out = Path(out).with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_text(json.dumps(meta, indent=1) + "\n", metadata_path(out))
    return meta


def agreement(module: torch.nn.Module, data: bytes, names: list[str], size: int) -> float:
    """Largest absolute difference of ONNX Runtime and torch probabilities on random inputs."""
    import onnxruntime as ort

    arrays = example_inputs(names, size, n=64, seed=1)
    with torch.no_grad():
        want = module(*(torch.from_numpy(a) for a in arrays)).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, dict(zip(names, arrays, strict=True)))[0]
    return float(np.abs(got - want).max())
