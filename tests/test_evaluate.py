"""Evaluation maths on hand-made predictions, undetected images, FER+ majority labels, report
files; multi-input models (a tiny untrained fusion model, exported) on a tiny prepared dataset
with stored landmarks and face crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES  # noqa: E402
from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.errors import InputError  # noqa: E402
from emotion_estimator.features import N_LANDMARKS  # noqa: E402
from emotion_estimator.training.data import read_dataset  # noqa: E402
from emotion_estimator.training.evaluate import (  # noqa: E402
    evaluate,
    evaluate_frame,
    load_predictor,
    write_report,
)
from emotion_estimator.training.metrics import (  # noqa: E402
    classification_metrics,
    cross_entropy,
    fit_temperature,
    softmax,
)

CLASSES = ("happy", "sad", "unknown")
# rows = truth, columns = prediction
MATRIX = np.array([[8, 1, 1], [2, 5, 3], [0, 4, 16]])


def _labels(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, pred = [], []
    for (t, p), n in np.ndenumerate(matrix):
        y += [t] * n
        pred += [p] * n
    return np.array(y), np.array(pred)


def test_metrics_from_a_hand_made_confusion_matrix() -> None:
    y, pred = _labels(MATRIX)
    m = classification_metrics(y, pred, CLASSES)
    assert m["confusion"] == MATRIX.tolist()
    assert m["accuracy"] == pytest.approx(29 / 40)
    # happy: P 8/10, R 8/10; sad: P 5/10, R 5/10; unknown: P 16/20, R 16/20
    assert m["per_class"]["happy"]["precision"] == pytest.approx(0.8)
    assert m["per_class"]["sad"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["unknown"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.8) / 3)
    assert m["per_class"]["sad"]["support"] == 10


def test_cross_entropy_by_hand() -> None:
    proba = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    assert cross_entropy(np.array([0, 1]), proba) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)


def test_temperature_fit_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20000, 3)) * 3
    p = softmax(logits, 2.0)
    y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)


def _frame() -> pd.DataFrame:
    """Test rows whose score 0 encodes the prediction; two rows MediaPipe missed (NaN)."""
    labels = ["happy"] * 4 + ["sad"] * 4 + ["unknown"] * 4 + ["sad", "happy"]
    predicted = [0, 0, 0, 2] + [1, 1, 0, 2] + [2, 2, 2, 1]
    x = np.zeros((len(labels), 52), np.float32)
    x[: len(predicted), 0] = predicted
    x[len(predicted):] = np.nan
    frame = pd.DataFrame(x, columns=list(BLENDSHAPE_NAMES))
    frame.insert(0, "preprocess", "raw")
    frame.insert(0, "label", labels)
    frame.insert(0, "split", "test")
    frame.insert(0, "image_id", np.arange(len(labels)) + 100)
    return frame


def _predict(x: np.ndarray) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[x[:, 0].astype(int)] * 0.9 + 0.1 / 3


def test_undetected_images_count_as_unknown_only_in_the_second_view() -> None:
    report = evaluate_frame(_predict, CLASSES, _frame(), "test", "raw")
    assert report["detected"]["n"] == 12
    assert report["detected"]["confusion"] == [[3, 0, 1], [1, 2, 1], [0, 1, 3]]
    assert report["undetected"] == 2
    assert report["with_undetected"]["confusion"] == [[3, 0, 2], [1, 2, 2], [0, 1, 3]]
    assert report["with_undetected"]["accuracy"] == pytest.approx(8 / 14)
    assert report["sad_called_happy"] == pytest.approx(1 / 4)
    assert report["happy_called_sad"] == 0.0
    assert "ferplus" not in report  # the frame has no FER+ vote columns
    assert set(report["table"].loc[~report["table"]["detected"], "image_id"]) == {112, 113}


def test_report_files(tmp_path) -> None:
    report = evaluate_frame(_predict, CLASSES, _frame(), "test", "raw")
    files = write_report(report, CLASSES, tmp_path)
    assert {p.name for p in files} >= {"metrics.json", "confusion_detected.csv",
                                       "confusion_detected.png", "misclassified.csv"}
    cm = pd.read_csv(tmp_path / "confusion_detected.csv", index_col=0)
    assert cm.loc["true_sad", "pred_happy"] == 1
    wrong = pd.read_csv(tmp_path / "misclassified.csv")
    assert len(wrong) == 14 - 8
    assert (wrong["truth"] != wrong["predicted"]).all()


def test_offsets_undo_a_prior_shift_and_raise_macro_f1() -> None:
    from sklearn.metrics import f1_score

    from emotion_estimator.training.metrics import fit_offsets

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    logits = np.eye(3)[y] * 1.5 + rng.normal(size=(3000, 3))
    logits[:, 1] -= 1.0  # the model under-predicts class 1
    offsets = fit_offsets(logits, y)
    assert offsets[1] > 0.5
    before = f1_score(y, logits.argmax(1), average="macro")
    assert f1_score(y, (logits + offsets).argmax(1), average="macro") > before + 0.02


# ---- FER+ majority labels ------------------------------------------------------------------


def _votes(frame: pd.DataFrame) -> pd.DataFrame:
    """FER+ vote columns: 10 votes for each row's own label, except row 103 (happy, called
    unknown): mostly neutral; 106 (sad, called happy): mostly happiness; 104 (sad): a tie of
    sadness and happiness; 111 (unknown, called sad): mostly not a face."""
    from emotion_estimator.training.ferplus import DATASET_COLUMNS, PREFIX

    votes = pd.DataFrame(0, index=frame.index, columns=list(DATASET_COLUMNS))
    own = {"happy": "happiness", "sad": "sadness", "unknown": "neutral"}
    for i, label in zip(frame.index, frame["label"], strict=True):
        votes.loc[i, PREFIX + own[label]] = 10
    special = {103: {"neutral": 8, "happiness": 2}, 106: {"happiness": 6, "sadness": 4},
               104: {"sadness": 5, "happiness": 5}, 111: {"NF": 9, "sadness": 1}}
    for image_id, counts in special.items():
        i = frame.index[frame["image_id"] == image_id][0]
        votes.loc[i] = 0
        for name, n in counts.items():
            votes.loc[i, PREFIX + name] = n
    return pd.concat([frame, votes], axis=1)


def test_ferplus_majority_view_from_the_vote_columns(tmp_path) -> None:
    report = evaluate_frame(_predict, CLASSES, _votes(_frame()), "test", "raw")
    plus = report["ferplus"]
    assert plus["no_label"] == {"not_face_or_unknown": 1, "tie": 1}
    assert plus["n"] == 10
    # 103 becomes a right "unknown", 106 a right "happy"; 104 and 111 have no FER+ label
    assert plus["confusion"] == [[4, 0, 0], [0, 1, 1], [0, 0, 4]]
    assert plus["accuracy"] == pytest.approx(9 / 10)
    assert plus["sad_called_happy"] == 0.0 and plus["happy_called_sad"] == 0.0
    table = report["table"].set_index("image_id")
    assert table.loc[106, "truth_ferplus"] == "happy" and table.loc[104, "truth_ferplus"] == ""
    assert report["detected"]["accuracy"] == pytest.approx(8 / 12)  # FER labels unchanged
    files = write_report(report, CLASSES, tmp_path)
    assert tmp_path / "confusion_ferplus.csv" in files
    assert json.loads((tmp_path / "metrics.json").read_text())["ferplus"]["n"] == 10


# ---- multi-input models on a prepared dataset ----------------------------------------------


def write_fusion_dataset(folder: Path, variants: tuple[str, ...] = ("pad",), n_test: int = 11,
                         geometry: bool = True) -> dict[str, np.ndarray]:
    """A tiny prepared dataset: 3 train + ``n_test`` test rows per variant, scores, stored
    landmarks and face crops (bytes), one test image MediaPipe missed. Returns the test rows'
    arrays of the first variant as written."""
    rng = np.random.default_rng(7)
    rows, written = [], {"face": [], "landmarks": [], "blendshapes": []}
    for v, variant in enumerate(variants):
        for i in range(3 + n_test):
            face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            landmarks = rng.normal(0, 0.6, (N_LANDMARKS, 3)).astype(np.float32)
            scores = rng.random(52, dtype=np.float32)
            row = {"image_id": i, "split": "train" if i < 3 else "test",
                   "label": CLASSES[i % 3], "source_label": ["happy", "sad", "fear"][i % 3],
                   "preprocess": variant, "augmented": False,
                   **dict(zip(BLENDSHAPE_NAMES, scores.tolist(), strict=True))}
            if geometry:
                row |= {"landmarks": landmarks.tobytes(), "face": face.tobytes()}
            rows.append(row)
            if v == 0 and i >= 3:
                for key, arr in (("face", face), ("landmarks", landmarks),
                                 ("blendshapes", scores)):
                    written[key].append(arr)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "dataset.parquet")
    pd.DataFrame({"image_id": [99], "split": ["test"], "label": ["sad"], "source_label": ["sad"],
                  "preprocess": [variants[0]]}).to_parquet(folder / "undetected.parquet")
    return {k: np.stack(v) for k, v in written.items()}


@pytest.fixture(scope="module")
def fusion_model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained width-8 fusion model with a calibration: its run folder and its ONNX."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from emotion_estimator.training.fusion.export import export_fusion
    from emotion_estimator.training.fusion.model import FusionDimensions, FusionNet

    torch.manual_seed(0)
    dims = FusionDimensions(width=8)
    model = FusionNet(dims).eval()
    with torch.no_grad():  # spread the untrained head's output so rows get different classes
        model.head[-1].weight.mul_(40.0)
    run = tmp_path_factory.mktemp("evaluate") / "run"
    run.mkdir()
    torch.save({"dims": dims.to_dict(), "state_dict": model.state_dict(),
                "classes": list(CLASSES), "temperature": 0.8, "offsets": [0.2, -0.1, 0.0],
                "config": {}, "metrics": {}}, run / "fusion.pt")
    onnx = run.parent / "fusion.onnx"
    export_fusion(run / "fusion.pt", onnx)
    return run, onnx


def test_fusion_onnx_on_a_dataset_gives_what_predict_inputs_gives(fusion_model,
                                                                  tmp_path) -> None:
    from emotion_estimator.classifier import EmotionClassifier

    run, onnx = fusion_model
    arrays = write_fusion_dataset(tmp_path / "data")
    report = evaluate(onnx, tmp_path / "data", "test", out=tmp_path / "report")
    assert report["preprocess"] == "pad"  # the only variant
    assert report["inputs"] == ["face", "landmarks", "blendshapes"]
    table = report["table"]
    detected = table[table["detected"]]
    assert detected["image_id"].tolist() == list(range(3, 14))
    got = detected[[f"p_{c}" for c in CLASSES]].to_numpy()
    clf = EmotionClassifier.load(onnx)
    want = clf.predict_inputs(arrays)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert len(set(want.argmax(1))) > 1  # the model does tell the rows apart
    assert report["detected"]["n"] == 11 and report["undetected"] == 1
    assert report["with_undetected"]["n"] == 12
    assert {"sad_called_happy", "happy_called_sad"} <= set(report)
    assert (tmp_path / "report" / "confusion_detected.png").is_file()
    # the training run (fusion.pt, torch) gives the same probabilities as its export
    from_run = evaluate(run, tmp_path / "data", "test")["table"]
    np.testing.assert_allclose(
        from_run.loc[from_run["detected"], [f"p_{c}" for c in CLASSES]].to_numpy(), want,
        atol=1e-4)


def test_an_ensemble_folder_is_scored_as_its_export(fusion_model, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from emotion_estimator.classifier import EmotionClassifier
    from emotion_estimator.training.fusion.export import export_fusion

    run, _ = fusion_model
    member = torch.load(run / "fusion.pt", weights_only=False)
    other = {**member, "state_dict": {k: v * 0.5 if v.dtype.is_floating_point else v
                                      for k, v in member["state_dict"].items()}}
    folder = tmp_path / "ens"
    folder.mkdir()
    torch.save({**member, "members": [member, other], "offsets": [0.0, 0.3, 0.0]},
               folder / "ensemble.pt")
    arrays = write_fusion_dataset(tmp_path / "data")
    export_fusion(folder / "ensemble.pt", tmp_path / "ens.onnx")
    want = EmotionClassifier.load(tmp_path / "ens.onnx").predict_inputs(arrays)
    for given in (folder, folder / "ensemble.pt"):
        table = evaluate(given, tmp_path / "data", "test")["table"]
        got = table.loc[table["detected"], [f"p_{c}" for c in CLASSES]].to_numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    single = evaluate(run, tmp_path / "data", "test")["table"]
    assert np.abs(single.loc[single["detected"], [f"p_{c}" for c in CLASSES]].to_numpy()
                  - want).max() > 1e-3  # the second member and the offsets count
    with pytest.raises(InputError, match="ensemble.pt, fusion.pt, model.pt"):
        load_predictor(tmp_path / "data")


def test_predict_inputs_validates_names_shapes_and_dtypes(fusion_model, tmp_path) -> None:
    from emotion_estimator.classifier import EmotionClassifier

    clf = EmotionClassifier.load(fusion_model[1])
    good = write_fusion_dataset(tmp_path / "data", n_test=2)
    assert clf.predict_inputs(good).shape == (2, 3)
    with pytest.raises(InputError, match="takes inputs"):
        clf.predict_inputs({k: v for k, v in good.items() if k != "face"})
    with pytest.raises(InputError, match="shape"):
        clf.predict_inputs({**good, "face": good["face"][:, :40, :40]})
    with pytest.raises(InputError, match="uint8"):
        clf.predict_inputs({**good, "face": good["face"].astype(np.float32)})
    with pytest.raises(InputError, match="different numbers"):
        clf.predict_inputs({**good, "blendshapes": good["blendshapes"][:1]})


def test_a_dataset_without_the_models_inputs_is_refused(fusion_model, tmp_path,
                                                        capsys) -> None:
    write_fusion_dataset(tmp_path / "old", geometry=False)
    predictor = load_predictor(fusion_model[1])
    with pytest.raises(InputError, match="no landmarks, face columns: rebuild"):
        evaluate_frame(predictor, None, read_dataset(tmp_path / "old"))
    assert cli(["evaluate", str(fusion_model[1]), str(tmp_path / "old")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "prepare" in lines[0] and "Traceback" not in lines[0]


def test_preprocess_defaults_to_the_only_variant(fusion_model, tmp_path, capsys) -> None:
    write_fusion_dataset(tmp_path / "one", ("raw",), n_test=3)
    assert cli(["evaluate", str(fusion_model[1]), str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "preprocess raw" in out and "happy faces called sad" in out
    write_fusion_dataset(tmp_path / "two", ("raw", "pad"), n_test=3)
    predictor = load_predictor(fusion_model[1])
    frame = read_dataset(tmp_path / "two")
    with pytest.raises(InputError, match=r"variants \['pad', 'raw'\]"):
        evaluate_frame(predictor, None, frame)
    assert evaluate_frame(predictor, None, frame, preprocess="pad")["preprocess"] == "pad"
    with pytest.raises(InputError, match="no preprocess variant 'flip'"):
        evaluate_frame(predictor, None, frame, preprocess="flip")


def test_shipped_models_resolve_by_name() -> None:
    pytest.importorskip("onnxruntime")
    assert load_predictor("fusion").inputs == ("face", "landmarks", "blendshapes")
    assert load_predictor("blendshapes").inputs == ("blendshapes",)


# ---- operating points, the seven expressions, failure slices (issues 16 and 19) -------------


def _views_frame() -> pd.DataFrame:
    """:func:`_frame` with source labels (one contempt among the unknown rows), mouthSmile
    scores (two smiling sad faces, one called happy) and an expression encoded in score 1."""
    frame = _frame()
    frame["source_label"] = (["happy"] * 4 + ["sad"] * 4 + ["angry", "disgust", "contempt",
                                                            "surprise"] + ["sad", "happy"])
    frame.loc[:11, "mouthSmileLeft"] = [0.9, 0.8, 0.7, 0.1, 0.6, 0.1, 0.5, 0.0,
                                        0.0, 0.0, 0.0, 0.0]
    frame.loc[:11, "mouthSmileRight"] = frame.loc[:11, "mouthSmileLeft"]
    # the expression each detected row is called (index into EXPRESSIONS)
    frame.loc[:11, BLENDSHAPE_NAMES[1]] = [1, 1, 1, 0, 2, 2, 1, 0, 3, 1, 0, 4]
    return frame


def _views_predictor(points: dict | None = None):
    from emotion_estimator.expressions import EXPRESSIONS
    from emotion_estimator.training.evaluate import Predictor

    order = list(reversed(EXPRESSIONS))  # a model may list its expressions in any order

    def views(arrays):
        x = arrays["blendshapes"]
        expr = np.eye(7, dtype=np.float32)[x[:, 1].astype(int)] * 0.9 + 0.1 / 7
        return _predict(x), expr[:, [EXPRESSIONS.index(n) for n in order]]

    return Predictor(CLASSES, ("blendshapes",), lambda a: views(a)[0], "toy", views,
                     tuple(order), points or {})


def test_operating_points_move_predictions_and_unknown_names_are_refused() -> None:
    points = {"balanced": dict.fromkeys(CLASSES, 0.0),
              "sad-sensitive": {"happy": 0.0, "sad": 3.0, "unknown": 0.0}}
    frame = _views_frame()
    base = evaluate_frame(_views_predictor(points), None, frame, "test", "raw")
    sens = evaluate_frame(_views_predictor(points), None, frame, "test", "raw",
                          operating_point="sad-sensitive")
    assert base["operating_point"] == "balanced"
    assert base["operating_points"] == ["balanced", "sad-sensitive"]
    assert base["detected"]["confusion"] == [[3, 0, 1], [1, 2, 1], [0, 1, 3]]
    # log 0.933 vs log 0.033 + 3: the offset is not enough to beat a confident other class
    assert sens["detected"]["confusion"] == base["detected"]["confusion"]
    strong = {**points, "sad-sensitive": {"happy": 0.0, "sad": 4.0, "unknown": 0.0}}
    sens = evaluate_frame(_views_predictor(strong), None, frame, "test", "raw",
                          operating_point="sad-sensitive")
    assert sens["detected"]["confusion"] == [[0, 4, 0], [0, 4, 0], [0, 4, 0]]
    with pytest.raises(InputError, match="unknown operating point 'nope'; this model has: "
                                         "balanced, sad-sensitive"):
        evaluate_frame(_views_predictor(points), None, frame, "test", "raw", "nope")
    with pytest.raises(InputError, match="has: balanced$"):  # no stored points: balanced only
        evaluate_frame(_predict, CLASSES, frame, "test", "raw", "sad-sensitive")


def test_seven_expressions_scored_against_source_labels() -> None:
    report = evaluate_frame(_views_predictor(), None, _views_frame(), "test", "raw")
    view = report["expressions"]
    assert view["left_out"] == {"contempt": 1}
    found = view["detected"]
    # truth (EXPRESSIONS order: neu hap sad ang sur dis fea): hap x4, sad x4, ang, dis, sur
    assert found["n"] == 11 and found["no_face"] == 0
    assert found["confusion"][1][:3] == [1, 3, 0]  # happy: 3 right, 1 called neutral
    assert found["confusion"][2][:3] == [1, 1, 2]  # sad: 2 right, 1 happy, 1 neutral
    assert found["accuracy"] == pytest.approx(7 / 11)  # 3 happy, 2 sad, angry, surprise
    # the two missed images (sad, happy) count as wrong in the view over all images
    every = view["with_undetected"]
    assert every["n"] == 13 and every["no_face"] == 2 and view["undetected"] == 2
    assert every["accuracy"] == pytest.approx(7 / 13)
    assert [row[-1] for row in every["confusion"]][1:3] == [1, 1]
    table = report["table"].set_index("image_id")
    assert table.loc[100, "expression"] == "happy" and table.loc[100, "truth_expression"] == \
        "happy"
    assert table.loc[110, "truth_expression"] == ""  # contempt: no expression


def test_failure_slices_count_smiling_sad_faces_and_rough_faces_called_happy() -> None:
    slices = evaluate_frame(_views_predictor(), None, _views_frame(), "test", "raw")["slices"]
    # sad rows 104..107 call [1, 1, 0, 2]; smiles [.6, .1, .5, 0]: 104 (sad) and 106 (happy)
    assert slices["smile_sad"] == {"n": 2, "sad_recall": 0.5, "sad_to_happy": 0.5}
    # angry (108, called unknown) and disgust (109, unknown): none called happy
    assert slices["angry_disgusted"] == {"n": 2, "called_happy": 0.0}


def test_expression_metrics_count_a_missed_face_as_wrong_but_not_as_a_class() -> None:
    from emotion_estimator.training.expression_eval import NO_FACE, expression_metrics

    y = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 6])
    pred = np.array([0, NO_FACE, 1, 0, 2, 3, 4, 5, 6, NO_FACE])
    m = expression_metrics(y, pred)
    assert m["accuracy"] == pytest.approx(7 / 10) and m["no_face"] == 2
    assert len(m["confusion"]) == 7 and len(m["confusion"][0]) == 8
    assert m["per_class"]["neutral"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["neutral"]["recall"] == pytest.approx(0.5)
    # macro F1 over the seven only: neutral 1/2, happy 2/3, fearful 2/3, the others 1
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 1 + 1 + 1 + 2 / 3) / 7)
    with pytest.raises(ValueError):
        expression_metrics(np.array([0, 7]), np.array([0, 0]))


def test_source_labels_and_ferplus_votes_map_to_the_seven() -> None:
    from emotion_estimator.training.expression_eval import expression_labels
    from emotion_estimator.training.ferplus import (
        FERPLUS_EMOTIONS,
        NON_EMOTIONS,
        majority_expressions,
    )

    # FER2013 codes, FER2013 names, muxspace folder names, contempt
    got = expression_labels([0, 1, 2, 5, 6, "Happiness", "sadness", "anger", "contempt"])
    assert got.tolist() == [3, 5, 6, 4, 0, 1, 2, 3, -1]
    votes = pd.DataFrame(0, index=range(5), columns=[*FERPLUS_EMOTIONS, *NON_EMOTIONS])
    votes.loc[0, ["surprise", "fear"]] = [6, 4]     # surprised
    votes.loc[1, ["disgust", "anger"]] = [5, 5]     # tie: none
    votes.loc[2, ["contempt", "neutral"]] = [6, 4]  # contempt: none
    votes.loc[3, ["NF", "happiness"]] = [6, 4]      # not a face: none
    votes.loc[4, ["disgust", "anger"]] = [6, 4]     # disgusted
    y, dropped = majority_expressions(votes)
    assert y.tolist() == [4, -1, -1, -1, 5]
    assert dropped == {"not_face_or_unknown": 1, "tie": 1, "contempt": 1}


@pytest.fixture(scope="module")
def fusion_views_model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained fusion model with the 7-way head and a sad-sensitive point, exported."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from emotion_estimator.training.fusion.data import FINE_CLASSES
    from emotion_estimator.training.fusion.export import export_fusion
    from emotion_estimator.training.fusion.model import FusionDimensions, FusionNet

    torch.manual_seed(1)
    dims = FusionDimensions(width=8, n_fine=7, fine_hidden=8)
    model = FusionNet(dims).eval()
    with torch.no_grad():
        model.head[-1].weight.mul_(40.0)
    run = tmp_path_factory.mktemp("views") / "run"
    run.mkdir()
    torch.save({"dims": dims.to_dict(), "state_dict": model.state_dict(),
                "classes": list(CLASSES), "temperature": 0.8, "offsets": [0.2, -0.1, 0.0],
                "fine_classes": list(FINE_CLASSES), "fine_temperature": 0.5,
                "operating_points": {"balanced": dict.fromkeys(CLASSES, 0.0),
                                     "sad-sensitive": {"happy": 0.0, "sad": 1.5,
                                                       "unknown": 0.0}},
                "config": {}, "metrics": {}}, run / "fusion.pt")
    onnx = run.parent / "fusion.onnx"
    export_fusion(run / "fusion.pt", onnx)
    return run, onnx


def test_a_model_with_the_view_is_scored_on_the_seven_from_onnx_and_run(
        fusion_views_model, tmp_path, capsys) -> None:
    from emotion_estimator.classifier import (
        EmotionClassifier,
        apply_operating_point,
        operating_point_offsets,
    )
    from emotion_estimator.expressions import EXPRESSIONS

    run, onnx = fusion_views_model
    arrays = write_fusion_dataset(tmp_path / "data")
    report = evaluate(onnx, tmp_path / "data", "test", out=tmp_path / "r",
                      operating_point="sad-sensitive")
    clf = EmotionClassifier.load(onnx)
    p, e = clf.predict_views(arrays)
    want = apply_operating_point(p, operating_point_offsets(clf, "sad-sensitive"))
    table = report["table"][report["table"]["detected"]]
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASSES]].to_numpy(), want, atol=1e-6)
    got7 = table[[f"expr_{n}" for n in EXPRESSIONS]].to_numpy()
    np.testing.assert_allclose(got7, e[:, [clf.expressions.index(n) for n in EXPRESSIONS]],
                               atol=1e-6)
    view = report["expressions"]
    assert view["detected"]["n"] == 11 and view["with_undetected"]["no_face"] == 1
    assert (tmp_path / "r" / "confusion_expressions_detected.csv").is_file()
    # the training run computes what its export computes, points and view included
    from_run = evaluate(run, tmp_path / "data", "test", operating_point="sad-sensitive")
    assert from_run["expressions"]["detected"] == view["detected"]
    assert from_run["detected"]["confusion"] == report["detected"]["confusion"]
    assert cli(["evaluate", str(onnx), str(tmp_path / "data"), "--operating-point",
                "sad-sensitive"]) == 0
    out = capsys.readouterr().out
    assert "operating point sad-sensitive (of balanced, sad-sensitive)" in out
    assert "7 expr, all" in out and "smile-shaped sad faces" in out
    assert cli(["evaluate", str(onnx), str(tmp_path / "data"), "--operating-point",
                "cautious"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "balanced, sad-sensitive" in err[0]
