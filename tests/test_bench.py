"""The benchmark harness's own logic: 7 -> 3 folding, metrics, tables, files, the CLI wrapper.

Fast and offline: the peer (fer, TensorFlow) and the heavy runs are not exercised here.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_accuracy  # noqa: E402
import bench_speed  # noqa: E402
import benchlib  # noqa: E402

from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.expressions import EXPRESSIONS  # noqa: E402


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


def test_metrics_give_recall_and_the_two_crossing_rates():
    # truth: 4 happy, 5 sad, 1 unknown
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 0, 0, 1, 1, 2, 2])
    m = benchlib.metrics(y, pred)
    assert m["recall"] == pytest.approx([0.75, 0.4, 1.0])
    assert m["sad_to_happy"] == pytest.approx(2 / 5)
    assert m["happy_to_sad"] == pytest.approx(1 / 4)
    assert "sad_to_happy" not in benchlib.metrics([0, 1], [1, 1], n_classes=2)


def test_ferplus_labels_fold_votes_and_drop_non_faces_and_ties(tmp_path):
    cols = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
            "contempt", "unknown", "NF"]
    votes = [[0, 6, 0, 2, 0, 0, 0, 0, 2, 0],   # happy
             [3, 4, 3, 0, 0, 0, 0, 0, 0, 0],   # folded: unknown 6 > happy 4
             [0, 0, 0, 7, 0, 0, 0, 0, 3, 0],   # sad
             [0, 2, 0, 0, 0, 0, 0, 0, 2, 6],   # not a face: dropped
             [0, 5, 0, 5, 0, 0, 0, 0, 0, 0],   # tie: dropped
             [0, 0, 0, 0, 0, 0, 0, 0, 10, 0]]  # all unknown: dropped
    path = tmp_path / "ferplus.csv"
    pd.DataFrame(votes, columns=cols).assign(Usage="PrivateTest").to_csv(path, index=False)
    y, dropped = bench_accuracy.ferplus_labels(path, np.arange(6))
    assert y.tolist() == [0, 2, 1, -1, -1, -1]
    assert dropped == {"not_face_or_unknown": 2, "tie": 1}
    y, _ = bench_accuracy.ferplus_labels(path, np.array([2, 0]))  # by FER2013 row number
    assert y.tolist() == [1, 0]


def test_subsample_is_seeded_sorted_and_whole_without_limit():
    assert bench_accuracy.subsample(5, None).tolist() == [0, 1, 2, 3, 4]
    assert bench_accuracy.subsample(5, 9).tolist() == [0, 1, 2, 3, 4]
    part = bench_accuracy.subsample(1000, 10)
    assert len(set(part)) == 10 and part.tolist() == sorted(part)
    assert part.tolist() == bench_accuracy.subsample(1000, 10).tolist()


def test_cache_computes_only_what_is_missing(tmp_path):
    calls = []

    def compute(ids):
        calls.append(ids.tolist())
        return pd.DataFrame({"image_id": ids, "v": ids * 10})

    cache = tmp_path / "c.csv"
    first = bench_accuracy.cached(cache, np.array([3, 1]), ["image_id", "v"], compute, False)
    assert first["image_id"].tolist() == [3, 1] and first["v"].tolist() == [30, 10]
    again = bench_accuracy.cached(cache, np.array([1, 2, 3]), ["image_id", "v"], compute, False)
    assert again["v"].tolist() == [10, 20, 30]
    assert calls == [[1, 3], [2]]
    bench_accuracy.cached(cache, np.array([1]), ["image_id", "v"], compute, True)
    assert calls[-1] == [1]  # recomputed; the other rows stay cached
    assert pd.read_csv(cache)["image_id"].tolist() == [1, 2, 3]


def test_bench_accuracy_end_to_end_on_tiny_data(tmp_path, media, landmarker_model,
                                                monkeypatch, capsys):
    """Tiny FER2013 + a 2-photo folder through the real runtime, fer skipped."""
    rng = np.random.default_rng(0)
    rows = [{"emotion": e, "pixels": " ".join(map(str, rng.integers(0, 255, 48 * 48))),
             "Usage": u} for e, u in ((3, "Training"), (4, "PrivateTest"), (6, "PrivateTest"))]
    csv = tmp_path / "fer.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    folder = tmp_path / "photos"
    (folder / "happiness").mkdir(parents=True)
    (folder / "neutral").mkdir()
    (folder / "happiness" / "face.jpg").write_bytes((media / "single_face.jpg").read_bytes())
    cv2.imwrite(str(folder / "neutral" / "blank.png"), np.zeros((64, 64, 3), np.uint8))
    (folder / "neutral" / "broken.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(bench_accuracy, "RUNS", tmp_path / "runs")
    out = tmp_path / "out"
    code = bench_accuracy.main(["--csv", str(csv), "--folder", str(folder), "--skip-fer",
                                "--ferplus", str(tmp_path / "absent.csv"), "--out", str(out)])
    assert code == 0
    report = json.loads((out / "accuracy.json").read_text())
    # noise crops: MediaPipe finds no face, so there is no "detected" table
    assert set(report["sets"]) == {"fer2013", "photos", "photos_both"}
    fer = report["sets"]["fer2013"]
    assert fer["n"] == 2 and fer["class_counts"] == [0, 1, 1]
    photos = report["sets"]["photos"]["rows"][0]
    assert photos["n"] == 2 and photos["face_found"] == 0.5  # the blank image has no face
    assert report["results"][0]["kind"] == "ours"  # the layout headline.py reads
    assert (out / "accuracy.md").is_file() and (out / "confusion.png").is_file()
    key = f"ours-{bench_accuracy.CACHE_VERSION}-faces{bench_accuracy.FACES_VERSION}"
    assert len(list((tmp_path / "runs").glob(f"{key}_*.csv"))) == 2  # predictions cached
    cache = pd.read_csv(next((tmp_path / "runs").glob(f"{key}_photos*.csv")))
    smile = cache.set_index("faces")[["mouthSmileLeft", "mouthSmileRight"]]
    assert smile.loc[1].between(0, 1).all() and smile.loc[0].isna().all()  # face / none
    # one MediaPipe pass per set, cached apart from the model, gives what analyze_image gives
    assert len(list((tmp_path / "runs").glob("faces-*.npz"))) == 2
    from emotion_estimator import EmotionEstimator

    (face,) = EmotionEstimator(max_faces=1).analyze_image(media / "single_face.jpg")
    row = cache[cache["faces"] == 1].iloc[0]
    assert row["label"] == face.label
    np.testing.assert_allclose([row[f"p_{c}"] for c in benchlib.CLASSES3],
                               [face.raw_probabilities[c] for c in benchlib.CLASSES3],
                               atol=1e-6)
    # every operating point of the model is a row of every table, from the same cache
    points = list(report["models"][0]["operating_points"])
    assert [r.get("point") for r in report["sets"]["photos"]["rows"]] == points
    assert set(report["slices"]) == {"fer2013", "photos", "combined"}
    assert report["slices"]["combined"]["rows"][0]["angry_disgusted"]["n"] == 0
    if report["models"][0]["expressions"]:  # a model with the seven: one row per set
        assert report["sets7"]["photos"]["rows"][0]["n"] == 2
    else:
        assert report["sets7"] == {} and "no expression view" in (out / "accuracy.md").read_text()
    assert "## Failure slices" in (out / "accuracy.md").read_text()
    assert [b["reason"] for b in report["data"]["folder"]["bad_images"]] == [
        "not a decodable image"]
    assert "broken.jpg (not a decodable image)" in (out / "accuracy.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # predictions now come from the cache
        benchlib.guarded(lambda: bench_accuracy.main([
            "--csv", str(csv), "--folder", str(folder), "--skip-fer", "--on-bad-image", "stop",
            "--out", str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].endswith("broken.jpg: not a decodable image")


def _model(points: dict, expressions: bool) -> dict:
    return {"name": "toy", "kind": "fusion", "operating_points": points,
            "expressions": list(EXPRESSIONS) if expressions else []}


def _table(p: list, faces: list) -> pd.DataFrame:
    table = pd.DataFrame(p, columns=[f"p_{c}" for c in benchlib.CLASSES3])
    table["faces"] = faces
    expr = np.full((len(p), 7), np.nan)
    expr[np.asarray(faces) > 0] = np.eye(7)[[1, 3, 2][:int(np.sum(faces))]]
    for i, e in enumerate(EXPRESSIONS):
        table[f"expr_{e}"] = expr[:, i]
    return table


def test_every_operating_point_is_a_method_from_the_cached_probabilities():
    zero = dict.fromkeys(benchlib.CLASSES3, 0.0)
    points = {"balanced": zero, "sad-sensitive": {**zero, "sad": 1.0}}
    table = _table([[0.6, 0.2, 0.2], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [np.nan] * 3],
                   [1, 1, 1, 0])
    methods = bench_accuracy.ours_methods([_model(points, True)], {"toy": table})
    assert [m.name for m in methods] == ["ours: toy (fusion)", "ours: toy@sad-sensitive (fusion)"]
    balanced, sensitive = methods
    assert balanced.pred.tolist() == [0, 2, 1, 2]  # argmax; no face = unknown
    # log p + 1 on sad: 0.2e < 0.6 stays happy; 0.3e > 0.6 turns sad
    assert sensitive.pred.tolist() == [0, 1, 1, 2]
    assert balanced.pred7.tolist() == [1, 3, 2, -1] and sensitive.pred7 is None
    assert balanced.found.tolist() == [True, True, True, False]
    without = bench_accuracy.ours_methods([_model({"balanced": zero}, False)], {"toy": table})
    assert len(without) == 1 and without[0].pred7 is None


def test_fer_method_folds_to_three_and_maps_fer_names_to_the_seven():
    p7 = np.zeros((3, 7))
    p7[0, benchlib.FER7.index("disgust")] = 1
    p7[1, benchlib.FER7.index("sad")] = 1
    m = bench_accuracy.fer_method("fer", p7, np.array([True, True, False]), "fer")
    assert m.pred.tolist() == [2, 1, 2]
    assert [EXPRESSIONS[i] if i >= 0 else None for i in m.pred7] == ["disgusted", "sad", None]


def test_slices_per_set_and_combined_by_method_family():
    def images(y, y7):
        return bench_accuracy.ImageSet("s", "k", np.arange(len(y)), np.array(y), lambda i: None,
                                       y7=np.array(y7))

    sad, angry, happy = EXPRESSIONS.index("sad"), EXPRESSIONS.index("angry"), 1
    a = images([1, 1, 2, 0], [sad, sad, angry, happy])
    b = images([1, 2], [sad, EXPRESSIONS.index("disgusted")])
    method = bench_accuracy.Method
    ma = [method("ours: x", "ours", np.array([0, 1, 0, 0]), np.ones(4, bool), family="x")]
    mb = [method("ours: x", "ours", np.array([1, 2]), np.ones(2, bool), family="x"),
          method("fer (its Haar detection)", "fer", np.array([1, 2]), np.ones(2, bool),
                 family="fer")]
    smile_a, smile_b = np.array([0.9, 0.2, 0.5, 0.8]), np.array([0.35, np.nan])
    one = bench_accuracy.slice_rows("a", a, ma, smile_a)["rows"][0]
    assert one["smile_sad"] == {"n": 1, "sad_recall": 0.0, "sad_to_happy": 1.0}
    assert one["angry_disgusted"] == {"n": 1, "called_happy": 1.0}
    both = bench_accuracy.combined_slices([(a, ma, smile_a), (b, mb, smile_b)])
    assert [r["method"] for r in both["rows"]] == ["x"]  # fer is not in both sets here
    row = both["rows"][0]
    assert row["smile_sad"] == {"n": 2, "sad_recall": 0.5, "sad_to_happy": 0.5}
    assert row["angry_disgusted"] == {"n": 2, "called_happy": 0.5}


def test_seven_expression_view_counts_a_missed_face_wrong_and_leaves_out_contempt():
    y7 = np.array([0, 1, 2, -1])  # the last: contempt
    method = bench_accuracy.Method
    methods = [method("ours", "ours", np.zeros(4, int), np.array([1, 1, 0, 1], bool),
                      pred7=np.array([0, 1, -1, 1])),
               method("no view", "ours", np.zeros(4, int), np.ones(4, bool))]
    table = bench_accuracy.view7("t", y7, methods, np.ones(4, bool), "")
    assert table["n"] == 3 and [r["method"] for r in table["rows"]] == ["ours"]
    row = table["rows"][0]
    assert row["accuracy"] == pytest.approx(2 / 3) and row["no_face"] == 1
    assert row["face_found"] == pytest.approx(2 / 3)
    assert bench_accuracy.view7("t", y7, methods[1:], np.ones(4, bool), "") is None


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


@pytest.mark.parametrize(("options", "message"), [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--folder", "/no/such/folder"], "labelled folder not found")])
def test_bench_accuracy_bad_options_exit_2_in_one_line(options, message, fer_csv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_accuracy.main(["--skip-fer", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and message in err[0]


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
             "video_model": "fusion",
             "latency": {"ours": {"fusion": {"onnx": {"median_ms": 0.04},
                                             "predict_faces": {"median_ms": 0.3}}},
                         "fer": {"tflite": {"median_ms": 0.4}}},
             "info": {"ours": {"models": {"fusion": {"parameters": 1}},
                               "installed": {"total_mb": 1.0}},
                      "fer": {"parameters": 1, "installed": {"total_mb": 1.0}}}}
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
