"""Image preprocessing variants for the detector and the paper's seeded augmentation (§3.2.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PREPROCESS_NAMES: tuple[str, ...] = ("raw", "upscale", "pad")


@dataclass(frozen=True)
class Preprocess:
    """How a 48x48 crop is shown to MediaPipe.

    ``raw``: as is. ``upscale``: resized to ``size``. ``pad``: ``pad`` pixels of border
    replication on each side, then resized to ``size`` (a tight crop gets some context back).
    """

    name: str
    pad: int = 12
    size: int = 144

    def __post_init__(self) -> None:
        if self.name not in PREPROCESS_NAMES:
            raise ValueError(f"unknown preprocessing {self.name!r} "
                             f"(choose from {', '.join(PREPROCESS_NAMES)})")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        if self.name == "raw":
            return image
        if self.name == "pad":
            p = self.pad
            image = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE)
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_CUBIC)

    def describe(self) -> dict:
        if self.name == "raw":
            return {"name": "raw"}
        if self.name == "upscale":
            return {"name": "upscale", "size": self.size}
        return {"name": "pad", "pad": self.pad, "size": self.size, "border": "replicate"}


def aug_params(seed: int, image_id: int, copy: int, max_angle: float) -> dict:
    """The random transform of augmented copy ``copy`` (>= 1) of an image.

    Seeded by (seed, image_id, copy) only, so a copy is the same whatever the worker count,
    chunking or restart: horizontal flip with p=0.5, rotation uniform in [-max_angle, max_angle]
    degrees (paper: ±0.2·180° = ±36°; positive = counter-clockwise).
    """
    rng = np.random.default_rng([seed, image_id, copy])
    flip = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-max_angle, max_angle))
    return {"copy": copy, "flip": flip, "angle": round(angle, 2)}


def apply_aug(image: np.ndarray, params: dict) -> np.ndarray:
    """Flip then rotate about the centre; corners are filled by border replication."""
    import cv2

    if params.get("flip"):
        image = image[:, ::-1]
    angle = params.get("angle", 0.0)
    if angle:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image)
