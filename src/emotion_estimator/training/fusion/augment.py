"""Batched, seeded training augmentation for the fusion model's inputs (torch, any device).

A horizontal flip is applied to all inputs of a sample together (crop mirrored, landmarks
mirrored and re-indexed, left/right blendshapes swapped). The crop also gets a small random
similarity (rotation, scale, shift), brightness/contrast/gamma, blur or a downscale (so a
model trained on 48 px FER2013 crops holds on sharp 300 px faces and on blurry webcam ones),
noise and a cut-out; the landmarks a small rotation, scale and jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...blendshapes import BLENDSHAPE_NAMES


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths; ``0`` switches a part off."""

    flip: float = 0.5
    rotate_deg: float = 12.0
    scale: float = 0.10
    shift: float = 0.06  # of the crop side
    brightness: float = 25.0
    contrast: float = 0.3
    gamma: float = 0.3
    blur: float = 0.15  # probability
    downscale: float = 0.25  # probability of a 16..40 px round trip
    noise: float = 0.3  # probability of Gaussian noise (sigma up to 6 grey levels)
    cutout: float = 0.2  # probability of one square hidden
    landmark_jitter: float = 0.005
    landmark_rotate_deg: float = 4.0

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(*([0.0] * 13))


def blendshape_mirror() -> np.ndarray:
    """Index map swapping each ...Left blendshape with its ...Right twin."""
    names = list(BLENDSHAPE_NAMES)
    swap = {n: n.replace("Left", "#").replace("Right", "Left").replace("#", "Right")
            for n in names}
    return np.array([names.index(swap[n]) for n in names])


def landmark_mirror(mean_shape: np.ndarray) -> np.ndarray:
    """Index map of each landmark to its mirror twin, from the mean aligned shape."""
    mirrored = mean_shape * np.array([-1.0, 1.0, 1.0])
    d = ((mirrored[:, None, :2] - mean_shape[None, :, :2]) ** 2).sum(-1)
    return d.argmin(axis=1)


def _u(n: int, gen: torch.Generator, lo: float, hi: float, device) -> Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def _p(n: int, gen: torch.Generator, p: float, device) -> Tensor:
    return (torch.rand(n, generator=gen) < p).to(device)


def augment(batch: dict[str, Tensor], cfg: AugmentConfig, gen: torch.Generator,
            landmark_perm: Tensor | None, blend_perm: Tensor) -> dict[str, Tensor]:
    """A new batch dict; ``face`` comes back as float in 0..255."""
    out = dict(batch)
    n = next(iter(batch.values())).shape[0]
    dev = next(iter(batch.values())).device
    flip = _p(n, gen, cfg.flip, dev)
    if "face" in out:
        face = out["face"].float()
        face = torch.where(flip[:, None, None], face.flip(-1), face)
        out["face"] = _augment_face(face, cfg, gen)
    if "landmarks" in out:
        lm = out["landmarks"].float()
        if landmark_perm is not None:
            mirrored = lm[:, landmark_perm] * torch.tensor([-1.0, 1.0, 1.0], device=dev)
            lm = torch.where(flip[:, None, None], mirrored, lm)
        out["landmarks"] = _augment_landmarks(lm, cfg, gen)
    if "blendshapes" in out:
        b = out["blendshapes"].float()
        out["blendshapes"] = torch.where(flip[:, None], b[:, blend_perm], b)
    return out


def _augment_face(x: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    n, s, _ = x.shape
    dev = x.device
    x = x.unsqueeze(1)
    if cfg.rotate_deg or cfg.scale or cfg.shift:
        a = _u(n, gen, -cfg.rotate_deg, cfg.rotate_deg, dev) * math.pi / 180
        k = 1 + _u(n, gen, -cfg.scale, cfg.scale, dev)
        tx, ty = (_u(n, gen, -cfg.shift, cfg.shift, dev) * 2 for _ in range(2))
        theta = torch.stack([torch.stack([torch.cos(a) / k, -torch.sin(a) / k, tx], 1),
                             torch.stack([torch.sin(a) / k, torch.cos(a) / k, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.downscale:
        small = int(torch.randint(16, 41, (1,), generator=gen))
        down = F.interpolate(F.interpolate(x, size=(small, small), mode="area"), size=(s, s),
                             mode="bilinear", align_corners=False)
        x = torch.where(_p(n, gen, cfg.downscale, dev)[:, None, None, None], down, x)
    if cfg.blur:
        blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x = torch.where(_p(n, gen, cfg.blur, dev)[:, None, None, None], blurred, x)
    if cfg.gamma:
        g = torch.exp(_u(n, gen, -cfg.gamma, cfg.gamma, dev))[:, None, None, None]
        x = 255.0 * (x.clamp(0, 255) / 255.0) ** g
    if cfg.contrast or cfg.brightness:
        c = 1 + _u(n, gen, -cfg.contrast, cfg.contrast, dev)[:, None, None, None]
        b = _u(n, gen, -cfg.brightness, cfg.brightness, dev)[:, None, None, None]
        x = (x - 128.0) * c + 128.0 + b
    if cfg.noise:
        sigma = _u(n, gen, 0, 6, dev) * _p(n, gen, cfg.noise, dev)
        x = x + torch.randn(x.shape, generator=gen).to(dev) * sigma[:, None, None, None]
    if cfg.cutout:
        side = s // 4
        cx, cy = (torch.randint(0, s - side + 1, (n,), generator=gen).to(dev) for _ in range(2))
        r = torch.arange(s, device=dev)
        inside = (((r[None, :] >= cx[:, None]) & (r[None, :] < cx[:, None] + side))[:, None, :]
                  & ((r[None, :] >= cy[:, None]) & (r[None, :] < cy[:, None] + side))[:, :, None])
        hide = inside & _p(n, gen, cfg.cutout, dev)[:, None, None]
        x = torch.where(hide[:, None], x.mean(dim=(2, 3), keepdim=True), x)
    return x.clamp(0, 255).squeeze(1)


def _augment_landmarks(lm: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    n, dev = lm.shape[0], lm.device
    if cfg.landmark_rotate_deg:
        a = _u(n, gen, -cfg.landmark_rotate_deg, cfg.landmark_rotate_deg, dev) * math.pi / 180
        c, s = torch.cos(a)[:, None], torch.sin(a)[:, None]
        x, y = lm[..., 0], lm[..., 1]
        lm = torch.stack([c * x - s * y, s * x + c * y, lm[..., 2]], dim=-1)
    if cfg.landmark_jitter:
        lm = lm + torch.randn(lm.shape, generator=gen).to(dev) * cfg.landmark_jitter
    return lm
