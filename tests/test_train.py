"""Training: determinism, resume, ONNX export agreement, metadata round trip, end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES  # noqa: E402
from emotion_estimator.classifier import EmotionClassifier  # noqa: E402
from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.training.data import PAPER_27  # noqa: E402
from emotion_estimator.training.evaluate import load_predictor  # noqa: E402
from emotion_estimator.training.export import export  # noqa: E402
from emotion_estimator.training.train import TrainConfig, train  # noqa: E402

CLASSES = ("happy", "sad", "unknown")


def synthetic(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Rows of the dataset schema where a smile means happy and a frown means sad."""
    rng = np.random.default_rng(seed)
    label = rng.choice(CLASSES, n, p=[0.3, 0.3, 0.4])
    x = rng.beta(0.5, 4, size=(n, 52)).astype(np.float32)
    x[label == "happy", BLENDSHAPE_NAMES.index("mouthSmileLeft")] += 0.6
    x[label == "sad", BLENDSHAPE_NAMES.index("browInnerUp")] += 0.6
    frame = pd.DataFrame(np.clip(x, 0, 1), columns=list(BLENDSHAPE_NAMES))
    frame.insert(0, "preprocess", "raw")
    frame.insert(0, "label", label)
    frame.insert(0, "split", rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2]))
    frame.insert(0, "image_id", np.arange(n))
    return frame


def config(**kw) -> TrainConfig:
    base = dict(preprocess=("raw",), hidden=8, layers=1, epochs=2, patience=5, lr=1e-2,
                blendshapes="all")
    return TrainConfig(**{**base, **kw})


def quiet(_line: str) -> None:
    pass


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    frame = synthetic()
    a = train(config(seed=3), frame=frame, log=quiet).checkpoint.state_dict
    b = train(config(seed=3), frame=frame, log=quiet).checkpoint.state_dict
    c = train(config(seed=4), frame=frame, log=quiet).checkpoint.state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resumed_run_equals_uninterrupted_run(tmp_path) -> None:
    frame = synthetic()
    straight = train(config(epochs=4, patience=99), tmp_path / "a", frame=frame, log=quiet)
    train(config(epochs=2, patience=99), tmp_path / "b", frame=frame, log=quiet)
    resumed = train(config(epochs=4, patience=99), tmp_path / "b", frame=frame, resume=True,
                    log=quiet)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    s, r = straight.checkpoint.state_dict, resumed.checkpoint.state_dict
    assert all(torch.equal(s[k], r[k]) for k in s)
    assert {"model.pt", "history.csv", "curves.png", "metrics.json"} <= {
        p.name for p in (tmp_path / "b").iterdir()}


@pytest.mark.parametrize("kind", ["lstm", "dense"])
def test_export_agrees_with_torch_and_round_trips_metadata(tmp_path, kind: str) -> None:
    frame = synthetic()
    result = train(config(kind=kind, blendshapes="paper27"), tmp_path / "run", frame=frame,
                   log=quiet)
    meta = export(result.checkpoint, tmp_path / "m.onnx")
    assert meta["onnx_torch_max_abs_diff"] <= 1e-5
    clf = EmotionClassifier.load(tmp_path / "m.onnx")
    assert clf.classes == CLASSES
    assert clf.blendshapes == PAPER_27
    assert clf.metadata == json.loads((tmp_path / "m.json").read_text())
    np.testing.assert_allclose(clf.metadata["normalization"]["mean"], result.checkpoint.mean)
    assert clf.metadata["temperature"] == result.checkpoint.temperature
    x = np.random.default_rng(1).random((64, 52), dtype=np.float32)
    torch_predict = load_predictor(tmp_path / "run")
    assert torch_predict.inputs == ("blendshapes",)
    np.testing.assert_allclose(clf.predict_proba(x), torch_predict({"blendshapes": x}), atol=1e-5)


def test_training_beats_majority_on_real_fer_rows(fer_csv, landmarker_model, tmp_path) -> None:
    """A few hundred real FER2013 images -> blendshapes -> a few epochs -> beats majority."""
    from emotion_estimator.blendshapes import FaceLandmarker

    rows = pd.read_csv(fer_csv, nrows=700)
    emotions = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    scores, keep = [], []
    with FaceLandmarker(landmarker_model) as lm:
        for i, pixels in enumerate(rows["pixels"]):
            faces = lm.detect(np.array(pixels.split(), dtype=np.uint8).reshape(48, 48))
            if faces:
                scores.append(faces[0].scores)
                keep.append(i)
    frame = pd.DataFrame(np.stack(scores), columns=list(BLENDSHAPE_NAMES))
    source = rows["emotion"].to_numpy()[keep]
    frame.insert(0, "preprocess", "raw")
    frame.insert(0, "label", [e if e in ("happy", "sad") else "unknown"
                              for e in np.array(emotions)[source]])
    split = np.where(np.arange(len(keep)) % 5 == 0, "val", "train")
    split[np.arange(len(keep)) % 5 == 1] = "test"
    frame.insert(0, "split", split)
    frame.insert(0, "image_id", keep)
    result = train(config(epochs=15, patience=15, hidden=16, layers=1, lr=1e-2,
                          class_weights=False, blendshapes="all"), frame=frame, log=quiet)
    from emotion_estimator.training.evaluate import evaluate_frame

    export(result.checkpoint, tmp_path / "m.onnx")
    clf = EmotionClassifier.load(tmp_path / "m.onnx")
    report = evaluate_frame(clf.predict_proba, clf.classes, frame, "test", "raw")
    test_labels = frame.loc[frame["split"] == "test", "label"]
    majority = test_labels.value_counts(normalize=True).max()
    assert report["detected"]["accuracy"] > majority + 0.05


def test_cli_bad_inputs_exit_2(tmp_path, capsys) -> None:
    assert cli(["train", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "r")]) == 2
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert cli(["train", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "r")]) == 2
    assert cli(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("emotion-estimator: error:") == 3
    assert "Traceback" not in err


def test_tune_stores_trials_and_resumes(tmp_path) -> None:
    pytest.importorskip("optuna")
    from emotion_estimator.training.tune import tune

    path = tmp_path / "synthetic.parquet"
    synthetic(400).to_parquet(path)
    base = config(dataset=str(path), kind="dense", epochs=2)
    first = tune(base, tmp_path / "study", trials=2)
    again = tune(base, tmp_path / "study", trials=1)
    assert first["trials"] == 2 and again["trials"] == 3
    assert (tmp_path / "study" / "study.db").is_file()
    best = json.loads((tmp_path / "study" / "best.json").read_text())
    assert 0 < best["best_value"] <= 1
    assert {"lr", "layers", "hidden", "loss", "class_weights"} <= set(best["best_params"])
