"""Training losses over logits: categorical cross-entropy, MSE on probabilities, focal (§4.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LOSSES = ("cce", "mse", "focal")
Loss = Callable[[Tensor, Tensor], Tensor]


def cce(logits: Tensor, y: Tensor, weight: Tensor | None = None, smoothing: float = 0.0) -> Tensor:
    """Categorical cross-entropy, optionally class-weighted (weighted mean) and label-smoothed."""
    return F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)


def mse(logits: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error between softmax probabilities and one-hot targets (per-sample sum)."""
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    per_sample = (F.softmax(logits, dim=-1) - onehot).pow(2).mean(dim=-1)
    return _weighted_mean(per_sample, y, weight)


def focal(logits: Tensor, y: Tensor, weight: Tensor | None = None, gamma: float = 2.0) -> Tensor:
    """Categorical focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` (alpha = class weights)."""
    logp = F.log_softmax(logits, dim=-1).gather(1, y[:, None]).squeeze(1)
    per_sample = -((1 - logp.exp()).pow(gamma)) * logp
    return _weighted_mean(per_sample, y, weight)


def _weighted_mean(per_sample: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return per_sample.mean()
    w = weight[y]
    return (per_sample * w).sum() / w.sum()


def make_loss(
    name: str, weight: Tensor | None = None, *, smoothing: float = 0.0, gamma: float = 2.0
) -> Loss:
    """``loss(logits, y)`` by name; ``weight`` are per-class weights or None."""
    if name == "cce":
        return lambda logits, y: cce(logits, y, weight, smoothing)
    if name == "mse":
        return lambda logits, y: mse(logits, y, weight)
    if name == "focal":
        return lambda logits, y: focal(logits, y, weight, gamma)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
