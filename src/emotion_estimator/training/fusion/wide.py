"""An ensemble of same-shaped fusion members rewritten as one wide network (export only).

Run member by member, an ensemble of M members costs M times the graph's operators, and on a
CPU a small CNN's time is mostly per-operator overhead, not arithmetic. Here the members sit
side by side in the channels instead: every convolution becomes one grouped convolution
(``groups`` times M; the first, on the shared crop, simply has M times the filters), every
batch norm is folded into the convolution or linear layer before it, the vector branches'
standardisation into their first layer, and the dense layers after the first become grouped
1x1 convolutions over ``(n, M * C, 1, 1)``. The result computes the same function as
:class:`.model.FusionProbabilities` (to float rounding; the export checks it) with one
member's operator count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import INPUT_NAMES, FusionNet, FusionProbabilities, _Stage


def _bn_scale(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Batch norm in eval mode as ``y = x * scale + shift``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _conv(convs: list[nn.Conv2d], bns: list[nn.BatchNorm2d] | None, shared: bool) -> nn.Conv2d:
    """The members' convolutions (each optionally followed by its batch norm) as one.

    ``shared``: all members read the same input channels (the crop), else member m reads
    its own block of the wide input."""
    first = convs[0]
    m = len(convs)
    groups = first.groups if shared else first.groups * m
    wide = nn.Conv2d(first.in_channels * (1 if shared else m), first.out_channels * m,
                     first.kernel_size, first.stride, first.padding, groups=groups, bias=True)
    weights, biases = [], []
    for i, conv in enumerate(convs):
        w = conv.weight.detach()
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        if bns is not None:
            scale, shift = _bn_scale(bns[i])
            w, b = w * scale[:, None, None, None], b * scale + shift
        weights.append(w)
        biases.append(b)
    with torch.no_grad():
        wide.weight.copy_(torch.cat(weights))
        wide.bias.copy_(torch.cat(biases))
    return wide


def _dense(linears: list[nn.Linear], bns: list[nn.BatchNorm1d] | None = None,
           mean: list[Tensor] | None = None, inv_std: list[Tensor] | None = None) -> nn.Conv2d:
    """The members' linear layers as one grouped 1x1 convolution over ``(n, M * C, 1, 1)``;
    ``mean``/``inv_std`` (a shared input's standardisation) folded in, ``bns`` after."""
    shared = mean is not None
    convs = []
    for i, lin in enumerate(linears):
        w, b = lin.weight.detach(), lin.bias.detach()
        if shared:
            w, b = w * inv_std[i][None, :], b - w @ (mean[i] * inv_std[i])
        conv = nn.Conv2d(lin.in_features, lin.out_features, 1)
        with torch.no_grad():
            conv.weight.copy_(w[:, :, None, None])
            conv.bias.copy_(b)
        convs.append(conv)
    wide_bns = None
    if bns is not None:
        wide_bns = []
        for bn in bns:
            as2d = nn.BatchNorm2d(bn.num_features, eps=bn.eps).eval()
            as2d.load_state_dict(bn.state_dict())
            wide_bns.append(as2d)
    return _conv(convs, wide_bns, shared)


def flat_layers(module: nn.Module) -> list[nn.Module]:
    """Nested sequentials as one flat list of layers."""
    if isinstance(module, nn.Sequential):
        return [layer for child in module for layer in flat_layers(child)]
    return [module]


def _layers(seqs: list[nn.Sequential], shared: bool = False) -> list[nn.Module]:
    """The members' sequences of convolutions (each optionally followed by its batch norm),
    ReLUs and pools (``model._stem``, ``model._sep``), widened layer by layer; ``shared``:
    the first convolution reads the shared crop."""
    layers: list[nn.Module] = []
    rows = list(zip(*map(flat_layers, seqs), strict=True))
    for i, row in enumerate(rows):
        if isinstance(row[0], nn.Conv2d):
            bns = rows[i + 1] if i + 1 < len(rows) and isinstance(rows[i + 1][0],
                                                                 nn.BatchNorm2d) else None
            layers.append(_conv(list(row), list(bns) if bns else None, shared and not layers))
        elif not isinstance(row[0], nn.BatchNorm2d):  # ReLU, pool: no weights
            layers.append(row[0])
    return layers


class _WideStage(nn.Module):
    def __init__(self, stages: list[_Stage]) -> None:
        super().__init__()
        self.body = nn.Sequential(*_layers([s.body for s in stages]))
        self.skip = nn.Sequential(*_layers([s.skip for s in stages]))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class _WideFace(nn.Module):
    """Every member's face branch: ``(n, s, s)`` uint8 -> ``(n, M * C)``."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_layers([b.stem for b in branches], shared=True),
            *[_WideStage([b.stages[i] for b in branches]) for i in range(len(branches[0].stages))],
            *_layers([b.top for b in branches]))

    def forward(self, face: Tensor) -> Tensor:
        x = face.float().unsqueeze(1) / 255.0
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        return self.net((x - mean) / (std + 0.05)).mean(dim=(2, 3))


class _WideVector(nn.Module):
    """Every member's vector branch: ``(n, ...)`` -> ``(n, M * C)``."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        bodies = [b.body for b in branches]
        self.net = nn.Sequential(
            _dense([b[0] for b in bodies], [b[1] for b in bodies],
                   [b.mean for b in branches], [b.inv_std for b in branches]), nn.ReLU(),
            _dense([b[4] for b in bodies]), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1).float()[:, :, None, None]).flatten(1)


