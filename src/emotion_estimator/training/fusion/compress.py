"""A folded run made cheaper after training: fewer stem channels and landmark coordinates,
the layer after each refitted by least squares on the run's own training rows.

Both cuts sit where the network is redundant. The stem's first convolution sees a 3x3 grey
patch, nine numbers, yet has ``3w/4`` output channels; the stride-2 convolution after it is the
graph's dearest layer, and its cost scales with those channels. The landmark branch's first
layer reads the 1,434 coordinates of a face mesh whose 478 points move together; its weights
are the graph's largest matrix. For each cut, a forward greedy search (orthogonal least squares
on the accumulated Gram matrices) picks the channels (each its 3x3 neighbourhood) or the
coordinates that best predict the next layer's pre-activations on a sample of training rows,
and that next layer is refitted to the kept ones. No gradient step: what the compressed graph
computes is the trained one's, up to the unexplained share this reports (channel pruning with
least-squares reconstruction; He, Zhang and Sun, ICCV 2017).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fold import FoldedProbabilities

MIN_ROWS = 16  # training rows the least-squares fits need at the least


@dataclass(frozen=True)
class Compression:
    """What to keep: stem channels (a multiple of 8 suits ONNX Runtime's blocked convolutions)
    and landmark coordinates (of 1,434); a sample of ``rows`` training rows, ``seed``."""

    stem_channels: int = 16
    landmark_coordinates: int = 200
    rows: int = 6000
    seed: int = 0


class Gram:
    """Running sums of features ``x`` and targets ``y`` (float64) for centred least squares."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.xx = self.xy = self.yy = 0.0

    def add(self, x: Tensor, y: Tensor) -> None:
        x, y = x.double(), y.double()
        self.n += len(x)
        self.sx, self.sy = self.sx + x.sum(0), self.sy + y.sum(0)
        self.xx, self.xy = self.xx + x.T @ x, self.xy + x.T @ y
        self.yy = self.yy + (y * y).sum(0)

    def centred(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Feature covariance, feature-target covariance (both times n), target variance."""
        mx, my = self.sx / self.n, self.sy / self.n
        g = self.xx - self.n * torch.outer(mx, mx)
        c = self.xy - self.n * torch.outer(mx, my)
        return g.numpy(), c.numpy(), float((self.yy - self.n * my * my).sum())

    def refit(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Least-squares weights ``(len(keep), m)`` and bias of the targets on features
        ``keep``, and the share of the targets' variance they leave unexplained."""
        g, c, total = self.centred()
        gs = g[np.ix_(keep, keep)]
        w = np.linalg.solve(gs + 1e-9 * np.trace(gs) / len(keep) * np.eye(len(keep)), c[keep])
        bias = (self.sy / self.n).numpy() - (self.sx / self.n).numpy()[keep] @ w
        return w, bias, max(0.0, 1.0 - float((c[keep] * w).sum()) / total)


def greedy(g: np.ndarray, c: np.ndarray, groups: np.ndarray, keep: int) -> list[int]:
    """Forward selection of ``keep`` rows of ``groups`` (each a set of feature indices, all of
    one size): at each step the group whose features, added to those chosen, explain most of
    the targets by least squares (centred Gram ``g``, cross products ``c``)."""
    basis = np.zeros((len(g), 0))  # g[:, chosen] times the inverse Cholesky factor
    residual = c.copy()  # c less what the chosen features explain
    ridge = 1e-8 * np.trace(g) / len(g)  # features this close to the chosen ones add nothing
    chosen: list[int] = []
    for _ in range(keep):
        q = basis[groups]  # (groups, size, k)
        block = g[groups[:, :, None], groups[:, None, :]] - q @ q.transpose(0, 2, 1)
        block += ridge * np.eye(groups.shape[1])
        r = residual[groups]
        gain = (r * np.linalg.solve(block, r)).sum(axis=(1, 2))
        gain[chosen] = -np.inf
        best = int(gain.argmax())
        chosen.append(best)
        for p in groups[best]:  # Gram-Schmidt, one feature at a time
            d = g[p, p] - basis[p] @ basis[p]
            if d <= ridge:
                continue
            col = (g[:, p] - basis @ basis[p]) / np.sqrt(d)
            residual -= np.outer(col, residual[p] / np.sqrt(d))
            basis = np.column_stack([basis, col])
    return chosen


class _Gathered(nn.Module):
    """A linear layer that reads only the input columns ``index`` (ONNX: one Gather)."""

    def __init__(self, index: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        order = np.argsort(index)
        self.register_buffer("index", torch.as_tensor(index[order], dtype=torch.long))
        self.linear = nn.Linear(len(index), weight.shape[1])
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight[order].T.copy()))
            self.linear.bias.copy_(torch.from_numpy(bias))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x[:, self.index])


def _stem(net: nn.Sequential) -> tuple[nn.Conv2d, nn.Conv2d]:
    first, down = net[0], net[2]
    full = (isinstance(first, nn.Conv2d) and isinstance(net[1], nn.ReLU)
            and isinstance(down, nn.Conv2d) and down.groups == 1 and down.kernel_size == (3, 3))
    if not full:
        raise ValueError("only a full stem (train --stem full) has channels to prune")
    return first, down


