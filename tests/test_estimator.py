"""EmotionEstimator on the shared media, with a tiny hand-made ONNX classifier.

The tiny model scores happy from the two mouthSmile blendshapes and sad from the two
mouthFrown ones (unknown is the zero logit), so its labels on real faces are predictable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotion_estimator import BLENDSHAPE_NAMES
from emotion_estimator.outputs import FRAME_COLUMNS

CLASSES = ("happy", "sad", "unknown")
TINY_INPUTS = ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight")


def write_model(path: Path, width: int | None = None, trained: bool = True) -> Path:
    """A linear + softmax ONNX classifier with its metadata JSON beside it.

    ``width`` overrides the ONNX input width (to build a model that disagrees with its
    metadata).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    k = len(TINY_INPUTS)
    w = np.zeros((width or k, len(CLASSES)), np.float32)
    w[0:2, 0] = 4.0
    w[2:4, 1] = 4.0
    b = np.array([-2.0, -2.0, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["l"]),
         helper.make_node("Softmax", ["l"], ["p"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width or k])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", len(CLASSES)])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({
        "format": "emotion-estimator/classifier", "format_version": 1, "trained": trained,
        "classes": list(CLASSES), "blendshapes": list(TINY_INPUTS),
        "normalization": {"mean": [0.0] * k, "std": [1.0] * k},
    }))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def estimator(tiny_model, landmarker_model):
    from emotion_estimator import EmotionEstimator

    with EmotionEstimator(tiny_model, max_faces=4) as est:
        yield est


def test_still_smiling_face_is_happy_with_probabilities(estimator, media):
    import cv2

    (face,) = estimator.analyze_image(media / "single_face.jpg")
    assert face.label == "happy" and face.face_id == 0
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.probabilities == face.raw_probabilities  # no smoothing on a still
    assert face.scores.shape == (52,)
    x, y, w, h = face.box
    assert 0 <= x < x + w <= 572 and 0 <= y < y + h <= 562
    # an array in, the same answer out
    (again,) = estimator.analyze_image(cv2.imread(str(media / "single_face.jpg")))
    assert again.probabilities == pytest.approx(face.probabilities)


def test_two_faces_get_distinct_ids_left_to_right(estimator, media, tiny_model):
    from emotion_estimator import EmotionEstimator

    faces = estimator.analyze_image(media / "multi_face.jpg")
    assert [f.face_id for f in faces] == [0, 1]
    assert faces[0].box[0] < faces[1].box[0]
    assert estimator.analyze_image(media / "no_face.jpg") == []
    # max_faces=1 on the group photo: the larger face (MediaPipe alone would give none)
    from emotion_estimator.estimator import FacesLeftOut

    with pytest.warns(FacesLeftOut, match="more than 1 face found"):  # never silently
        (one,) = EmotionEstimator(tiny_model, max_faces=1).analyze_image(
            media / "multi_face.jpg")
    assert one.box == max(faces, key=lambda f: f.box[2] * f.box[3]).box


def test_video_without_faces_gives_only_no_face_rows(estimator, media):
    df = estimator.analyze_video(media / "no_face.mp4")
    assert list(df.columns) == [*FRAME_COLUMNS, *(f"p_{c}" for c in CLASSES)]
    assert len(df) >= 90 and df["frame"].tolist() == list(range(len(df)))
    assert not df["face_detected"].any()
    assert df[["face_id", "label", "p_happy", "x"]].isna().all().all()


def test_face_leaves_then_its_state_is_dropped(estimator, media):
    results = list(estimator.stream(media / "face_noface.mov"))
    assert len(results) == 169
    assert all(r.faces and r.faces[0].face_id == 0 for r in results[:72])
    assert sum(not r.faces for r in results[72:]) >= 90
    last_seen = results[71].timestamp_s
    (drop,) = [r for r in results if 0 in r.dropped]
    # dropped once it has been gone for forget_s (1 s), at the first frame after that
    assert last_seen + 1.0 < drop.timestamp_s <= last_seen + 1.0 + 0.1
    assert all(0 not in (f.face_id for f in r.faces) for r in results[drop.frame:])


