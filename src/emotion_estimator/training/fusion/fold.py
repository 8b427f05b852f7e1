"""One trained fusion member as a lean graph for export: everything constant folded in.

:class:`.model.FusionProbabilities` traced as it is carries its training shape into the ONNX
file: batch norms after dense layers, the vector inputs' standardisation, the face's
normalisation as torch's ``std`` spells it, the temperature, the offsets and the expression
order as operators of their own, each one more call per face. Here every batch norm goes into
the convolution or linear layer before it, the standardisation into the first layer, ``1/T``
and the offsets into the head's last layer (one member: ``softmax(log softmax(z / T) + o)`` is
``softmax(z / T + o)``), ``1/T7`` and the order into the expression head's last layer. Same
inputs, outputs and function, to float rounding (the export checks it); the shipped model has
61 ONNX operators instead of 85.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import FaceBranch, FusionProbabilities, VectorBranch, _Stage
from .wide import _bn_scale, flat_layers


def _absorb(layer: nn.Module, scale: Tensor, shift: Tensor) -> nn.Module:
    """``layer`` (conv or linear) followed by ``y * scale + shift`` per output, as one layer."""
    out = copy.deepcopy(layer)
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0])
    if out.bias is None:
        out.bias = nn.Parameter(torch.zeros(w.shape[0]))
    with torch.no_grad():
        out.weight.copy_(w * scale.reshape(-1, *[1] * (w.dim() - 1)))
        out.bias.copy_(b * scale + shift)
    return out


def _folded(module: nn.Module) -> nn.Sequential:
    """``module`` (in eval mode) with each batch norm folded into the layer before it and the
    dropouts left out."""
    layers: list[nn.Module] = []
    for layer in flat_layers(module):
        if isinstance(layer, nn.Dropout):
            continue
        if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            layers[-1] = _absorb(layers[-1], *_bn_scale(layer))
        elif isinstance(layer, _Stage):
            layers.append(_FoldedStage(layer))
        else:
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers)


def _last(seq: nn.Sequential, scale: float, shift: Tensor | None = None,
          rows: Tensor | None = None) -> nn.Sequential:
    """``seq`` whose last (linear) layer is scaled by ``scale``, shifted by ``shift`` and has
    its outputs reordered by ``rows``."""
    last = seq[-1]
    n = last.out_features
    seq[-1] = _absorb(last, torch.full((n,), scale),
                      shift.detach().clone() if shift is not None else torch.zeros(n))
    if rows is not None:
        with torch.no_grad():
            seq[-1].weight.copy_(seq[-1].weight[rows])
            seq[-1].bias.copy_(seq[-1].bias[rows])
    return seq


class _FoldedStage(nn.Module):
    def __init__(self, stage: _Stage) -> None:
        super().__init__()
        self.body, self.skip = _folded(stage.body), _folded(stage.skip)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class _FoldedFace(nn.Module):
    """:class:`.model.FaceBranch` with the ``/ 255`` folded into the normalisation:
    ``(x / 255 - m / 255) / (s / 255 + 0.05) = (x - m) / (s + 12.75)``."""

    def __init__(self, branch: FaceBranch, size: int) -> None:
        super().__init__()
        self.net = _folded(nn.Sequential(branch.stem, branch.stages, branch.top))
        self.size = size

    def normalised(self, face: Tensor) -> Tensor:
        """Crops ``(n, s, s)`` uint8 as the first convolution sees them."""
        x = face.float().reshape(-1, 1, self.size, self.size)
        d = x - x.mean(dim=(2, 3), keepdim=True)
        var = (d * d).sum(dim=(2, 3), keepdim=True) * (1.0 / (self.size * self.size - 1))
        return d / (torch.sqrt(var) + 0.05 * 255)

    def forward(self, face: Tensor) -> Tensor:
        return self.net(self.normalised(face)).mean(dim=(2, 3))


class _FoldedVector(nn.Module):
    """:class:`.model.VectorBranch` with its standardisation in the first linear layer."""

    def __init__(self, branch: VectorBranch) -> None:
        super().__init__()
        first = branch.body[0]
        w, b = first.weight.detach(), first.bias.detach()
        inv, mean = branch.inv_std.detach(), branch.mean.detach()
        standardised = copy.deepcopy(first)
        with torch.no_grad():
            standardised.weight.copy_(w * inv[None, :])
            standardised.bias.copy_(b - (w * inv[None, :]) @ mean)
        self.net = _folded(nn.Sequential(standardised, *list(branch.body)[1:]))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1).float())


class FoldedProbabilities(nn.Module):
    """What a one-member :class:`.model.FusionProbabilities` computes; same inputs and outputs."""

    def __init__(self, reference: FusionProbabilities) -> None:
        super().__init__()
        model = reference.model
        self.names, self.model, self.expressions = reference.names, model, reference.expressions
        self.branches = nn.ModuleList(
            _FoldedFace(model.branches[k], model.dims.face_size) if k == "face"
            else _FoldedVector(model.branches[k]) for k in model.branches)
        self.order = list(model.branches)
        self.head = _last(_folded(model.head), 1.0 / float(reference.temperature[0]),
                          reference.offsets)
        self.fine = (_last(_folded(model.fine), 1.0 / float(reference.fine_temperature[0]),
                           rows=reference.order) if self.expressions else None)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        given = dict(zip(self.names, inputs, strict=True))
        joint = torch.cat([b(given[k]) for k, b in zip(self.order, self.branches, strict=True)],
                          dim=1)
        out = F.softmax(self.head(joint), dim=-1)
        if self.fine is None:
            return out
        return out, F.softmax(self.fine(joint), dim=-1)


def fold(module: FusionProbabilities) -> nn.Module:
    """``module`` (one member: an ensemble is widened, :mod:`.wide`) as a lean graph."""
    if len(module.members) != 1:
        raise ValueError(f"fold takes one member, not {len(module.members)}")
    return FoldedProbabilities(module).eval()