def _head(heads: list[nn.Module]) -> nn.Sequential:
    """A head (one linear layer, or linear-ReLU-linear with dropouts) of every member."""
    if isinstance(heads[0], nn.Linear):
        return nn.Sequential(_dense(heads))
    return nn.Sequential(_dense([h[1] for h in heads]), nn.ReLU(), _dense([h[4] for h in heads]))


class WideProbabilities(nn.Module):
    """What :class:`.model.FusionProbabilities` computes, as one wide network; same inputs
    and outputs."""

    def __init__(self, reference: FusionProbabilities) -> None:
        super().__init__()
        members: list[FusionNet] = list(reference.members)
        self.m = len(members)
        self.names = reference.names
        self.model = reference.model
        self.expressions = reference.expressions
        self.branch_names = list(members[0].branches)
        self.widths = [members[0].branches[k].out_features for k in self.branch_names]
        self.branches = nn.ModuleDict({
            k: (_WideFace if k == "face" else _WideVector)([mb.branches[k] for mb in members])
            for k in self.branch_names})
        self.head = _head([mb.head for mb in members])
        self.fine = _head([mb.fine for mb in members]) if self.expressions else None
        self.register_buffer("temperature", reference.temperature.clone())
        self.register_buffer("offsets", reference.offsets.clone())
        if self.expressions:
            self.register_buffer("fine_temperature", reference.fine_temperature.clone())
            self.register_buffer("order", reference.order.clone())

    def _mean_softmax(self, layers: nn.Module, joint: Tensor, temperature: Tensor) -> Tensor:
        logits = layers(joint).reshape(joint.shape[0], self.m, -1)
        return F.softmax(logits / temperature[None, :, None], dim=-1).mean(1)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        given = dict(zip(self.names, inputs, strict=True))
        feats = [self.branches[k](given[k]).reshape(-1, self.m, w)
                 for k, w in zip(self.branch_names, self.widths, strict=True)]
        joint = torch.cat(feats, dim=2).reshape(-1, self.m * sum(self.widths), 1, 1)
        mean = self._mean_softmax(self.head, joint, self.temperature)
        out = F.softmax(torch.log(mean.clamp_min(1e-7)) + self.offsets, dim=-1)
        if not self.expressions:
            return out
        return out, self._mean_softmax(self.fine, joint, self.fine_temperature)[:, self.order]


def widen(module: FusionProbabilities) -> nn.Module:
    """``module`` as one wide network when it has several members of one shape, else itself."""
    members = list(module.members)
    if len(members) < 2 or any(m.dims != members[0].dims for m in members[1:]) or \
            any(n not in INPUT_NAMES for n in members[0].branches):
        return module
    return WideProbabilities(module).eval()