def test_video_rows_with_blendshapes_and_stable_id(estimator, media):
    df = estimator.analyze_video(media / "single_face.mp4", blendshapes=True)
    assert list(df.columns) == [*FRAME_COLUMNS, *(f"p_{c}" for c in CLASSES),
                                *BLENDSHAPE_NAMES]
    assert len(df) == 72 and df["face_detected"].all()
    assert (df["face_id"] == 0).all()
    assert df["timestamp_s"].is_monotonic_increasing
    probs = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert df[list(BLENDSHAPE_NAMES)].to_numpy().min() >= 0
    assert df[list(BLENDSHAPE_NAMES)].to_numpy().max() <= 1


def test_landmarks_only_estimator_streams_scores_without_labels(estimator, media,
                                                                landmarker_model):
    """``classify=False`` (the blendshapes table): the same stream and ids, no classifier."""
    from emotion_estimator import EmotionEstimator

    bare = EmotionEstimator(classify=False, max_faces=4)
    assert bare.classifier is None and bare.classes == () and bare.expressions == ()
    from emotion_estimator.outputs import frame_columns

    assert bare.columns(blendshapes=True) == frame_columns((), BLENDSHAPE_NAMES)
    assert "label" not in bare.columns()
    got = [r for r in bare.stream(media / "single_face.mp4")]
    want = list(estimator.stream(media / "single_face.mp4"))
    assert len(got) == len(want) == 72
    for mine, theirs in zip(got, want, strict=True):
        assert [f.face_id for f in mine.faces] == [f.face_id for f in theirs.faces]
        assert all(f.label is None and not f.decided for f in mine.faces)
        assert np.allclose(mine.faces[0].scores, theirs.faces[0].scores, atol=1e-5)


def test_stream_results_are_lazy(estimator, media):
    stream = estimator.stream(media / "single_face.mp4")
    first = next(stream)
    assert first.frame == 0 and first.image.shape == (360, 640, 3)
    stream.close()  # stopping early releases the landmarker and the decoder


def test_shipped_model_says_happy_on_the_smiling_face(media, landmarker_model):
    from emotion_estimator import EmotionClassifier, EmotionEstimator
    from emotion_estimator.classifier import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the default model is not shipped yet")
    if not EmotionClassifier.load().trained:
        pytest.skip("the shipped default model is an untrained placeholder")
    (face,) = EmotionEstimator().analyze_image(media / "single_face.jpg")
    assert face.label == "happy"


class SmileClassifier:
    """Happy from mouthSmile (duck-typed classifier, no ONNX)."""

    classes = CLASSES

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        smile = x[:, BLENDSHAPE_NAMES.index("mouthSmileLeft")]
        return np.stack([smile, (1 - smile) / 2, (1 - smile) / 2], axis=1)


def fake_face(x: float, smile: float):
    from emotion_estimator.blendshapes import Face

    scores = np.zeros(52, np.float32)
    scores[BLENDSHAPE_NAMES.index("mouthSmileLeft")] = smile
    return Face(scores=scores, box=(x, 50.0, 80.0, 100.0), landmarks=np.zeros((478, 3)))


def test_frame_analyzer_keeps_each_face_its_own_id_and_filter():
    from emotion_estimator.estimator import FrameAnalyzer
    from emotion_estimator.video import Frame

    analyze = FrameAnalyzer(SmileClassifier(), "ema", {"time_constant_s": 0.5}, forget_s=0.5)
    image = np.zeros((4, 4, 3), np.uint8)
    for i in range(30):  # a smiling face at the left, a neutral one at the right
        faces = [fake_face(300 + i, 0.1), fake_face(10 + i, 0.95)]
        result = analyze(Frame(i, i / 30, image), faces[:: 1 if i % 2 else -1])
    by_id = {f.face_id: f for f in result.faces}
    # ids follow the boxes whatever the detection order (frame 0 listed the left face first)
    assert by_id[0].box[0] < 100 and by_id[0].label == "happy"
    assert by_id[1].box[0] > 300 and by_id[1].label != "happy"
    rows = result.rows()
    assert {r["face_id"] for r in rows} == {0, 1} and all("p_happy" in r for r in rows)
    # both leave for longer than forget_s: their states are dropped, ids are not reused
    assert analyze(Frame(30, 1.0, image), []).dropped == []
    assert sorted(analyze(Frame(31, 1.6, image), []).dropped) == [0, 1]
    assert [f.face_id for f in analyze(Frame(32, 1.7, image), [fake_face(10, 0.9)]).faces] == [2]


