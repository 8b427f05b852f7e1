"""Model inputs built from one MediaPipe face and the frame it was found in.

Every front end (stills, video, camera, server, batch) and the training data go through this
module, so a model sees the same numbers in training and at run time. A model's metadata names
the inputs it takes, each with a version (``FEATURES``):

- ``blendshapes`` v1: the 52 scores, MediaPipe order, ``(52,)`` float32.
- ``landmarks`` v1: the 478 landmarks in pixel units, rotated so the eye line is level,
  centred on the eyes' midpoint and scaled so the inter-ocular distance is 1; z is centred on
  its mean and scaled alike. ``(478, 3)`` float32.
- ``face`` v1: a greyscale crop aligned by the same eye line: the eyes' midpoint at
  ``(0.5, EYE_Y)`` of the crop and the inter-ocular distance ``IOD`` of its width (FER2013's
  framing, measured on its images), ``(size, size)`` uint8; ``size`` from the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .blendshapes import BLENDSHAPE_NAMES, Face
from .errors import InputError

FEATURES: dict[str, int] = {"blendshapes": 1, "landmarks": 1, "face": 1}
N_LANDMARKS = 478
RIGHT_EYE = (33, 133)  # the subject's right eye corners (image left)
LEFT_EYE = (362, 263)
EYE_Y = 0.40
IOD = 0.36
DEFAULT_FACE_SIZE = 48


def _eyes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the right and left eye (mean of each eye's corners), ``(2,)`` each."""
    return points[list(RIGHT_EYE), :2].mean(axis=0), points[list(LEFT_EYE), :2].mean(axis=0)


def _check_image(image: Any, what: str) -> np.ndarray:
    """``image`` as a frame the crop can be cut from: H x W, H x W x 1, 3 or 4, uint8, not
    empty; (H, W, 1) comes back as (H, W). Anything else is an :class:`InputError`."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected an image (numpy array), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{what}: expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"{what}: expected an H x W grey, H x W x 3 BGR or H x W x 4 BGRA "
                         f"image, got shape {image.shape}")
    if image.size == 0:
        raise InputError(f"{what}: the image is empty, shape {image.shape}")
    return image


def _pixels(face: Face, width: int, height: int) -> np.ndarray:
    """Normalised landmarks -> pixel units (z scaled like x, as MediaPipe defines it)."""
    return face.landmarks.astype(np.float32) * np.array([width, height, width], np.float32)


def aligned_landmarks(face: Face, width: int, height: int) -> np.ndarray:
    """``landmarks`` v1: eye line level, eyes' midpoint at 0, inter-ocular distance 1."""
    p = _pixels(face, width, height)
    right, left = _eyes(p)
    d = left - right
    dist = max(float(np.hypot(*d)), 1e-6)
    c, s = d / dist
    xy = p[:, :2] - (right + left) / 2
    rotated = np.stack([c * xy[:, 0] + s * xy[:, 1], -s * xy[:, 0] + c * xy[:, 1]], axis=1)
    z = p[:, 2:] - p[:, 2:].mean()
    return (np.concatenate([rotated, z], axis=1) / dist).astype(np.float32)


def face_transform(face: Face, width: int, height: int, size: int) -> np.ndarray:
    """The 2x3 similarity that maps frame pixels to the aligned ``size`` x ``size`` crop."""
    right, left = _eyes(_pixels(face, width, height))
    d = left - right
    dist = max(float(np.hypot(*d)), 1e-6)
    scale = IOD * size / dist
    c, s = d / dist * scale
    mid = (right + left) / 2
    rot = np.array([[c, s], [-s, c]], dtype=np.float64)
    shift = np.array([0.5 * size, EYE_Y * size]) - rot @ mid
    return np.hstack([rot, shift[:, None]])


def face_crop(image: np.ndarray, face: Face, size: int = DEFAULT_FACE_SIZE) -> np.ndarray:
    """``face`` v1: the aligned greyscale crop, ``(size, size)`` uint8.

    Only the face's region is converted; a face much larger than the crop is first shrunk
    with area averaging, so a 300 px face and a 48 px FER2013 crop look alike.
    """
    import cv2

    image = _check_image(image, "face_crop")
    height, width = image.shape[:2]
    m = face_transform(face, width, height, size)
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    src = corners @ inv.T
    x0, y0 = np.floor(src.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(src.max(axis=0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:  # the face lies outside the frame: nothing to see
        return np.zeros((size, size), np.uint8)
    roi = image[y0:y1, x0:x1]
    if roi.ndim == 3:  # grey before the shrink: a third of the area averaging's work
        code = cv2.COLOR_BGRA2GRAY if roi.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        roi = cv2.cvtColor(roi, code)
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    if scale < 0.5:  # shrink first so the warp does not alias
        f = min(2 * scale, 1.0)
        w, h = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        fx, fy = w / roi.shape[1], h / roi.shape[0]
        roi = cv2.resize(roi, (w, h), interpolation=cv2.INTER_AREA)
        m[:, 0] /= fx
        m[:, 1] /= fy
    return cv2.warpAffine(np.ascontiguousarray(roi), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def validate_inputs(specs: Any, where: str) -> list[dict[str, Any]]:
    """A model's ``inputs`` metadata, checked: known kinds and versions, sizes in range."""
    if not isinstance(specs, list) or not specs:
        raise InputError(f"{where}: 'inputs' must be a non-empty list")
    checked = []
    for spec in specs:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise InputError(f"{where}: each input needs a 'name'")
        kind, version = spec.get("kind"), spec.get("version")
        if kind not in FEATURES:
            raise InputError(f"{where}: unknown input kind {kind!r} "
                             f"(this version knows {', '.join(FEATURES)})")
        if type(version) is not int or version != FEATURES[kind]:
            raise InputError(f"{where}: input {kind!r} version {version!r} is not supported "
                             f"(this version builds v{FEATURES[kind]})")
        size = spec.get("size", DEFAULT_FACE_SIZE)
        if kind == "face" and (not isinstance(size, int) or not 16 <= size <= 256):
            raise InputError(f"{where}: face input size must be an integer in 16..256")
        checked.append(dict(spec))
    return checked


def build(specs: Sequence[Mapping[str, Any]], faces: Sequence[Face],
          image: np.ndarray | None) -> dict[str, np.ndarray]:
    """One batch of model inputs, ``{input name: array}``, for ``faces`` found in ``image``.

    ``image`` is the frame MediaPipe saw (BGR, BGRA or grey uint8); only models with a
    ``landmarks`` or ``face`` input need it.
    """
    n = len(faces)
    needs_image = any(s["kind"] != "blendshapes" for s in specs)
    if needs_image:
        if image is None:
            raise InputError("this model's inputs are built from the frame: pass the uint8 "
                             "image the faces were found in")
        image = _check_image(image, "the frame for this model's inputs")
    height, width = image.shape[:2] if needs_image else (0, 0)
    batch: dict[str, np.ndarray] = {}
    for spec in specs:
        kind = spec["kind"]
        if kind == "blendshapes":
            arr = (np.stack([f.scores for f in faces]).astype(np.float32) if n
                   else np.zeros((0, len(BLENDSHAPE_NAMES)), np.float32))
        elif kind == "landmarks":
            arr = (np.stack([aligned_landmarks(f, width, height) for f in faces]) if n
                   else np.zeros((0, N_LANDMARKS, 3), np.float32))
        else:
            size = int(spec.get("size", DEFAULT_FACE_SIZE))
            arr = (np.stack([face_crop(image, f, size) for f in faces]) if n
                   else np.zeros((0, size, size), np.uint8))
        batch[spec["name"]] = arr
    return batch
