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

import math
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
SKIP_RESIZE = 0.9  # a warp shrinking by 0.45-0.5 needs no resize before it


EYE_CORNERS = [*RIGHT_EYE, *LEFT_EYE]


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


EyeFrame = list[tuple[float, float, float, float, float]]


def eye_frame(landmarks: np.ndarray, width: int, height: int) -> EyeFrame:
    """Per face of ``(n, 478, 3)`` normalised landmarks: the eyes' midpoint ``x, y`` in pixels,
    the eye line's unit direction ``cos, sin`` and the inter-ocular distance (at least 1e-6),
    as floats. Each eye is the mean of its two corners: four points per face.

    (Plain float arithmetic: per face, numpy calls on a few numbers cost more than the sums.)
    """
    frames = []
    for (ax, ay), (bx, by), (cx, cy), (dx, dy) in landmarks[:, EYE_CORNERS, :2].tolist():
        rx, ry = (ax + bx) * width / 2, (ay + by) * height / 2
        lx, ly = (cx + dx) * width / 2, (cy + dy) * height / 2
        ex, ey = lx - rx, ly - ry
        dist = max(math.hypot(ex, ey), 1e-6)
        frames.append(((rx + lx) / 2, (ry + ly) / 2, ex / dist, ey / dist, dist))
    return frames


def _stack(faces: Sequence[Face]) -> np.ndarray:
    """The faces' normalised landmarks as one ``(n, 478, 3)`` array."""
    return np.stack([f.landmarks for f in faces]) if faces else np.zeros((0, N_LANDMARKS, 3),
                                                                         np.float32)


def aligned_batch(landmarks: np.ndarray, width: int, height: int,
                  frame: EyeFrame | None = None) -> np.ndarray:
    """``landmarks`` v1 of ``(n, 478, 3)`` normalised landmarks at once -> ``(n, 478, 3)``
    float32 (``frame``: their :func:`eye_frame`, when already computed).

    Pixel scaling, rotation, centring and scaling are one affine map per face, applied by
    OpenCV's ``transform`` (a sixth of the cost of numpy's batched ``matmul`` on 478 x 3).
    """
    import cv2

    frame = frame if frame is not None else eye_frame(landmarks, width, height)
    out = np.empty((len(frame), N_LANDMARKS, 3), np.float32)
    for i, (mx, my, c, s, dist) in enumerate(frame):
        points = np.ascontiguousarray(landmarks[i], np.float32).reshape(-1, 1, 3)
        zm = cv2.mean(points)[2]  # z's mean, summed in float64
        w, h = width / dist, height / dist
        affine = np.array([[c * w, s * h, 0.0, -(c * mx + s * my) / dist],
                           [-s * w, c * h, 0.0, (s * mx - c * my) / dist],
                           [0.0, 0.0, w, -w * zm]])
        out[i] = cv2.transform(points, affine).reshape(N_LANDMARKS, 3)
    return out


def aligned_landmarks(face: Face, width: int, height: int) -> np.ndarray:
    """``landmarks`` v1: eye line level, eyes' midpoint at 0, inter-ocular distance 1."""
    return aligned_batch(face.landmarks[None], width, height)[0]


def transforms(landmarks: np.ndarray, width: int, height: int, size: int,
               frame: EyeFrame | None = None) -> np.ndarray:
    """``(n, 2, 3)`` similarities mapping frame pixels to each face's aligned crop."""
    rows = []
    for mx, my, c, s, dist in frame if frame is not None else eye_frame(landmarks, width,
                                                                          height):
        a, b = c * IOD * size / dist, s * IOD * size / dist
        rows.append([[a, b, 0.5 * size - (a * mx + b * my)],
                     [-b, a, EYE_Y * size - (a * my - b * mx)]])
    return np.array(rows, np.float64).reshape(-1, 2, 3)


def face_transform(face: Face, width: int, height: int, size: int) -> np.ndarray:
    """The 2x3 similarity that maps frame pixels to the aligned ``size`` x ``size`` crop."""
    return transforms(face.landmarks[None], width, height, size)[0]


def face_crop(image: np.ndarray, face: Face, size: int = DEFAULT_FACE_SIZE) -> np.ndarray:
    """``face`` v1: the aligned greyscale crop, ``(size, size)`` uint8.

    Only the face's region is converted; a face much larger than the crop is first shrunk
    by halving (2x2 area averages), so a 300 px face and a 48 px FER2013 crop look alike.
    """
    image = _check_image(image, "face_crop")
    height, width = image.shape[:2]
    return crop(image, transforms(face.landmarks[None], width, height, size)[0], size)