def test_frame_analyzer_without_classifier_only_tracks():
    from emotion_estimator.estimator import FrameAnalyzer
    from emotion_estimator.video import Frame

    analyze = FrameAnalyzer(None)
    image = np.zeros((4, 4, 3), np.uint8)
    analyze(Frame(0, 0.0, image), [fake_face(10, 0.5)])
    (row,) = analyze(Frame(1, 0.04, image), [fake_face(12, 0.5)]).rows(blendshapes=True)
    assert row["face_id"] == 0 and "label" not in row and "p_happy" not in row
    assert row["mouthSmileLeft"] == pytest.approx(0.5)


def test_people_in_a_panning_video_keep_their_ids(estimator, media):
    """The group photo as a 15-frame video panning 6 px a frame: each face keeps its id
    (whatever order MediaPipe lists them in, and across frames it is missed in)."""
    import cv2

    from emotion_estimator.video import Frame, FrameSource

    photo = cv2.imread(str(media / "multi_face.jpg"))

    class Pan(FrameSource):
        def __iter__(self):
            for i in range(15):
                yield Frame(i, i / 30, np.ascontiguousarray(photo[:, 6 * i: 6 * i + 880]))

    seen: dict[int, list[tuple[int, float]]] = {}
    for r in estimator.stream(Pan()):
        assert len(r.faces) >= 2 and len({f.face_id for f in r.faces}) == len(r.faces)
        for f in r.faces:
            seen.setdefault(f.face_id, []).append((r.frame, f.box[0]))
    assert 2 <= len(seen) <= 4  # the same few people, no id churn
    for track in seen.values():  # one id = one face: its box moves with the pan
        for (f0, x0), (f1, x1) in zip(track, track[1:], strict=False):
            assert x1 - x0 == pytest.approx(-6 * (f1 - f0), abs=10)


def test_decided_follows_the_filter_state():
    """A new face is undecided (label ``unknown`` not chosen) until the filter decides;
    ``none`` decides at once; a face the filter forgot starts undecided again."""
    from emotion_estimator.estimator import FrameAnalyzer
    from emotion_estimator.video import Frame

    image = np.zeros((4, 4, 3), np.uint8)
    analyze = FrameAnalyzer(SmileClassifier(), "ema", forget_s=0.5)
    states = [analyze(Frame(i, i / 30, image), [fake_face(10, 0.95)]).faces[0]
              for i in range(10)]
    assert (states[0].label, states[0].decided) == ("unknown", False)
    assert states[-1].decided and states[-1].label == "happy"
    first = next(i for i, f in enumerate(states) if f.decided)
    assert all(f.decided for f in states[first:])
    again = analyze(Frame(10, 2.0, image), [fake_face(10, 0.95)]).faces[0]
    assert again.face_id == 1 and not again.decided  # a new id: a fresh filter
    raw = FrameAnalyzer(SmileClassifier(), "none")(Frame(0, 0.0, image), [fake_face(10, 0.95)])
    assert raw.faces[0].decided and raw.faces[0].label == "happy"
    tracked = FrameAnalyzer(None)(Frame(0, 0.0, image), [fake_face(10, 0.95)])
    assert not tracked.faces[0].decided and tracked.faces[0].label is None


def test_process_pushes_frames_like_a_video_stream(estimator, media):
    """A robot's own loop: frames pushed one by one with their own timestamps give the rows
    the same video gives through ``stream``; going backwards is refused; reset starts over."""
    import cv2

    cap = cv2.VideoCapture(str(media / "face_noface.mov"))
    images = [cap.read()[1] for _ in range(90)]
    cap.release()
    times = [0.5 + i / 26.4 for i in range(90)]  # the robot's clock, not the file's
    pushed = [estimator.process(image, t) for image, t in zip(images, times, strict=True)]
    from emotion_estimator.video import Frame, FrameSource

    class Clip(FrameSource):
        def __iter__(self):
            for i, (image, t) in enumerate(zip(images, times, strict=True)):
                yield Frame(i, t, image)

    streamed = list(estimator.stream(Clip()))
    assert [r.rows() for r in pushed] == [r.rows() for r in streamed]
    assert pushed[0].faces and not pushed[-1].faces and pushed[-1].frame == 89
    with pytest.raises(ValueError, match="backwards"):
        estimator.process(images[0], 0.1)
    estimator.reset()
    again = estimator.process(images[0], 0.1)
    assert again.frame == 0 and [f.face_id for f in again.faces] == [0]
    assert not again.faces[0].decided  # a fresh filter
    estimator.reset()
