"""The seven-expression view and operating points at run time: metadata checks, the graph's
second output through the per-frame step, valence/arousal, bad requests (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from emotion_estimator.blendshapes import Face  # noqa: E402
from emotion_estimator.classifier import (  # noqa: E402
    EmotionClassifier,
    apply_operating_point,
    operating_point_offsets,
)
from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.errors import InputError  # noqa: E402
from emotion_estimator.estimator import EmotionEstimator, FrameAnalyzer  # noqa: E402
from emotion_estimator.expressions import EXPRESSIONS, valence_arousal  # noqa: E402
from emotion_estimator.outputs import frame_columns  # noqa: E402
from emotion_estimator.video import Frame  # noqa: E402

CLASSES = ["happy", "sad", "unknown"]


def write_model(tmp_path, *, expressions=EXPRESSIONS, points=None, outputs: int = 2,
                name: str = "m"):
    """A linear model on the 52 blendshapes: score 0 -> happy / expression 'happy', score 1 ->
    sad / 'sad' (weights 8), with its metadata."""
    w3 = np.zeros((52, 3), np.float32)
    w3[0, 0], w3[1, 1] = 8, 8
    w7 = np.zeros((52, 7), np.float32)
    w7[0, EXPRESSIONS.index("happy")], w7[1, EXPRESSIONS.index("sad")] = 8, 8
    nodes = [helper.make_node("MatMul", ["blendshapes", "w3"], ["z3"]),
             helper.make_node("Softmax", ["z3"], ["probs"], axis=1)]
    outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 3])]
    inits = [helper.make_tensor("w3", TensorProto.FLOAT, w3.shape, w3.ravel())]
    if outputs == 2:
        nodes += [helper.make_node("MatMul", ["blendshapes", "w7"], ["z7"]),
                  helper.make_node("Softmax", ["z7"], ["expressions"], axis=1)]
        outs.append(helper.make_tensor_value_info("expressions", TensorProto.FLOAT, ["n", 7]))
        inits.append(helper.make_tensor("w7", TensorProto.FLOAT, w7.shape, w7.ravel()))
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("blendshapes", TensorProto.FLOAT, ["n", 52])],
        outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    meta = {"classes": CLASSES, "inputs": [{"name": "blendshapes", "kind": "blendshapes",
                                            "version": 1}],
            "expressions": list(expressions) if expressions else None}
    if points is not None:
        meta["operating_points"] = points
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def face(happy: float, sad: float, x: float = 10.0) -> Face:
    scores = np.zeros(52, np.float32)
    scores[0], scores[1] = happy, sad
    return Face(scores=scores, box=(x, 10.0, 50.0, 50.0),
                landmarks=np.zeros((478, 3), np.float32))


def test_the_expression_view_goes_through_the_per_frame_step(tmp_path) -> None:
    clf = EmotionClassifier.load(write_model(tmp_path))
    assert clf.expressions == EXPRESSIONS
    probs, expr = clf.predict_views({"blendshapes": np.stack([face(1, 0).scores,
                                                              face(0, 1).scores])})
    assert probs.shape == (2, 3) and expr.shape == (2, 7)
    assert np.allclose(expr.sum(1), 1, atol=1e-5)
    assert [EXPRESSIONS[i] for i in expr.argmax(1)] == ["happy", "sad"]
    analyze = FrameAnalyzer(clf, "none")
    result = analyze(Frame(0, 0.0, np.zeros((80, 80, 3), np.uint8)),
                     [face(1, 0), face(0, 1, x=200)])
    smiling, crying = result.faces
    assert (smiling.expression, crying.expression) == ("happy", "sad")
    assert list(smiling.expression_probabilities) == list(EXPRESSIONS)
    assert smiling.valence > 0.5 > -0.3 > crying.valence
    row = result.rows()[0]
    assert row["expression"] == "happy" and set(f"expr_{e}" for e in EXPRESSIONS) <= set(row)
    assert list(frame_columns(CLASSES, (), EXPRESSIONS))[-10:] == [
        "expression", *(f"expr_{e}" for e in EXPRESSIONS), "valence", "arousal"]


def test_a_model_without_the_view_reports_none_and_refuses_to_be_asked(tmp_path) -> None:
    path = write_model(tmp_path, expressions=None, outputs=1)
    clf = EmotionClassifier.load(path)
    assert clf.expressions == () and clf.predict_views(
        {"blendshapes": face(1, 0).scores[None]})[1] is None
    result = FrameAnalyzer(clf, "none")(Frame(0, 0.0, np.zeros((8, 8, 3), np.uint8)),
                                        [face(1, 0)])
    assert result.faces[0].expression is None and "expression" not in result.rows()[0]
    with pytest.raises(InputError, match="no expression view"):
        FrameAnalyzer(clf, "none", expressions=True)


@pytest.mark.parametrize("names", [["happy"] * 7, [*EXPRESSIONS[:6], "contempt"],
                                   list(EXPRESSIONS[:6]), "neutral"])
def test_metadata_with_other_expression_names_is_refused_at_load(tmp_path, names) -> None:
    path = write_model(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["expressions"] = names
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="expressions"):
        EmotionClassifier.load(path)


def test_declared_view_without_a_second_output_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="second output"):
        EmotionClassifier.load(write_model(tmp_path, outputs=1))


def test_operating_points_shift_the_decision_and_unknown_names_are_listed(tmp_path) -> None:
    clf = EmotionClassifier.load(write_model(
        tmp_path, points={"sad-sensitive": {"sad": 1.5, "happy": -0.5}}))
    assert set(clf.operating_points) == {"balanced", "sad-sensitive"}
    assert operating_point_offsets(clf, "balanced") is None
    offsets = operating_point_offsets(clf, "sad-sensitive")
    assert offsets.tolist() == [-0.5, 1.5, 0.0]
    p = np.array([[0.45, 0.30, 0.25]], np.float32)
    shifted = apply_operating_point(p, offsets)
    assert shifted.argmax() == 1 and np.isclose(shifted.sum(), 1)
    ratio = shifted[0] / p[0]
    assert ratio[1] / ratio[2] == pytest.approx(np.exp(1.5), rel=1e-4)
    with pytest.raises(InputError, match="balanced, sad-sensitive"):
        operating_point_offsets(clf, "cautious")
    # through the per-frame step: the same face reads sad at the sad-sensitive point
    frame = Frame(0, 0.0, np.zeros((8, 8, 3), np.uint8))
    near = face(0.30, 0.25)
    assert FrameAnalyzer(clf, "none")(frame, [near]).faces[0].label == "happy"
    assert FrameAnalyzer(clf, "none", operating_point="sad-sensitive")(
        frame, [near]).faces[0].label == "sad"


def test_a_model_without_points_offers_balanced_only(tmp_path) -> None:
    clf = EmotionClassifier.load(write_model(tmp_path))
    assert list(clf.operating_points) == ["balanced"]
    with pytest.raises(InputError, match="has: balanced$"):
        operating_point_offsets(clf, "sad-sensitive")


@pytest.mark.parametrize("points", [{"sad-sensitive": {"angry": 1.0}},
                                    {"sad-sensitive": {"sad": float("nan")}},
                                    {"sad-sensitive": [0.0, 1.0, 0.0]}, ["balanced"]])
def test_points_naming_unknown_classes_or_bad_values_are_refused_at_load(tmp_path,
                                                                         points) -> None:
    with pytest.raises(InputError, match="operating"):
        EmotionClassifier.load(write_model(tmp_path, points=points))


def test_valence_and_arousal_estimates_keep_the_circumplex_order() -> None:
    one_hot = np.eye(7)
    va = {e: valence_arousal(one_hot[i][None])[0] for i, e in enumerate(EXPRESSIONS)}
    assert va["happy"][0] > va["neutral"][0] > va["sad"][0]
    for aroused in ("surprised", "angry", "fearful"):
        assert va[aroused][1] > va["neutral"][1] > va["sad"][1]
    mixed = valence_arousal(np.array([[0.5, 0.5, 0, 0, 0, 0, 0]]))[0]
    assert mixed == pytest.approx((va["happy"] + va["neutral"]) / 2)


def test_cli_refuses_an_unknown_point_and_a_missing_view_with_one_line(tmp_path, capsys,
                                                                       media) -> None:
    image = str(media / "single_face.jpg")
    for extra, match in ((["--operating-point", "cautious"], "unknown operating point"),
                         (["--model", "blendshapes", "--expressions"], "no expression view")):
        code = cli(["analyze", image, "-o", str(tmp_path / "o.csv"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and match in err[0]
        assert not (tmp_path / "o.csv").exists()


def test_estimator_api_validates_the_point_at_construction(tmp_path) -> None:
    path = write_model(tmp_path)
    with pytest.raises(InputError, match="unknown operating point"):
        EmotionEstimator(str(path), operating_point="nope")
    est = EmotionEstimator(str(path))
    assert est.expressions == EXPRESSIONS and "expr_sad" in est.columns()
    assert "expression" not in EmotionEstimator(str(path), expressions=False).columns()


def test_serve_messages_carry_the_expression_view(tmp_path) -> None:
    pytest.importorskip("starlette")
    from emotion_estimator.serve.messages import EventDetector, frame_message

    clf = EmotionClassifier.load(write_model(tmp_path))
    analyze, events = FrameAnalyzer(clf, "none"), EventDetector()
    image = np.zeros((8, 8, 3), np.uint8)
    first = analyze(Frame(0, 0.0, image), [face(1, 0)])
    msg = frame_message(first, "test")
    assert msg["faces"][0]["expression"] == "happy" and "expr_fearful" in msg["faces"][0]
    assert events(first, "test") == []
    change = events(analyze(Frame(1, 0.1, image), [face(0, 1)]), "test")
    assert [(e["from"], e["to"], e["expression"]) for e in change] == [("happy", "sad", "sad")]


def test_batch_signature_keeps_old_stores_valid_and_tells_points_apart() -> None:
    from emotion_estimator.batch.manifest import BatchOptions

    default = BatchOptions().signature()
    assert "operating_point" not in default and "expressions" not in default
    assert BatchOptions(operating_point="sad-sensitive").signature() != default
    assert BatchOptions(expressions=False).signature() != default
    assert BatchOptions(operating_point="sad-sensitive").estimator_kwargs()[
        "operating_point"] == "sad-sensitive"
