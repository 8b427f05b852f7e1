"""Feature building for a batch of faces at once (:func:`emotion_estimator.features.build`).

The per-frame step builds every face's inputs in one call; these tests pin that a batch gives
each face exactly what it gets alone, and that the face crop's cheaper shrink (2x2 halvings,
then one linear step) sees the same picture whatever the frame's resolution.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES, Face
from emotion_estimator.features import (
    LEFT_EYE,
    N_LANDMARKS,
    RIGHT_EYE,
    aligned_batch,
    aligned_landmarks,
    build,
    face_crop,
    face_transform,
    transforms,
)

SPECS = [{"name": "f", "kind": "face", "version": 1, "size": 48},
         {"name": "l", "kind": "landmarks", "version": 1},
         {"name": "b", "kind": "blendshapes", "version": 1}]


def synthetic_face(seed: int, deg: float, iod: float, centre: tuple[float, float],
                   width: int, height: int) -> Face:
    """A random 478-point face, eye line at ``deg``, ``iod`` pixels between the eyes."""
    rng = np.random.default_rng(seed)
    shape = np.column_stack([rng.uniform(-1.2, 1.2, N_LANDMARKS),
                             rng.uniform(-1.0, 1.6, N_LANDMARKS),
                             rng.uniform(-0.4, 0.4, N_LANDMARKS)])
    for i, x in zip((*RIGHT_EYE, *LEFT_EYE), (-0.7, -0.3, 0.3, 0.7), strict=True):
        shape[i, :2] = x, 0.0
    a = np.deg2rad(deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = shape[:, :2] * iod @ rot.T + np.asarray(centre)
    norm = np.column_stack([(xy[:, 0] + 0.5) / width, (xy[:, 1] + 0.5) / height,
                            shape[:, 2] * iod / width]).astype(np.float32)
    scores = rng.uniform(0, 1, len(BLENDSHAPE_NAMES)).astype(np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Face(scores, (float(lo[0]), float(lo[1]), *map(float, hi - lo)), norm)


def smooth_texture(height: int, width: int, sigma: float, seed: int = 0) -> np.ndarray:
    """A smooth BGR texture: blurred noise (features ~``sigma`` px), built small and enlarged."""
    rng = np.random.default_rng(seed)
    f = max(1, int(sigma // 4))
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height // f, width // f, 3)).astype(np.float32),
                             (0, 0), sigma / f)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = (noise - noise.mean()) / noise.std()
    return np.clip(128 + 50 * noise, 0, 255).astype(np.uint8)


def test_a_batch_gives_each_face_what_it_gets_alone() -> None:
    height, width = 720, 1280
    image = smooth_texture(height, width, 4.0)
    faces = [synthetic_face(1, 0.0, 30.0, (200.0, 300.0), width, height),  # no shrink
             synthetic_face(2, 17.0, 140.0, (640.0, 360.0), width, height),  # halved
             synthetic_face(3, -30.0, 390.0, (1000.0, 380.0), width, height),  # halved 3x
             synthetic_face(4, 5.0, 80.0, (40.0, 700.0), width, height)]  # at the border
    batch = build(SPECS, faces, image)
    assert batch["f"].shape == (4, 48, 48) and batch["l"].shape == (4, N_LANDMARKS, 3)
    for i, face in enumerate(faces):
        alone = build(SPECS, [face], image)
        for name in ("f", "l", "b"):
            np.testing.assert_array_equal(batch[name][i], alone[name][0])
        np.testing.assert_array_equal(batch["f"][i], face_crop(image, face))
        np.testing.assert_array_equal(batch["l"][i], aligned_landmarks(face, width, height))
    assert len({batch["f"][i].tobytes() for i in range(4)}) == 4  # not one face four times
    stacked = np.stack([f.landmarks for f in faces])
    np.testing.assert_array_equal(aligned_batch(stacked, width, height), batch["l"])
    for m, face in zip(transforms(stacked, width, height, 48), faces, strict=True):
        np.testing.assert_array_equal(m, face_transform(face, width, height, 48))


def test_no_faces_give_empty_arrays_of_the_right_shapes() -> None:
    batch = build(SPECS, [], np.zeros((10, 10, 3), np.uint8))
    assert batch["f"].shape == (0, 48, 48) and batch["f"].dtype == np.uint8
    assert batch["l"].shape == (0, N_LANDMARKS, 3) and batch["b"].shape == (0, 52)


@pytest.mark.parametrize(("iod", "deg"), [(160.0, 0.0), (400.0, 12.0), (700.0, -20.0)])
def test_a_large_face_crops_like_the_same_face_in_a_smaller_frame(iod, deg) -> None:
    """The same picture at full and at quarter resolution (area-averaged): one crop."""
    height, width = 1600, 2400
    image = smooth_texture(height, width, sigma=iod / 8)
    face = synthetic_face(5, deg, iod, (1200.0, 800.0), width, height)
    small = cv2.resize(image, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    big_crop = face_crop(image, face).astype(int)
    small_crop = face_crop(small, face).astype(int)  # normalised landmarks: same face
    assert big_crop.std() > 10  # there is something to compare
    diff = np.abs(big_crop - small_crop)
    assert diff.mean() < 1.5 and diff.max() <= 8, (diff.mean(), diff.max())
    shifted = face_crop(np.roll(image, 3 * int(iod) // 40, axis=1), face).astype(int)
    assert np.abs(big_crop - shifted).mean() > 2 * diff.mean()  # the test can see a shift