def prune_stem(graph: FoldedProbabilities, faces: np.ndarray, keep: int,
               chunk: int = 128) -> dict[str, Any]:
    """Keep ``keep`` of the stem's first convolution's channels; refit the stride-2 one."""
    face = graph.branches[graph.order.index("face")]
    first, down = _stem(face.net)
    if not 0 < keep <= first.out_channels:
        raise ValueError(f"stem channels: 1..{first.out_channels}, not {keep}")
    gram = Gram()
    with torch.no_grad():
        for i in range(0, len(faces), chunk):
            seen = F.relu(first(face.normalised(torch.from_numpy(faces[i:i + chunk]))))
            patches = F.unfold(seen, 3, padding=1, stride=2)  # (n, c * 9, positions)
            gram.add(patches.transpose(1, 2).reshape(-1, patches.shape[1]),
                     down(seen).flatten(2).transpose(1, 2).reshape(-1, down.out_channels))
    g, c, _ = gram.centred()
    groups = np.arange(first.out_channels * 9).reshape(-1, 9)
    kept = sorted(greedy(g, c, groups, keep))
    w, bias, unexplained = gram.refit(groups[kept].ravel())
    new_first = nn.Conv2d(1, keep, 3, padding=1)
    new_down = nn.Conv2d(keep, down.out_channels, 3, stride=2, padding=1)
    with torch.no_grad():
        new_first.weight.copy_(first.weight[kept])
        new_first.bias.copy_(first.bias[kept] if first.bias is not None
                             else torch.zeros(keep))
        new_down.weight.copy_(torch.from_numpy(w.T.reshape(down.out_channels, keep, 3, 3)))
        new_down.bias.copy_(torch.from_numpy(bias))
    face.net[0], face.net[2] = new_first, new_down
    return {"stem_channels": [first.out_channels, keep], "stem_unexplained": unexplained}


def select_landmarks(graph: FoldedProbabilities, landmarks: np.ndarray,
                     keep: int) -> dict[str, Any]:
    """Keep ``keep`` landmark coordinates; refit the branch's first layer to them."""
    branch = graph.branches[graph.order.index("landmarks")]
    first = branch.net[0]
    if not isinstance(first, nn.Linear) or not 0 < keep <= first.in_features:
        raise ValueError(f"landmark coordinates: 1..{getattr(first, 'in_features', '?')}, "
                         f"not {keep}")
    x = torch.from_numpy(landmarks.reshape(len(landmarks), -1))
    gram = Gram()
    with torch.no_grad():
        gram.add(x, first(x))
    g, c, _ = gram.centred()
    kept = np.array(greedy(g, c, np.arange(first.in_features)[:, None], keep))
    w, bias, unexplained = gram.refit(kept)
    branch.net[0] = _Gathered(kept, w.astype(np.float32), bias.astype(np.float32))
    return {"landmark_coordinates": [first.in_features, keep],
            "landmarks_unexplained": unexplained}


def compress(graph: FoldedProbabilities, rows: dict[str, np.ndarray],
             how: Compression) -> dict[str, Any]:
    """Prune ``graph`` (a folded run) in place on training ``rows`` (inputs by name); what
    it did, for the metadata. A model without a face or landmark input skips that cut."""
    n = int(len(next(iter(rows.values()))))
    if n < MIN_ROWS:
        raise ValueError(f"{n} training rows to fit on; at least {MIN_ROWS} needed")
    report: dict[str, Any] = {"rows": n, "seed": how.seed}
    if "face" in graph.order:
        report.update(prune_stem(graph, rows["face"], how.stem_channels))
    if "landmarks" in graph.order:
        report.update(select_landmarks(graph, rows["landmarks"], how.landmark_coordinates))
    return report


def sample_rows(inputs: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded sample of at most ``n`` rows of ``inputs`` (all of them when fewer)."""
    total = len(next(iter(inputs.values())))
    pick = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    return {k: v[pick] for k, v in inputs.items()}


def training_rows(config: dict[str, Any], how: Compression,
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A run's training rows as it saw them (extra datasets repeated as in training), a
    sample of ``how.rows`` of them, and its validation rows (for :func:`decisions_kept`)."""
    from ...errors import InputError
    from .train import config_from_dict, training_splits

    run = replace(config_from_dict(config), labels="fer", ferplus="")  # inputs, not targets
    missing = [d for d in (run.dataset, *run.extra) if not d or not Path(d).exists()]
    if missing:
        raise InputError(f"compressing fits on the run's training data: {missing[0] or '?'} "
                         "is not here (run export where the run's datasets are)")
    splits = training_splits(run)
    return sample_rows(splits["train"].inputs, how.rows, how.seed), splits["val"].inputs


def decisions_kept(before: nn.Module, after: nn.Module, inputs: dict[str, np.ndarray],
                   names: list[str], chunk: int = 512) -> dict[str, float]:
    """How often the compressed graph decides as the trained one on ``inputs`` (the run's
    validation rows): the 3-class argmax, the 7-expression argmax, the largest difference."""
    n = len(inputs[names[0]])
    if not n:
        return {"rows": 0}
    same, diff, views = np.zeros(2), 0.0, 1
    for i in range(0, n, chunk):
        feeds = [torch.from_numpy(inputs[k][i:i + chunk]) for k in names]
        with torch.no_grad():
            a, b = before(*feeds), after(*feeds)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        views = len(a)
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            same[j] += float((x.argmax(1) == y.argmax(1)).sum())
            diff = max(diff, float((x - y).abs().max()))
    out = {"rows": n, "same_class": same[0] / n, "max_abs_diff": diff}
    if views > 1:
        out["same_expression"] = same[1] / n
    return out
