"""sensor_msgs images -> BGR: every supported encoding on a real photo, and the bad ones.

Messages are real ``sensor_msgs`` types (rosbags' pure-Python classes: the node and the bag
reader convert the same fields); REP-155 field mapping of the expression view.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emotion_estimator.estimator import FaceResult
from emotion_estimator.ros.rep155 import Rep155, expression_of

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    if not (MEDIA / "single_face.jpg").is_file():
        pytest.skip("../shared/media is absent")
    image = cv2.imread(str(MEDIA / "single_face.jpg"))
    return np.ascontiguousarray(image[:, : image.shape[1] // 2 * 2])  # even width for YUV


@pytest.fixture(scope="module")
def types():
    typesys = pytest.importorskip("rosbags.typesys")
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE).types


def raw(types, array: np.ndarray, encoding: str, pad: int = 0):
    h, w = array.shape[:2]
    rows = array.reshape(h, -1)
    rows = np.hstack([rows, np.zeros((h, pad), np.uint8)])
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="camera")
    return types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=encoding,
                                          is_bigendian=0, step=rows.shape[1],
                                          data=rows.reshape(-1))


def compressed(types, data: bytes, fmt: str):
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="camera")
    return types["sensor_msgs/msg/CompressedImage"](
        header=header, format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("encoding,conversion", [
    ("bgr8", None), ("rgb8", "COLOR_BGR2RGB"), ("bgra8", "COLOR_BGR2BGRA"),
    ("rgba8", "COLOR_BGR2RGBA"), ("8UC3", None)])
def test_colour_encodings_give_the_same_pixels(photo, types, encoding, conversion) -> None:
    import cv2

    from emotion_estimator.ros.images import to_bgr

    array = photo if conversion is None else cv2.cvtColor(photo, getattr(cv2, conversion))
    out = to_bgr(raw(types, array, encoding, pad=8))  # rows padded: step > width * channels
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out, photo)


def test_mono8_and_yuv422(photo, types) -> None:
    import cv2

    from emotion_estimator.ros.images import to_bgr

    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    out = to_bgr(raw(types, grey, "mono8"))
    assert out.shape == photo.shape and np.array_equal(out[..., 1], grey)
    h, w = photo.shape[:2]  # UYVY from OpenCV's I420 (same video-range coefficients)
    h2, q = h // 2 * 2, (h // 2) * (w // 2)
    flat = cv2.cvtColor(photo[:h2], cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = flat[: h2 * w].reshape(h2, w)
    u = flat[h2 * w: h2 * w + q].reshape(h2 // 2, w // 2)
    v = flat[h2 * w + q: h2 * w + 2 * q].reshape(h2 // 2, w // 2)
    uyvy = np.empty((h2, w * 2), np.uint8)
    uyvy[:, 0::4], uyvy[:, 2::4] = np.repeat(u, 2, axis=0), np.repeat(v, 2, axis=0)
    uyvy[:, 1::2] = y
    out = to_bgr(raw(types, uyvy.reshape(h2, w, 2), "yuv422"))
    assert out.shape == (h2, w, 3)
    assert float(np.abs(out.astype(int) - photo[:h2]).mean()) < 4  # chroma shared, not lost


def test_compressed_png_and_jpeg(photo, types) -> None:
    import cv2

    from emotion_estimator.ros.images import to_bgr

    png = cv2.imencode(".png", photo)[1].tobytes()
    assert np.array_equal(to_bgr(compressed(types, png, "bgr8; png compressed bgr8")), photo)
    jpg = cv2.imencode(".jpg", photo)[1].tobytes()
    out = to_bgr(compressed(types, jpg, "jpeg"))
    assert out.shape == photo.shape and float(np.abs(out.astype(int) - photo).mean()) < 5


def test_bad_images_name_their_kind(photo, types) -> None:
    import cv2

    from emotion_estimator.ros.images import BadImage, to_bgr

    cases = [
        (raw(types, photo.astype(np.uint8), "32FC1"), "unsupported_encoding"),
        (raw(types, photo[:10], "bgr8"), None),
        (compressed(types, b"\xff\xd8\xff\xe0 not a jpeg at all", "jpeg"), "corrupt_image"),
        (compressed(types, cv2.imencode(".png", photo)[1].tobytes(), "16UC1; compressedDepth"),
         "unsupported_encoding"),
    ]
    short = raw(types, photo, "bgr8")
    short.data = short.data[: short.data.size // 2]  # fewer bytes than height * step
    cases.append((short, "bad_size"))
    for msg, kind in cases:
        if kind is None:
            assert to_bgr(msg).shape == (10, photo.shape[1], 3)
            continue
        with pytest.raises(BadImage) as err:
            to_bgr(msg)
        assert err.value.kind == kind


def _face(face_id: int, **view) -> FaceResult:
    return FaceResult(face_id, (10.0, 20.0, 30.0, 40.0), "sad",
                      {"happy": 0.1, "sad": 0.8, "unknown": 0.1}, {}, scores=np.zeros(52),
                      decided=view.pop("decided", True), **view)


def test_rep155_mapping_of_labels_and_of_the_expression_view() -> None:
    plain = expression_of(_face(3))
    assert (plain.face, plain.expression, plain.confidence) == ("face_3", "sad", 0.8)
    assert math.isnan(plain.valence) and math.isnan(plain.arousal)
    view = expression_of(_face(0, expression="fearful", valence=-0.6, arousal=0.5,
                               expression_probabilities={"fearful": 0.7, "neutral": 0.3}))
    assert (view.expression, view.confidence) == ("scared", 0.7)  # hri_msgs' name
    assert (view.valence, view.arousal) == (-0.6, 0.5)


def test_rep155_faces_appear_when_decided_and_retire_when_dropped() -> None:
    from emotion_estimator.estimator import FrameResult

    rep = Rep155()
    first = rep(FrameResult(0, 0.0, [_face(0, decided=False)]), 100, 100)
    assert (first.tracked, first.appeared, first.expressions) == ([], [], [])
    second = rep(FrameResult(1, 0.1, [_face(0)]), 100, 100)
    assert second.tracked == ["face_0"] and second.appeared == ["face_0"]
    roi = second.rois[0]
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == (0.1, 0.2, 0.4, 0.6)
    gone = rep(FrameResult(2, 1.5, [], dropped=[0]), 100, 100)
    assert (gone.tracked, gone.retired) == ([], ["face_0"])
