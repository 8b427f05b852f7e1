"""The benchmark harness's own logic: 7 -> 3 folding, metrics, tables, files, the CLI wrapper.

Fast and offline: the peer (fer, TensorFlow) and the heavy runs are not exercised here.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_accuracy  # noqa: E402
import bench_speed  # noqa: E402
import benchlib  # noqa: E402

from emotion_estimator import BLENDSHAPE_NAMES  # noqa: E402
from emotion_estimator.cli import cli  # noqa: E402


def test_fold7_maps_every_fer2013_code():
    # 0 angry 1 disgust 2 fear 3 happy 4 sad 5 surprise 6 neutral
    folded = benchlib.fold7(np.arange(7))
    names = [benchlib.CLASSES3[i] for i in folded]
    assert names == ["unknown", "unknown", "unknown", "happy", "sad", "unknown", "unknown"]
    with pytest.raises(ValueError):
        benchlib.fold7(np.array([3, 7]))


def test_fold_proba_keeps_mass_and_can_disagree_with_argmax_fold():
    p7 = np.array([[0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0],
                   # happy is the single largest class, yet the five others outweigh it
                   [0.15, 0.1, 0.1, 0.3, 0.05, 0.1, 0.2]])
    p3 = benchlib.fold_proba(p7)
    np.testing.assert_allclose(p3.sum(axis=1), 1.0)
    np.testing.assert_allclose(p3[0], [0.9, 0.1, 0.0])
    assert benchlib.fold7(p7.argmax(axis=1)).tolist() == [0, 0]
    assert p3.argmax(axis=1).tolist() == [0, 2]
    with pytest.raises(ValueError):
        benchlib.fold_proba(np.zeros((2, 3)))


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 3, 500))
    pred[pred == 1] = 2  # class 1 never predicted: its F1 is 0, not NaN
    m = benchlib.metrics(y, pred)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["confusion"] == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    assert m["f1"][1] == 0.0


def test_markdown_table_format():
    text = benchlib.markdown_table(["method", "acc", "note"],
                                   [["a|b", 0.123456, None], ["c", 1, "x"]])
    lines = text.splitlines()
    assert lines[0] == "| method | acc | note |"
    assert lines[1] == "| :--- | ---: | :--- |"
    assert lines[2] == "| a\\|b | 0.1235 | – |"
    assert all(line.count(" | ") == 2 for line in lines)
    with pytest.raises(ValueError):
        benchlib.markdown_table(["a", "b"], [[1]])


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "r.md"
    benchlib.write_atomic(target, "old")
    benchlib.write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["r.md"]
    assert target.stat().st_mode & stat.S_IRGRP  # not mkstemp's private 0600


def test_write_atomic_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "r.json"
    benchlib.write_atomic(target, "old")
    with pytest.raises(TypeError):
        benchlib.write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _table() -> pd.DataFrame:
    rows = []
    for pre in ("raw", "pad"):
        for image_id, augmented in ((10, False), (10, True), (11, False)):
            value = image_id + (0.5 if augmented else 0) + (100 if pre == "pad" else 0)
            scores = np.full(52, value)
            rows.append({"image_id": image_id, "preprocess": pre, "augmented": augmented,
                         **dict(zip(BLENDSHAPE_NAMES, scores, strict=True))})
    return pd.DataFrame(rows)


def test_test_matrix_picks_variant_skips_augmented_and_marks_missing():
    x = bench_accuracy.test_matrix(_table(), np.array([11, 12, 10]), "pad")
    assert x.shape == (3, 52)
    assert np.all(x[0] == 111) and np.all(x[2] == 110)  # un-augmented pad rows only
    assert np.isnan(x[1]).all()  # id 12 has no row: no face


def test_predict_or_unknown_sends_faceless_rows_to_unknown():
    x = np.array([[0.0] * 52, [np.nan] * 52, [1.0] * 52], dtype=np.float32)
    seen = []

    def proba(v):
        seen.append(len(v))
        return np.tile([0.1, 0.8, 0.1], (len(v), 1))  # always "sad"

    pred = bench_accuracy.predict_or_unknown(proba, x)
    assert [benchlib.CLASSES3[i] for i in pred] == ["sad", "unknown", "sad"]
    assert seen == [2]  # the classifier never sees the NaN row


def test_speed_summary_ratio_uses_medians_per_tool():
    def run(tool, fps):
        return {"tool": tool, "clip": "/m/a.mp4", "fps": fps, "load_s": 1.0,
                "cpu_ms_per_frame": 1000 / fps, "peak_rss_mb": fps, "frames": 10,
                "frames_with_face": 9}

    runs = [run("emotion-estimator", 30), run("fer", 5), run("emotion-estimator", 10),
            run("fer", 10), run("emotion-estimator", 20), run("fer", 6)]
    row = bench_speed.summarise(runs)["a.mp4"]
    assert row["emotion-estimator"]["fps_median"] == 20
    assert row["fer"]["fps_median"] == 6
    assert row["ratio_median_fps"] == pytest.approx(20 / 6)
    assert row["ratio_per_pair"] == [6.0, 1.0, 3.33]
    assert row["ratio_cpu"] == pytest.approx((1000 / 6) / (1000 / 20))
    assert row["fer"]["peak_rss_mb"] == 10


def test_cli_bench_reports_missing_input_in_one_line(tmp_path, capfd):
    code = cli(["bench", "accuracy", "--skip-fer", "--csv", str(tmp_path / "no.csv.gz")])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "FER2013 not found" in err[0]


def test_installed_size_follows_dependencies_and_aliases():
    pluggy = benchlib.installed_mb("pluggy")
    pytest_total = benchlib.installed_mb("pytest")  # pytest requires pluggy
    assert pluggy["packages"] == 1 and pluggy["total_mb"] > 0
    assert pytest_total["packages"] > pluggy["packages"]
    assert pytest_total["total_mb"] > pluggy["total_mb"]
    assert benchlib.installed_mb("no-such-dist-xyz")["packages"] == 0
    aliased = benchlib.installed_mb("no-such-dist-xyz", {"no-such-dist-xyz": "pluggy"})
    assert aliased["total_mb"] == pluggy["total_mb"]


def test_headline_picks_raw_row_and_fer_variants():
    import headline

    def row(method, kind, acc, **extra):
        return {"method": method, "kind": kind, "accuracy": acc, "macro_f1": acc - 0.1, **extra}

    acc = {"command": "a", "created": "t", "model": "/m/x.onnx", "model_trained": True,
           "results": [row("ours pad", "ours", 0.9, preprocess="pad", face_found=0.9),
                       row("ours raw", "ours", 0.7, preprocess="raw", face_found=0.8),
                       row("fer, summed fold", "fer", 0.1, variant="tflite:api"),
                       row("fer", "fer", 0.6, variant="tflite:api"),
                       row("fer tight", "fer", 0.8, variant="tflite:tight")]}
    video = {"fps_median": 30.0, "cpu_ms_per_frame_median": 10.0, "peak_rss_mb": 300.0}
    speed = {"machine": "m", "command": "s", "created": "t", "reps": 3,
             "video": {"a.mp4": {"emotion-estimator": video, "fer": video,
                                 "ratio_median_fps": 1.0, "ratio_cpu": 1.0}},
             "latency": {"ours": {"onnx": {"median_ms": 0.04}},
                         "fer": {"tflite": {"median_ms": 0.4}}},
             "info": {t: {"parameters": 1, "installed": {"total_mb": 1.0}}
                      for t in ("ours", "fer")}}
    text = headline.headline(acc, speed)
    assert "| FER2013 PrivateTest accuracy, 3 classes | 0.700 | 0.600 (0.800 tight crop) |" in text
    assert "(raw)" in text and "20.0% of the images" in text


@pytest.mark.parametrize(("error", "code"), [(FileNotFoundError("x.csv"), 2),
                                             (RuntimeError("boom\nmore"), 1)])
def test_guarded_turns_errors_into_one_line(error, code, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        benchlib.guarded(main)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "more" not in err[0]
