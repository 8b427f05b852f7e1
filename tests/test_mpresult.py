"""MediaPipe results read from its C structs (:mod:`emotion_estimator.mpresult`) are the
public API's numbers bit for bit: stills with several faces and none, and a video stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotion_estimator.blendshapes import FaceLandmarker

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
pytestmark = pytest.mark.skipif(not (MEDIA / "single_face.mp4").is_file(),
                                reason="needs ../shared/media")


def pair(**kwargs) -> tuple[FaceLandmarker, FaceLandmarker]:
    fast, public = FaceLandmarker(**kwargs), FaceLandmarker(**kwargs)
    if fast._fast is None:
        fast.close()
        public.close()
        pytest.skip("this MediaPipe build has no C result to read (public path only)")
    public._fast = None
    return fast, public


def same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.scores.dtype == y.scores.dtype == np.float32
        assert x.landmarks.dtype == y.landmarks.dtype == np.float32
        assert x.landmarks.shape == y.landmarks.shape == (478, 3) and x.scores.shape == (52,)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.landmarks, y.landmarks)
        assert x.box == y.box


def test_stills_with_several_faces_and_none_match_the_public_api() -> None:
    from emotion_estimator.video import read_image

    fast, public = pair(mode="image", max_faces=3)
    with fast, public:
        counts = []
        for name in ("multi_face.jpg", "single_face.jpg", "no_face.jpg"):
            image = read_image(MEDIA / name)
            a, b = fast.detect(image), public.detect(image)
            same(a, b)
            counts.append(len(a))
    assert counts[0] >= 2 and counts[1] == 1 and counts[2] == 0


def test_a_video_stream_matches_the_public_api_frame_by_frame() -> None:
    import cv2

    cap = cv2.VideoCapture(str(MEDIA / "single_face.mp4"))
    fast, public = pair(mode="video")
    with fast, public:
        for i in range(24):
            ok, frame = cap.read()
            assert ok
            a, b = fast.detect(frame, i / 30), public.detect(frame, i / 30)
            assert len(a) == 1
            same(a, b)
    cap.release()
