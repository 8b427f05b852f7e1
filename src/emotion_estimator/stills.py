"""A still image in which MediaPipe finds no face is looked at again before it counts as empty.

MediaPipe's face detector misses faces that fill the whole picture (tight crops such as
FER2013's, passport-style photos) and faint or partly covered faces. A video moves on to the
next frame; a still has no next frame. :class:`StillLandmarker` (image mode) tries, in order,
until one finds a face (:data:`RETRIES`):

1. the image with a replicated border of a quarter of its long side on every side (the face
   no longer touches the edges);
2. the image itself with detection and presence confidence :data:`RETRY_CONFIDENCE`;
3. both together.

Faces found on a bordered image are mapped back to the image as given (landmarks, box). Only
images with no face pay for the retries (at most three more landmarker calls); the
lower-confidence landmarker is made on the first image that needs it. The threshold was chosen
on FER2013's PublicTest and on the no-face frames of the shared media: 0.2 found more faces
but also one face on a frame without one; 0.3 found none there.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .blendshapes import Face, FaceLandmarker, _box

BORDER = 0.25  # of the image's long side, on every side
RETRY_CONFIDENCE = 0.3
RETRIES: tuple[tuple[bool, bool], ...] = ((True, False), (False, True), (True, True))
"""(bordered, lower confidence) of each retry, in order."""


def bordered(image: np.ndarray, fraction: float = BORDER) -> tuple[np.ndarray, int]:
    """``image`` with a replicated border of ``fraction`` of its long side; the border in px."""
    import cv2

    b = max(1, round(fraction * max(image.shape[:2])))
    return cv2.copyMakeBorder(image, b, b, b, b, cv2.BORDER_REPLICATE), b


def unborder(face: Face, border: int, width: int, height: int) -> Face:
    """A face found on a bordered image, in the coordinates of the image without the border
    (normalised landmarks; z scales with x, as MediaPipe defines it)."""
    outer_w, outer_h = width + 2 * border, height + 2 * border
    p = face.landmarks.copy()
    p[:, 0] = (p[:, 0] * outer_w - border) / width
    p[:, 1] = (p[:, 1] * outer_h - border) / height
    p[:, 2] *= outer_w / width
    return Face(scores=face.scores, box=_box(p, width, height), landmarks=p)


class StillLandmarker(FaceLandmarker):
    """An image-mode :class:`FaceLandmarker` that retries a still with no face (module doc)."""

    def __init__(self, model_path: str | os.PathLike | None = None, **options: Any) -> None:
        options["mode"] = "image"
        super().__init__(model_path, **options)
        self._model_path = model_path
        self._options = options
        self._low: FaceLandmarker | None = None
        self.retried = 0  # images that needed a retry to find a face

    def _lower(self) -> FaceLandmarker:
        if self._low is None:
            self._low = FaceLandmarker(self._model_path, **{
                **self._options, "min_detection_confidence": RETRY_CONFIDENCE,
                "min_presence_confidence": RETRY_CONFIDENCE})
        return self._low

    def detect(self, image: np.ndarray, timestamp_s: float | None = None, *,
               bgr: bool = True) -> list[Face]:
        faces = super().detect(image, timestamp_s, bgr=bgr)
        if faces:
            return faces
        height, width = image.shape[:2]
        confidence = self._options.get("min_detection_confidence", 0.5)
        big: tuple[np.ndarray, int] | None = None  # the bordered image, made once
        for border, lower in RETRIES:
            if lower and confidence <= RETRY_CONFIDENCE:
                continue
            landmarker: FaceLandmarker = self._lower() if lower else self
            if not border:  # FaceLandmarker's own detect: one pass, no retries
                faces = FaceLandmarker.detect(landmarker, image, bgr=bgr)
            else:
                big = big or bordered(image)
                faces = [unborder(f, big[1], width, height)
                         for f in FaceLandmarker.detect(landmarker, big[0], bgr=bgr)]
            if faces:
                self.left_out = landmarker.left_out
                self.retried += 1
                return faces
        return []

    def close(self) -> None:
        if self._low is not None:
            self._low.close()
            self._low = None
        super().close()
