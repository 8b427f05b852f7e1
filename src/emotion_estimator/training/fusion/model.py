"""The fusion classifier: aligned face crop (CNN) + landmark geometry + blendshapes, one graph.

Each branch ends in features that are concatenated into one head; each also has an auxiliary
head used only in training (so no branch is left untrained behind an easier one). The graph
takes the :mod:`emotion_estimator.features` inputs as they are built at run time (uint8 crop,
aligned landmarks, raw scores) and normalises them itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...features import N_LANDMARKS

INPUT_NAMES = ("face", "landmarks", "blendshapes")


@dataclass(frozen=True)
class FusionDimensions:
    """Everything needed to rebuild a fusion model; stored with its checkpoint."""

    inputs: tuple[str, ...] = INPUT_NAMES
    n_classes: int = 3
    face_size: int = 48
    width: int = 32  # channels after the stem; stages double it
    stem: str = "full"  # its stride-2 layer: "full" 3x3 conv | "separable" depthwise + 1x1
    landmark_hidden: int = 128
    head_hidden: int = 128
    dropout: float = 0.3
    n_fine: int = 0  # > 0: a head over fusion.data.FINE_CLASSES (the 7 expressions)
    fine_hidden: int = 0  # its hidden width (0: one linear layer, as in format 1 runs)
    stats: dict = field(default_factory=dict, compare=False)  # normalisation, set by training

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        d.pop("stats")
        return d


def checkpoint_members(ckpt: dict) -> list[dict]:
    """The member checkpoints of an ensemble's checkpoint; a single run's is its one member."""
    return ckpt.get("members") or [ckpt]


def _sep(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _Stage(nn.Module):
    """Two separable convolutions and a 2x max pool, with a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_sep(cin, cout), _sep(cout, cout), nn.MaxPool2d(2))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


STEMS = ("full", "separable")


def _stem(w: int, kind: str) -> nn.Sequential:
    """Full-resolution 3x3 conv to ``3w/4`` channels, then the stride-2 step to ``w``: a full
    3x3 convolution (``full``) or, at an eighth of its multiply-adds, a depthwise 3x3 + 1x1
    (``separable``)."""
    if kind not in STEMS:
        raise ValueError(f"unknown stem {kind!r} (one of {', '.join(STEMS)})")
    c = w * 3 // 4
    down = ([nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False)] if kind == "full" else
            [nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False),
             nn.Conv2d(c, w, 1, bias=False)])
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                         nn.ReLU(), *down, nn.BatchNorm2d(w), nn.ReLU())


class FaceBranch(nn.Module):
    """Greyscale crop ``(n, s, s)`` uint8 -> features; per-image contrast normalisation."""

    def __init__(self, width: int, stem: str = "full") -> None:
        super().__init__()
        w = width
        self.stem = _stem(w, stem)
        self.stages = nn.Sequential(_Stage(w, 2 * w), _Stage(2 * w, 4 * w))
        self.top = _sep(4 * w, 6 * w)
        self.out_features = 6 * w

    def forward(self, face: Tensor) -> Tensor:
        x = face.float().unsqueeze(1) / 255.0
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        x = (x - mean) / (std + 0.05)
        x = self.top(self.stages(self.stem(x)))
        return x.mean(dim=(2, 3))


