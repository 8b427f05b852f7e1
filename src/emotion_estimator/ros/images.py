"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` -> BGR uint8 arrays.

Works on rclpy messages and on rosbags' decoded messages alike (same field names). Raw images
in ``rgb8``, ``bgr8``, ``mono8``, ``rgba8``, ``bgra8``, ``yuv422`` (UYVY), ``yuv422_yuy2``
(YUYV) and the OpenCV names ``8UC1``/``8UC3``/``8UC4``; compressed ``jpeg``/``png`` (also the
``image_transport`` form ``"bgr8; jpeg compressed bgr8"``), admitted by the project's one
size rule (:mod:`emotion_estimator.admission`) before any decode. Anything else raises
:class:`BadImage` with a ``kind`` a node counts per kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (channels, the cv2 colour conversion to BGR or None)
_RAW: dict[str, tuple[int, str | None]] = {
    "bgr8": (3, None), "8UC3": (3, None), "rgb8": (3, "COLOR_RGB2BGR"),
    "mono8": (1, "COLOR_GRAY2BGR"), "8UC1": (1, "COLOR_GRAY2BGR"),
    "bgra8": (4, "COLOR_BGRA2BGR"), "8UC4": (4, "COLOR_BGRA2BGR"),
    "rgba8": (4, "COLOR_RGBA2BGR"),
    "yuv422": (2, "COLOR_YUV2BGR_UYVY"), "uyvy": (2, "COLOR_YUV2BGR_UYVY"),
    "yuv422_yuy2": (2, "COLOR_YUV2BGR_YUY2"), "yuyv": (2, "COLOR_YUV2BGR_YUY2"),
}
RAW_ENCODINGS = tuple(_RAW)


class BadImage(ValueError):
    """An image message that cannot be used; ``kind`` names the problem for counting."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_compressed(msg: Any) -> bool:
    """Whether ``msg`` is a ``CompressedImage`` (has ``format``, no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def to_bgr(msg: Any) -> np.ndarray:
    """The image of an ``Image`` or ``CompressedImage`` message as BGR uint8 (H, W, 3)."""
    return from_compressed(msg) if is_compressed(msg) else from_raw(msg)


def from_raw(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` as BGR uint8."""
    import cv2

    encoding = str(msg.encoding)
    if encoding not in _RAW:
        raise BadImage("unsupported_encoding",
                       f"unsupported image encoding {encoding!r} "
                       f"(supported: {', '.join(RAW_ENCODINGS)})")
    channels, conversion = _RAW[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise BadImage("bad_size", f"empty image ({width}x{height})")
    from ..admission import max_pixels_default

    if height * width > max_pixels_default():  # refused before any copy
        raise BadImage("too_large", f"image of {width}x{height} pixels is over the limit "
                       f"({max_pixels_default()}, see $EMOTION_ESTIMATOR_MAX_PIXELS)")
    if channels == 2 and width % 2:
        raise BadImage("bad_size", f"{encoding} needs an even width, not {width}")
    row = width * channels
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if step < row or data.size < step * (height - 1) + row:
        raise BadImage("bad_size", f"{encoding} {width}x{height} with step {step} needs "
                       f"{step * (height - 1) + row} bytes, the message has {data.size}")
    rows = np.lib.stride_tricks.as_strided(data, (height, row), (step, 1))
    image = rows.reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(np.ascontiguousarray(image), getattr(cv2, conversion))


def from_compressed(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png) as BGR uint8."""
    import cv2

    from ..admission import ImageRejected, admit

    fmt = str(msg.format).lower()
    codec = fmt.rsplit(";", 1)[-1]  # "bgr8; jpeg compressed bgr8" -> " jpeg compressed bgr8"
    if codec.strip() and not any(name in codec for name in ("jpeg", "jpg", "png")):
        raise BadImage("unsupported_encoding",
                       f"unsupported compressed format {msg.format!r} (jpeg or png)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    try:
        admit(data, None, "compressed image")
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (ImageRejected, cv2.error) as exc:
        raise BadImage("corrupt_image", f"cannot decode compressed image: {exc}") from None
    if image is None or image.size == 0:
        raise BadImage("corrupt_image",
                       f"cannot decode compressed image ({msg.format!r}, {data.size} bytes)")
    return image
