"""Trained fusion run -> one ONNX graph with named inputs + the metadata JSON declaring them."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...atomic import atomic_path, write_text
from ...classifier import METADATA_FORMAT, metadata_path
from ...errors import InputError
from ...expressions import EXPRESSIONS, SOURCE_NAMES
from ...features import FEATURES, N_LANDMARKS
from ..export import OPSET
from .compress import Compression, compress, decisions_kept, training_rows
from .fold import fold
from .model import FusionNet, FusionProbabilities, checkpoint_members
from .wide import widen


def example_inputs(names: list[str], size: int, n: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of the graph's types and shapes (for tracing and the agreement check)."""
    rng = np.random.default_rng(seed)
    made = {"face": rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            "landmarks": rng.normal(0, 0.6, (n, N_LANDMARKS, 3)).astype(np.float32),
            "blendshapes": rng.random((n, 52), dtype=np.float32)}
    return [made[k] for k in names]


def probabilities_module(ckpt: dict[str, Any]) -> FusionProbabilities:
    """The exported computation of a run's (or an ensemble's) checkpoint; the expression
    view is included when every member has a calibrated 7-way head."""
    members = checkpoint_members(ckpt)
    fine = [m.get("fine_temperature") for m in members]
    order = None
    if all(fine) and all(m.get("fine_classes") for m in members):
        source = [SOURCE_NAMES[c] for c in members[0]["fine_classes"]]
        order = [source.index(name) for name in EXPRESSIONS]
    return FusionProbabilities([FusionNet.from_checkpoint(m) for m in members],
                               [float(m["temperature"]) for m in members], ckpt["offsets"],
                               fine_temperature=[float(t) for t in fine] if order else None,
                               expression_order=order).eval()


def export_fusion(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                  check: bool = True, compression: Compression | None = None,
                  rows: tuple[dict, dict] | None = None, **extra: Any) -> dict[str, Any]:
    """Write ``out`` (.onnx) and its .json from ``fusion.pt`` or ``ensemble.pt``; returns the
    metadata. One run is written with its constants folded into its layers (:mod:`.fold`),
    an ensemble of same-shaped members as one wide network (:mod:`.wide`); either is checked
    against the trained members run as they are.

    ``compression`` (one run only) prunes the folded graph (:mod:`.compress`) on the run's
    training rows, or on ``rows`` = (train inputs, validation inputs) when given; the ONNX
    file is then checked against the compressed graph, and the metadata records how often it
    decides as the trained one on the validation rows.
    """
    try:
        ckpt = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
        module = probabilities_module(ckpt)
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError,
            pickle.UnpicklingError) as exc:
        raise InputError(f"not a fusion checkpoint: {checkpoint} ({exc})") from exc
    graph = fold(module) if len(module.members) == 1 else widen(module)
    compressed = None
    if compression is not None:
        if len(module.members) != 1:
            raise InputError("compressing takes one run, not an ensemble")
        train, val = rows or training_rows(ckpt["config"], compression)
        trained = copy.deepcopy(graph)
        try:
            compressed = compress(graph, train, compression)
        except ValueError as exc:
            raise InputError(f"cannot compress {checkpoint}: {exc}") from exc
        compressed["validation"] = decisions_kept(trained, graph, val, module.names)
    members = checkpoint_members(ckpt)
    first = members[0]
    names, size = module.names, module.model.dims.face_size
    outputs = ["probs", "expressions"] if module.expressions else ["probs"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, tuple(torch.from_numpy(a) for a in example_inputs(names, size)), buffer,
            input_names=names, output_names=outputs,
            dynamic_axes={**{k: {0: "n"} for k in names}, **{o: {0: "n"} for o in outputs}},
            opset_version=OPSET, dynamo=False)
    data = buffer.getvalue()
    inputs = [{"name": k, "kind": k, "version": FEATURES[k], **({"size": size} if k == "face"
                                                                 else {})} for k in names]
    meta = {
        "format": METADATA_FORMAT, "format_version": 3, "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "trained": True,
        "classes": ckpt["classes"], "inputs": inputs,
        "expressions": list(EXPRESSIONS) if module.expressions else None,
        "operating_points": ckpt.get("operating_points") or {
            "balanced": {c: 0.0 for c in ckpt["classes"]}},
        "temperature": [m["temperature"] for m in members] if len(members) > 1
        else ckpt["temperature"], "offsets": ckpt["offsets"],
        "model": {"kind": "fusion", "members": len(members), **first["dims"],
                  "layout": ("members" if graph is module else "folded"
                             if len(members) == 1 else "wide"),
                  **({"compressed": compressed} if compressed else {})},
        "command": ckpt["config"].get("command", ""), "training": ckpt["config"],
        "training_data": ckpt["metrics"].get("data", {}),
        "metrics": {k: v for k, v in ckpt["metrics"].items() if k != "data"},
        "onnx_bytes": len(data),
    }
    if not module.expressions:
        meta["expressions"] = None
        meta["expressions_note"] = "this model has no expression view (no 7-way head)"
    meta.update(extra)
    if check:
        meta["onnx_torch_max_abs_diff"] = agreement(module, data, names, size,
                                                    graph if compressed else None)
        if meta["onnx_torch_max_abs_diff"] > 1e-4:
            raise RuntimeError(f"ONNX and torch disagree by "
                               f"{meta['onnx_torch_max_abs_diff']:.2e} (> 1e-4)")
    out = Path(out).with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_text(json.dumps(meta, indent=1) + "\n", metadata_path(out))
    return meta


def agreement(module: torch.nn.Module, data: bytes, names: list[str], size: int,
              computed: torch.nn.Module | None = None) -> float:
    """Largest absolute difference of ONNX Runtime and torch probabilities on random inputs
    (vector inputs drawn around ``module``'s training statistics, so the outputs are not all
    one-hot); torch runs ``computed`` when given (a compressed graph), else ``module``."""
    import onnxruntime as ort

    arrays = example_inputs(names, size, n=64, seed=1)
    rng = np.random.default_rng(2)
    branches = module.model.branches
    for i, name in enumerate(names):
        if name != "face":
            mean, inv_std = (branches[name].mean.numpy(), branches[name].inv_std.numpy())
            noise = rng.normal(0, 0.5, (len(arrays[i]), mean.size)) / inv_std
            arrays[i] = (mean + noise).astype(np.float32).reshape(arrays[i].shape)
    with torch.no_grad():
        want = (computed if computed is not None else module)(
            *(torch.from_numpy(a) for a in arrays))
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, dict(zip(names, arrays, strict=True)))
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