class VectorBranch(nn.Module):
    """A flat input, standardised with stored statistics, through one or two dense layers."""

    def __init__(self, n: int, hidden: int, out: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("inv_std", torch.ones(n))
        self.body = nn.Sequential(nn.Linear(n, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, out), nn.ReLU())
        self.out_features = out

    def forward(self, x: Tensor) -> Tensor:
        return self.body((x.flatten(1).float() - self.mean) * self.inv_std)


class FusionNet(nn.Module):
    """``forward(**inputs)`` -> ``(logits, {branch: auxiliary logits})``; the dict also holds
    ``fine`` (logits over ``fusion.data.FINE_CLASSES``) when the model has that head."""

    def __init__(self, dims: FusionDimensions) -> None:
        super().__init__()
        self.dims = dims
        branches: dict[str, nn.Module] = {}
        if "face" in dims.inputs:
            branches["face"] = FaceBranch(dims.width, dims.stem)
        if "landmarks" in dims.inputs:
            branches["landmarks"] = VectorBranch(N_LANDMARKS * 3, dims.landmark_hidden, 128,
                                                 dims.dropout)
        if "blendshapes" in dims.inputs:
            branches["blendshapes"] = VectorBranch(52, 64, 64, dims.dropout / 2)
        if not branches:
            raise ValueError("a fusion model needs at least one input")
        self.branches = nn.ModuleDict(branches)
        width = sum(b.out_features for b in branches.values())
        self.aux = nn.ModuleDict({k: nn.Linear(b.out_features, dims.n_classes)
                                  for k, b in branches.items()})
        self.head = nn.Sequential(nn.Dropout(dims.dropout), nn.Linear(width, dims.head_hidden),
                                  nn.ReLU(), nn.Dropout(dims.dropout / 2),
                                  nn.Linear(dims.head_hidden, dims.n_classes))
        self.fine: nn.Module | None = None
        if dims.n_fine and dims.fine_hidden:
            self.fine = nn.Sequential(nn.Dropout(dims.dropout),
                                      nn.Linear(width, dims.fine_hidden), nn.ReLU(),
                                      nn.Dropout(dims.dropout / 2),
                                      nn.Linear(dims.fine_hidden, dims.n_fine))
        elif dims.n_fine:
            self.fine = nn.Linear(width, dims.n_fine)
        self.modality_dropout = 0.0

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> FusionNet:
        """The trained model of one run's checkpoint dict, in eval mode."""
        dims = ckpt["dims"]
        model = cls(FusionDimensions(**{**dims, "inputs": tuple(dims["inputs"])}))
        model.load_state_dict(ckpt["state_dict"])
        return model.eval()

    def set_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Standardisation of the vector inputs (mean, std over the train split)."""
        for name, (mean, std) in stats.items():
            branch = self.branches[name]
            branch.mean.copy_(mean.flatten())
            branch.inv_std.copy_(1.0 / std.flatten().clamp_min(1e-4))

    def forward(self, face: Tensor | None = None, landmarks: Tensor | None = None,
                blendshapes: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        given = {"face": face, "landmarks": landmarks, "blendshapes": blendshapes}
        feats, aux = [], {}
        for name, branch in self.branches.items():
            f = branch(given[name])
            aux[name] = self.aux[name](f)
            if self.training and self.modality_dropout > 0:
                keep = (torch.rand(f.shape[0], 1, device=f.device) >= self.modality_dropout)
                f = f * keep.to(f.dtype)
            feats.append(f)
        joint = torch.cat(feats, dim=1)
        if self.fine is not None:
            aux["fine"] = self.fine(joint)
        return self.head(joint), aux


class FusionProbabilities(nn.Module):
    """What the ONNX file computes from one or more trained members (an ensemble averages
    their calibrated probabilities): ``probs = softmax(log(mean_m softmax(logits_m / T_m)) +
    offsets)`` and, where every member has the expression head, ``expressions`` =
    ``mean_m softmax(fine_m / T7_m)`` reordered by ``expression_order``."""

    def __init__(self, model: FusionNet | list[FusionNet], temperature: float | list[float] = 1.0,
                 offsets: list[float] | None = None, *,
                 fine_temperature: float | list[float] | None = None,
                 expression_order: list[int] | None = None) -> None:
        super().__init__()
        members = model if isinstance(model, list) else [model]
        self.members = nn.ModuleList(members)
        self.model = members[0]
        self.names = [n for n in INPUT_NAMES if n in self.model.dims.inputs]
        temps = temperature if isinstance(temperature, list) else [temperature] * len(members)
        self.register_buffer("temperature", torch.tensor(temps, dtype=torch.float32))
        n = self.model.dims.n_classes
        self.register_buffer("offsets", torch.tensor(offsets or [0.0] * n, dtype=torch.float32))
        self.expressions = expression_order is not None
        if self.expressions:
            ft = (fine_temperature if isinstance(fine_temperature, list)
                  else [fine_temperature or 1.0] * len(members))
            self.register_buffer("fine_temperature", torch.tensor(ft, dtype=torch.float32))
            self.register_buffer("order", torch.tensor(expression_order, dtype=torch.long))

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        given = dict(zip(self.names, inputs, strict=True))
        probs, expr = [], []
        for i, member in enumerate(self.members):
            logits, aux = member(**given)
            probs.append(F.softmax(logits / self.temperature[i], dim=-1))
            if self.expressions:
                expr.append(F.softmax(aux["fine"] / self.fine_temperature[i], dim=-1))
        mean = torch.stack(probs).mean(0) if len(probs) > 1 else probs[0]
        out = F.softmax(torch.log(mean.clamp_min(1e-7)) + self.offsets, dim=-1)
        if not self.expressions:
            return out
        e = torch.stack(expr).mean(0) if len(expr) > 1 else expr[0]
        return out, e[:, self.order]