def _span(lo: int, hi: int, limit: int, k: int) -> tuple[int, int]:
    """``[lo, hi)`` inside ``[0, limit)`` grown (or, against both edges, cut) to a multiple
    of ``k`` pixels, so halving it ``log2(k)`` times averages whole 2x2 blocks."""
    need = -(hi - lo) % k
    grow = min(need, limit - hi)
    hi += grow
    lo -= min(need - grow, lo)
    return lo, hi - (hi - lo) % k


def crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` grey crop of a checked frame under the 2x3 similarity ``m``.

    (Plain float arithmetic on the six numbers: per face, numpy calls on 2x3 arrays cost
    more than the pixels.)
    """
    import cv2

    height, width = image.shape[:2]
    (a, b, tx), (c, d, ty) = m.tolist()
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    xs = [ia * (x - tx) + ib * (y - ty) for x, y in ((0, 0), (size, 0), (0, size), (size, size))]
    ys = [ic * (x - tx) + id_ * (y - ty) for x, y in ((0, 0), (size, 0), (0, size), (size, size))]
    x0, y0 = max(math.floor(min(xs)) - 2, 0), max(math.floor(min(ys)) - 2, 0)
    x1, y1 = min(math.ceil(max(xs)) + 2, width), min(math.ceil(max(ys)) + 2, height)
    if x1 <= x0 or y1 <= y0:  # the face lies outside the frame: nothing to see
        return np.zeros((size, size), np.uint8)
    scale = math.hypot(a, b)
    halvings = 0
    while scale * 2 ** (halvings + 1) <= 0.5 and min(x1 - x0, y1 - y0) >= 2 ** (halvings + 3):
        halvings += 1  # shrink first so the warp does not alias
    k = 2 ** halvings
    x0, x1 = _span(x0, x1, width, k)
    y0, y1 = _span(y0, y1, height, k)
    roi = image[y0:y1, x0:x1]
    if roi.ndim == 3:  # grey before the shrink: a third of the averaging's work
        code = cv2.COLOR_BGRA2GRAY if roi.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        roi = cv2.cvtColor(roi, code)
    shift = [x0, y0]  # where the region's pixel (0, 0) lies in the frame
    if scale < 0.5:  # v1's area shrink ignored pixel centres, reading a shrunk face
        # (1 / f - 1) / 2 source pixels right of and below (f = 2 scale): kept, the
        # shipped models learnt that framing
        shift = [v - (0.5 / (2 * scale) - 0.5) for v in shift]
    for _ in range(halvings):  # exact 2x2 averages: OpenCV's fast path, unlike other ratios
        roi = cv2.resize(roi, (roi.shape[1] // 2, roi.shape[0] // 2),
                         interpolation=cv2.INTER_AREA)
    shift = [v + (k - 1) / 2 for v in shift]  # pixel centres: frame u = k v + (k - 1) / 2
    fx = fy = float(k)  # frame pixels per region pixel
    f = 2 * scale * k
    if f < SKIP_RESIZE:  # the rest of the way to half the crop's scale, f in (0.5, 0.9)
        w, h = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        rx, ry = w / roi.shape[1], h / roi.shape[0]
        shift = [shift[0] + k * (0.5 / rx - 0.5), shift[1] + k * (0.5 / ry - 0.5)]
        fx, fy = k / rx, k / ry
        roi = cv2.resize(roi, (w, h), interpolation=cv2.INTER_LINEAR)
    local = np.array([[a * fx, b * fy, tx + a * shift[0] + b * shift[1]],
                      [c * fx, d * fy, ty + c * shift[0] + d * shift[1]]])
    return cv2.warpAffine(np.ascontiguousarray(roi), local, (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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
    landmarks = _stack(faces) if needs_image else None  # one array for all faces
    frame = eye_frame(landmarks, width, height) if needs_image else None
    batch: dict[str, np.ndarray] = {}
    for spec in specs:
        kind = spec["kind"]
        if kind == "blendshapes":
            arr = (np.stack([f.scores for f in faces]).astype(np.float32) if n
                   else np.zeros((0, len(BLENDSHAPE_NAMES)), np.float32))
        elif kind == "landmarks":
            arr = aligned_batch(landmarks, width, height, frame)
        else:
            size = int(spec.get("size", DEFAULT_FACE_SIZE))
            arr = np.zeros((n, size, size), np.uint8)
            for i, m in enumerate(transforms(landmarks, width, height, size, frame)):
                arr[i] = crop(image, m, size)
        batch[spec["name"]] = arr
    return batch
