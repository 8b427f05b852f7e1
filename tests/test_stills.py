"""Stills with no face are looked at again: a bordered image, then a lower threshold."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_estimator import EmotionEstimator
from emotion_estimator.blendshapes import Face, FaceLandmarker, _box
from emotion_estimator.stills import RETRY_CONFIDENCE, StillLandmarker, bordered, unborder


def test_unborder_maps_a_bordered_images_landmarks_back() -> None:
    rng = np.random.default_rng(0)
    width, height = 80, 60
    pts = np.column_stack([rng.uniform(0, width, 478), rng.uniform(0, height, 478),
                           rng.normal(0, 5, 478)]).astype(np.float32)  # pixels
    image = np.zeros((height, width, 3), np.uint8)
    big, b = bordered(image)
    assert b == 20 and big.shape == (height + 2 * b, width + 2 * b, 3)
    outer = np.column_stack([(pts[:, 0] + b) / big.shape[1], (pts[:, 1] + b) / big.shape[0],
                             pts[:, 2] / big.shape[1]])
    face = unborder(Face(np.zeros(52, np.float32), (0, 0, 0, 0), outer), b, width, height)
    want = np.column_stack([pts[:, 0] / width, pts[:, 1] / height, pts[:, 2] / width])
    np.testing.assert_allclose(face.landmarks, want, atol=1e-5)
    assert face.box == pytest.approx(_box(want, width, height), abs=1e-3)


@pytest.fixture(scope="module")
def tight_crop(media, landmarker_model) -> tuple[np.ndarray, np.ndarray]:
    """A crop of single_face.jpg inside the face (no forehead, chin or ears) and the
    full image's landmarks in the crop's pixels."""
    image = cv2.imread(str(media / "single_face.jpg"))
    with FaceLandmarker(landmarker_model, mode="image") as plain:
        face = plain.detect(image)[0]
    x, y, w, h = (int(v) for v in face.box)
    x0, y0, x1, y1 = x + w // 8, y + h // 8, x + w - w // 8, y + h - h // 8
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    pixels = face.landmarks[:, :2] * [image.shape[1], image.shape[0]] - [x0, y0]
    return crop, pixels


def test_a_tight_crop_is_found_on_a_retry_where_it_lies(tight_crop, landmarker_model) -> None:
    crop, want = tight_crop
    with FaceLandmarker(landmarker_model, mode="image") as plain:
        assert plain.detect(crop) == []  # MediaPipe alone misses it
    with StillLandmarker(landmarker_model) as still:
        faces = still.detect(crop)
        assert still.retried == 1 and len(faces) == 1
    got = faces[0].landmarks[:, :2] * [crop.shape[1], crop.shape[0]]
    iod = np.linalg.norm(want[33] - want[263])
    assert np.median(np.linalg.norm(got - want, axis=1)) < 0.1 * iod


def test_no_face_stays_no_face_and_video_is_not_retried(media, landmarker_model) -> None:
    image = cv2.imread(str(media / "no_face.jpg"))
    with StillLandmarker(landmarker_model, min_detection_confidence=0.5) as still:
        assert still.detect(image) == [] and still.retried == 0
        assert still._low is not None  # the lower threshold was tried too
    est = EmotionEstimator(landmarker=landmarker_model)
    with est.landmarker("image") as image_mode:
        assert isinstance(image_mode, StillLandmarker)
    with est.landmarker("video") as video:
        assert not isinstance(video, StillLandmarker)
    assert RETRY_CONFIDENCE < 0.5


def test_analyze_image_reads_a_tight_crop(tight_crop, landmarker_model) -> None:
    crop, _ = tight_crop
    with EmotionEstimator(landmarker=landmarker_model) as est:
        faces = est.analyze_image(crop)
    assert len(faces) == 1 and faces[0].label in est.classes
