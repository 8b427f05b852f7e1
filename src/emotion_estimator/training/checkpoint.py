"""What a training run keeps: weights plus everything needed to use and export them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import InputError
from .model import ModelDimensions

CHECKPOINT = "model.pt"


@dataclass
class Checkpoint:
    """Weights, architecture, classes, blendshape names, normalisation and provenance."""

    dims: ModelDimensions
    state_dict: dict[str, torch.Tensor]
    classes: tuple[str, ...]
    blendshapes: tuple[str, ...]
    mean: list[float]
    std: list[float]
    temperature: float = 1.0
    offsets: list[float] = field(default_factory=list)  # per-class logit offsets, [] = none
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dims": self.dims.to_dict(),
            "state_dict": self.state_dict,
            "classes": list(self.classes),
            "blendshapes": list(self.blendshapes),
            "mean": list(self.mean),
            "std": list(self.std),
            "temperature": self.temperature,
            "offsets": list(self.offsets),
            "config": self.config,
            "metrics": self.metrics,
        }


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Atomic save (temp file + rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(ckpt.to_dict(), tmp)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint file, or a run directory holding ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        return Checkpoint(
            dims=ModelDimensions(**raw["dims"]),
            state_dict=raw["state_dict"],
            classes=tuple(raw["classes"]),
            blendshapes=tuple(raw["blendshapes"]),
            mean=list(raw["mean"]),
            std=list(raw["std"]),
            temperature=float(raw.get("temperature", 1.0)),
            offsets=[float(v) for v in raw.get("offsets", [])],
            config=raw.get("config", {}),
            metrics=raw.get("metrics", {}),
        )
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"not a training checkpoint: {path} ({exc})") from exc
