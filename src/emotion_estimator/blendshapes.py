"""The 52 MediaPipe blendshapes and a FaceLandmarker wrapper for stills and video."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import operator
import os
import re
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .mpresult import fast_detect

BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
assert len(BLENDSHAPE_NAMES) == 52

Mode = Literal["image", "video"]
STILL_EXTRA_FACES = 2  # image mode: detections asked of MediaPipe beyond max_faces
_XYZ = operator.attrgetter("x", "y", "z")
_SCORE = operator.attrgetter("score")


@dataclass(frozen=True)
class Face:
    """One detected face: 52 scores in MediaPipe order, a pixel box and 478 landmarks."""

    scores: np.ndarray  # (52,) float32
    box: tuple[float, float, float, float]  # x, y, w, h in pixels
    landmarks: np.ndarray  # (478, 3) normalised x, y, z


def _box(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0 = landmarks[:, 0].min() * width, landmarks[:, 1].min() * height
    x1, y1 = landmarks[:, 0].max() * width, landmarks[:, 1].max() * height
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


_OPEN: weakref.WeakSet[FaceLandmarker] = weakref.WeakSet()
# what MediaPipe's glog and TFLite write to file descriptor 2 while a graph starts
NATIVE_LOG = re.compile(r"(?:[IWEF]\d{4} |WARNING: Logging before InitGoogle|"
                        r"WARNING: All log messages before absl|INFO: Created TensorFlow Lite)")
_FD2 = threading.Lock()


@contextlib.contextmanager
def quiet_native(verbose: bool = False) -> Iterator[None]:
    """Keep MediaPipe's start-up log lines (glog, TFLite) off stderr, unless ``verbose``.

    Native code writes straight to file descriptor 2, so it is pointed at a temp file for the
    block; afterwards the lines that are not native log lines are written back, and on an
    error everything is, so nothing that explains a failure is lost.
    """
    if verbose:
        yield
        return
    with _FD2, tempfile.TemporaryFile() as held:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or not NATIVE_LOG.match(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


@atexit.register
def _close_open_landmarkers() -> None:
    """Close landmarkers left open, while the interpreter can still run MediaPipe's teardown
    (left to garbage collection at exit, MediaPipe prints a traceback)."""
    for landmarker in list(_OPEN):
        landmarker.close()


def largest_faces(faces: list[Face], max_faces: int) -> list[Face]:
    """The ``max_faces`` largest faces, left to right."""
    faces = sorted(faces, key=lambda f: -f.box[2] * f.box[3])[:max_faces]
    return sorted(faces, key=lambda f: f.box[0])


class FaceLandmarker:
    """MediaPipe Face Landmarker returning :class:`Face` objects.

    ``mode="image"`` treats every call independently; ``mode="video"`` tracks faces across
    calls, which need increasing timestamps. Use as a context manager or call :meth:`close`.

    In image mode MediaPipe keeps its top ``num_faces`` detections before the landmark model
    rejects weak ones, so asking for exactly one face can return none on a group photo: it is
    asked for ``max_faces + extra_candidates`` (default ``STILL_EXTRA_FACES`` in image mode,
    0 in video mode) and the largest ``max_faces`` are returned, left to right.

    MediaPipe's native start-up log lines are kept off stderr unless ``verbose``.

    ``max_side``: frames larger than this many pixels on their long side are shrunk before
    MediaPipe sees them (less landmarker work; faces under ~40 px of the shrunk frame are
    missed sooner); boxes and the normalised landmarks still refer to the frame as given.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        mode: Mode = "image",
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        extra_candidates: int | None = None,
        verbose: bool = False,
        max_side: int | None = None,
    ) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        from .assets import landmarker_path

        if mode not in ("image", "video"):
            raise ValueError(f"mode must be 'image' or 'video', not {mode!r}")
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        if extra_candidates is None:
            extra_candidates = STILL_EXTRA_FACES if mode == "image" else 0
        self.mode = mode
        self.max_faces = max_faces
        self.max_side = max_side
        running = vision.RunningMode.IMAGE if mode == "image" else vision.RunningMode.VIDEO
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(landmarker_path(model_path))),
            running_mode=running,
            num_faces=max_faces + extra_candidates,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_presence_confidence,
            min_tracking_confidence=min_tracking_confidence,
            output_face_blendshapes=True,
        )
        with quiet_native(verbose):
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._fast = fast_detect(self._landmarker)  # None: MediaPipe's public result objects
        self._last_ms = -1
        self.left_out = 0  # image mode: faces the last call found beyond max_faces
        _OPEN.add(self)

    def detect(self, image: np.ndarray, timestamp_s: float | None = None, *,
               bgr: bool = True) -> list[Face]:
        """Faces in one frame (H x W x 3 uint8, BGR unless ``bgr=False``; greyscale allowed).

        In video mode ``timestamp_s`` is required; it is made strictly increasing in ms.
        """
        import mediapipe as mp

        height, width = image.shape[:2]
        if self.max_side and max(height, width) > self.max_side:
            image = shrink(image, self.max_side)
        rgb = _to_rgb(image, bgr)
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        ms = None
        if self.mode == "video":
            if timestamp_s is None:
                raise ValueError("video mode needs a timestamp")
            ms = max(int(round(timestamp_s * 1000)), self._last_ms + 1)
            self._last_ms = ms
        if self._fast is not None:  # the C result read directly (mpresult.py)
            found = self._fast(mp_image, ms)
        else:
            result = (self._landmarker.detect(mp_image) if ms is None
                      else self._landmarker.detect_for_video(mp_image, ms))
            found = [(np.fromiter(map(_SCORE, shapes), dtype=np.float32, count=len(shapes)),
                      np.fromiter(itertools.chain.from_iterable(map(_XYZ, marks)), np.float32,
                                  3 * len(marks)).reshape(-1, 3))
                     for shapes, marks in zip(result.face_blendshapes, result.face_landmarks,
                                              strict=True)]
        faces = [Face(scores=scores, box=_box(pts, width, height), landmarks=pts)
                 for scores, pts in found]
        if self.mode == "image":
            self.left_out = max(len(faces) - self.max_faces, 0)  # found beyond max_faces
            return largest_faces(faces, self.max_faces)
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        _OPEN.discard(self)

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down to ``max_side`` pixels on its long side (2x2 averages for an exact
    half, else linear: a 1080p frame costs ~0.6 ms, not the ~4 ms of a generic area resize)."""
    import cv2

    height, width = image.shape[:2]
    f = max_side / max(height, width)
    size = (max(1, round(width * f)), max(1, round(height * f)))
    half = size == (width // 2, height // 2) and width % 2 == 0 and height % 2 == 0
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if half else cv2.INTER_LINEAR)


def _to_rgb(image: np.ndarray, bgr: bool) -> np.ndarray:
    import cv2

    from .errors import InputError

    if not isinstance(image, np.ndarray):
        raise InputError(f"expected an image (numpy array), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {image.dtype}")
    if image.size == 0:
        raise InputError(f"the image is empty, shape {image.shape}")
    if image.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    if image.ndim == 3 and image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB
        return np.ascontiguousarray(cv2.cvtColor(image, code))
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 image, got shape {image.shape}")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image)
