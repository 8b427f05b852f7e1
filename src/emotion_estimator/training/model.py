"""The classifiers: the paper's LSTM over blendshape scores and its dense baseline (§3.3, §4.2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Kind = Literal["lstm", "dense"]
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@dataclass(frozen=True)
class ModelDimensions:
    """Everything needed to rebuild a classifier; stored with its checkpoint."""

    n_inputs: int  # selected blendshapes = sequence length of the LSTM
    n_classes: int = 3
    kind: Kind = "lstm"
    hidden: int = 32  # LSTM units per layer, or dense units per layer
    layers: int = 2  # stacked LSTM layers, or hidden dense layers
    dropout: float = 0.1
    activation: str = "tanh"  # dense baseline's hidden activation

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMClassifier(nn.Module):
    """Scores as a sequence (one scalar per step) through stacked LSTMs; last state -> logits."""

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        self.dims = dims
        self.lstm = nn.LSTM(
            input_size=1,
            hidden_size=dims.hidden,
            num_layers=dims.layers,
            batch_first=True,
            dropout=dims.dropout if dims.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dims.dropout)
        self.head = nn.Linear(dims.hidden, dims.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(n, k)`` standardised scores -> ``(n, n_classes)`` logits."""
        out, _ = self.lstm(x.unsqueeze(-1))
        return self.head(self.dropout(out[:, -1]))


class DenseClassifier(nn.Module):
    """The paper's fully connected baseline: ``layers`` hidden dense layers, then logits."""

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        self.dims = dims
        act = ACTIVATIONS[dims.activation]
        blocks: list[nn.Module] = []
        width = dims.n_inputs
        for _ in range(dims.layers):
            blocks += [nn.Linear(width, dims.hidden), act(), nn.Dropout(dims.dropout)]
            width = dims.hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, dims.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def build_model(dims: ModelDimensions) -> nn.Module:
    """The classifier named by ``dims.kind``."""
    if dims.kind == "lstm":
        return LSTMClassifier(dims)
    if dims.kind == "dense":
        if dims.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        return DenseClassifier(dims)
    raise ValueError(f"unknown model kind {dims.kind!r}")


class Probabilities(nn.Module):
    """Logits -> ``softmax(logits / temperature + offsets)`` (what the ONNX file computes).

    The temperature calibrates confidence; the per-class offsets (a prior shift, zero unless
    fitted) trade the classes' recalls against each other.
    """

    def __init__(
        self, model: nn.Module, temperature: float = 1.0, offsets: list[float] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        n = model.dims.n_classes if hasattr(model, "dims") else 0
        self.register_buffer("offsets", torch.tensor(offsets or [0.0] * n, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(self.model(x) / self.temperature + self.offsets, dim=-1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Logits in eval mode, batched."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
