"""Blendshape names and real MediaPipe results on the shared photos."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_estimator import BLENDSHAPE_NAMES
from emotion_estimator.blendshapes import FaceLandmarker
from emotion_estimator.video import read_image


def test_names_are_mediapipe_order():
    assert len(BLENDSHAPE_NAMES) == 52 == len(set(BLENDSHAPE_NAMES))
    assert BLENDSHAPE_NAMES[0] == "_neutral"
    assert BLENDSHAPE_NAMES.index("mouthSmileLeft") == 44
    assert BLENDSHAPE_NAMES.index("jawOpen") == 25
    assert BLENDSHAPE_NAMES[-1] == "noseSneerRight"


@pytest.fixture(scope="module")
def image_landmarker(landmarker_model):
    with FaceLandmarker(landmarker_model, mode="image", max_faces=4) as lm:
        yield lm


def test_smiling_face(media, image_landmarker):
    (face,) = image_landmarker.detect(read_image(media / "single_face.jpg"))
    assert face.scores.shape == (52,) and face.landmarks.shape == (478, 3)
    top5 = [BLENDSHAPE_NAMES[i] for i in np.argsort(face.scores)[::-1][:5]]
    assert "mouthSmileLeft" in top5
    x, y, w, h = face.box  # the box lies inside the 572x562 photo and is face-sized
    assert x >= 0 and y >= 0 and x + w <= 572 and y + h <= 562 and 100 < w < 400


def test_no_face_and_two_faces(media, image_landmarker):
    assert image_landmarker.detect(read_image(media / "no_face.jpg")) == []
    faces = image_landmarker.detect(read_image(media / "multi_face.jpg"))
    assert len(faces) == 2
    assert faces[0].box != faces[1].box


def test_one_face_asked_on_a_group_photo_gives_the_largest(media, landmarker_model):
    with FaceLandmarker(landmarker_model, mode="image", max_faces=1) as lm:
        (face,) = lm.detect(read_image(media / "multi_face.jpg"))
    with FaceLandmarker(landmarker_model, mode="image", max_faces=4) as lm:
        both = lm.detect(read_image(media / "multi_face.jpg"))
    assert face.box[2] * face.box[3] == max(f.box[2] * f.box[3] for f in both)


def test_video_mode_needs_timestamps_and_rejects_bad_images(landmarker_model):
    with FaceLandmarker(landmarker_model, mode="video") as lm:
        with pytest.raises(ValueError, match="timestamp"):
            lm.detect(np.zeros((32, 32, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            lm.detect(np.zeros((32, 32, 3), np.float32), 0.0)
        # repeated timestamps are made strictly increasing instead of crashing MediaPipe
        assert lm.detect(np.zeros((32, 32), np.uint8), 0.0) == []
        assert lm.detect(np.zeros((32, 32), np.uint8), 0.0) == []
    with pytest.raises(ValueError, match="max_faces"):
        FaceLandmarker(landmarker_model, max_faces=0)


def test_landmarker_left_open_exits_without_traceback(landmarker_model):
    import subprocess
    import sys

    code = ("import numpy as np; from emotion_estimator.blendshapes import FaceLandmarker;"
            f"lm = FaceLandmarker({str(landmarker_model)!r}, mode='video');"
            "lm.detect(np.zeros((32, 32, 3), np.uint8), 0.0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
