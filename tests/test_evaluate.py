"""Evaluation maths on hand-made predictions, undetected images, report files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES  # noqa: E402
from emotion_estimator.training.evaluate import evaluate_frame, write_report  # noqa: E402
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
