"""MediaPipe Face Landmarker results read straight from its C structs: no object per point.

MediaPipe's Tasks API (the ctypes builds, 0.10.2x and later) calls its C library and then
builds a Python ``NormalizedLandmark`` per landmark (478 per face) and a ``Category`` per
blendshape: about 1.1 ms of CPU per face, more than the whole classifier step.
:func:`fast_detect` makes the same C call on the same landmarker and reads x, y, z and the
scores through numpy views of the C arrays, copied before MediaPipe frees them. It is used
only where the installed MediaPipe has exactly the layout read here (names, C types and
offsets, checked once); anywhere else it returns None and the caller takes the public path,
whose numbers these are bit for bit (tests/test_mpresult.py).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

Detect = Callable[[Any, "int | None"], list[tuple[np.ndarray, np.ndarray]]]


@lru_cache(maxsize=1)
def _layout() -> tuple[Any, np.dtype, np.dtype] | None:
    """MediaPipe's result struct and numpy views of its landmark and category arrays, or
    None where the installed MediaPipe is laid out otherwise."""
    try:
        from mediapipe.tasks.python.vision import face_landmarker as fl

        result = fl.MpFaceLandmarkerResultC
        fields = dict(result._fields_)
        marks, cats = fields["face_landmarks"]._type_, fields["face_blendshapes"]._type_
        point = dict(marks._fields_)["landmarks"]._type_
        category = dict(cats._fields_)["categories"]._type_
        if dict(marks._fields_)["landmarks_count"] is not ctypes.c_uint or \
                dict(cats._fields_)["categories_count"] is not ctypes.c_uint or \
                any(dict(point._fields_)[k] is not ctypes.c_float for k in "xyz") or \
                dict(category._fields_)["score"] is not ctypes.c_float:
            return None
        xyz = np.dtype({"names": list("xyz"), "formats": ["<f4"] * 3,
                        "offsets": [getattr(point, k).offset for k in "xyz"],
                        "itemsize": ctypes.sizeof(point)})
        score = np.dtype({"names": ["score"], "formats": ["<f4"],
                          "offsets": [category.score.offset],
                          "itemsize": ctypes.sizeof(category)})
    except (ImportError, AttributeError, KeyError, TypeError):
        return None
    return result, xyz, score


def _array(pointer: Any, count: int, dtype: np.dtype) -> np.ndarray:
    """``count`` C structs at ``pointer`` as a numpy view (valid until the result is closed)."""
    if count == 0:
        return np.zeros(0, dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(
        ctypes.addressof(pointer.contents))
    return np.frombuffer(raw, dtype, count)


def fast_detect(landmarker: Any) -> Detect | None:
    """``detect(image, timestamp_ms)`` for a MediaPipe ``FaceLandmarker`` (``timestamp_ms``
    None: image mode) returning ``[(scores (52,), points (478, 3))]`` float32 per face, in
    MediaPipe's order; None where this MediaPipe cannot be read this way."""
    layout = _layout()
    lib, handle = getattr(landmarker, "_lib", None), getattr(landmarker, "_handle", None)
    names = ("MpFaceLandmarkerDetectImage", "MpFaceLandmarkerDetectForVideo",
             "MpFaceLandmarkerCloseResult")
    if layout is None or lib is None or handle is None or \
            not all(hasattr(lib, n) for n in names):
        return None
    result_type, xyz, score = layout

    def detect(image: Any, timestamp_ms: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        result = result_type()
        if timestamp_ms is None:
            lib.MpFaceLandmarkerDetectImage(handle, image._image_ptr, None, ctypes.byref(result))
        else:
            lib.MpFaceLandmarkerDetectForVideo(handle, image._image_ptr, None, timestamp_ms,
                                               ctypes.byref(result))
        try:
            faces = []
            for i in range(min(result.face_landmarks_count, result.face_blendshapes_count)):
                marks, cats = result.face_landmarks[i], result.face_blendshapes[i]
                p = _array(marks.landmarks, marks.landmarks_count, xyz)
                s = _array(cats.categories, cats.categories_count, score)
                faces.append((s["score"].astype(np.float32),  # copies: the C memory goes
                              np.stack([p["x"], p["y"], p["z"]], axis=1)))
            return faces
        finally:
            lib.MpFaceLandmarkerCloseResult(ctypes.byref(result))

    return detect
