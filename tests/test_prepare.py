"""``prepare`` end to end on a few real FER2013 rows: the dataset contract, undetectable
images, --force, bad input through the CLI, and a run killed midway that resumes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES
from emotion_estimator.cli import cli
from emotion_estimator.training.prepare import PrepareOptions, prepare

BLACK = " ".join(["0"] * 2304)


@pytest.fixture(scope="module")
def small_csv(fer_csv, landmarker_model, tmp_path_factory) -> Path:
    """The first 24 real rows (a temp copy, never in the repo) plus two all-black images."""
    with gzip.open(fer_csv, "rt", newline="") as stream:
        lines = [next(stream) for _ in range(25)]
    lines += [f"3,{BLACK},Training\n", f"4,{BLACK},PrivateTest\n"]
    path = tmp_path_factory.mktemp("fer") / "small.csv"
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def prepared(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "ds"
    opts = PrepareOptions(fer2013=small_csv, out=out, preprocess=("raw", "pad"),
                          augment_copies=1, workers=1, chunk_size=8, progress=False)
    return out, prepare(opts)


def test_dataset_contract(prepared):
    out, report = prepared
    data = pd.read_parquet(out / "dataset.parquet")
    assert list(data.columns) == ["image_id", "split", "source_label", "label", "augmented",
                                  "aug_params", "preprocess", *BLENDSHAPE_NAMES,
                                  "landmarks", "face"]
    assert all(data[n].dtype == "float32" for n in BLENDSHAPE_NAMES)
    # the fusion model's inputs, as raw bytes: aligned 478x3 float32 and a 48x48 uint8 crop
    assert set(data["landmarks"].map(len)) == {478 * 3 * 4}
    assert set(data["face"].map(len)) == {48 * 48}
    assert data[list(BLENDSHAPE_NAMES)].notna().all().all()
    assert set(data["preprocess"]) == {"raw", "pad"}
    assert set(data["label"]) <= {"happy", "sad", "unknown"}
    expected = data["source_label"].map(lambda s: s if s in ("happy", "sad") else "unknown")
    assert (data["label"] == expected).all()
    aug = data[data["augmented"]]
    assert len(aug) > 0 and (aug["split"] == "train").all()
    params = [json.loads(p) for p in aug["aug_params"]]
    assert all(p["copy"] == 1 and abs(p["angle"]) <= 36 for p in params)
    assert (data.loc[~data["augmented"], "aug_params"] == "").all()
    undetected = pd.read_parquet(out / "undetected.parquet")
    # every MediaPipe call ends up in exactly one of the two files: 2 variants x (26 images
    # + one augmented copy of each of the 25 train images: the 24 real ones and a black one)
    assert len(data) + len(undetected) == report["calls"] == 2 * (26 + 25)


def test_all_black_images_are_undetected_not_a_crash(prepared):
    out, report = prepared
    data = pd.read_parquet(out / "dataset.parquet")
    undetected = pd.read_parquet(out / "undetected.parquet")
    assert {24, 25}.isdisjoint(data["image_id"])
    black_test = undetected[(undetected["image_id"] == 25) & ~undetected["augmented"]]
    assert set(black_test["preprocess"]) == {"raw", "pad"}
    assert (black_test["split"] == "test").all() and (black_test["label"] == "sad").all()
    det = report["counts"]["detection"]["raw"]
    assert det["undetected"]["sad"]["test"] == 1
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 26 and samples["kept"].all()
    assert "Table 3 (pad)" in (out / "report.md").read_text()


def test_finished_output_needs_force(prepared, small_csv, tmp_path, capsys):
    out = tmp_path / "ds"
    shutil.copytree(prepared[0], out)
    before = (out / "dataset.parquet").read_bytes()
    argv = ["prepare", "--fer2013", str(small_csv), "--out", str(out), "--quiet",
            "--limit", "3", "--augment-copies", "0", "--preprocess", "raw", "--workers", "1"]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert (out / "dataset.parquet").read_bytes() == before
    assert cli([*argv, "--force"]) == 0
    assert sorted(pd.read_parquet(out / "samples.parquet")["image_id"]) == [0, 1, 2]
    assert set(pd.read_parquet(out / "dataset.parquet")["image_id"]) <= {0, 1, 2}


def test_bad_rows_through_the_cli(small_csv, tmp_path, capsys):
    lines = small_csv.read_text().splitlines(keepends=True)[:4]
    lines.insert(2, "3," + " ".join(["7"] * 100) + ",Training\n")  # file line 3
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    out = tmp_path / "out"
    base = ["prepare", "--fer2013", str(bad), "--out", str(out), "--quiet", "--workers", "1"]
    assert cli(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3" in err[0] and "2304" in err[0]
    assert not (out / "dataset.parquet").exists()
    assert cli([*base, "--on-bad-row", "skip", "--augment-copies", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["bad_rows"] == ["line 3: pixels must be 2304 space-separated integers, "
                                  "got 100 values"]
    assert sorted(pd.read_parquet(out / "samples.parquet")["image_id"]) == [0, 2, 3]
    header = tmp_path / "header.csv"
    header.write_text("label,pixels,split\n")
    assert cli(["prepare", "--fer2013", str(header), "--out", str(tmp_path / "o2")]) == 2
    assert "line 1" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_dataset(small_csv, tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "emotion_estimator", "prepare", "--fer2013", str(small_csv),
            "--out", str(out), "--preprocess", "raw", "--chunk-size", "1", "--workers", "2",
            "--quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob(".work/*/chunk-*.parquet"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk written in time"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
        proc.wait()
    assert not (out / "dataset.parquet").exists()
    done = len(list(out.glob(".work/*/chunk-*.parquet")))
    assert 2 <= done < 26  # killed mid-run: 26 images, one per chunk (room for a slow poll)

    opts = dict(fer2013=small_csv, preprocess=("raw",), chunk_size=1, workers=1,
                progress=False)
    resumed = prepare(PrepareOptions(out=out, **opts))
    assert resumed["calls_resumed"] > 0
    assert not (out / ".work").exists()
    fresh = prepare(PrepareOptions(out=tmp_path / "fresh", **opts))
    assert fresh["calls_resumed"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "dataset.parquet"),
                                  pd.read_parquet(tmp_path / "fresh" / "dataset.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "undetected.parquet"),
                                  pd.read_parquet(tmp_path / "fresh" / "undetected.parquet"))


def test_table3_full_counts_every_train_image(small_csv, tmp_path):
    """--table3-full runs MediaPipe on the images the caps dropped, only for the report."""
    from collections import Counter

    from emotion_estimator.training.fer2013 import EMOTIONS

    lines = small_csv.read_text().splitlines()[1:21]  # --limit 20
    train = Counter(EMOTIONS[int(line.split(",")[0])] for line in lines
                    if line.endswith(",Training"))
    base = ["prepare", "--fer2013", str(small_csv), "--limit", "20", "--quiet", "--workers",
            "1", "--preprocess", "raw", "--augment-copies", "0", "--caps",
            "angry=1,fear=1,happy=1,sad=1,surprise=1,neutral=1,disgust=1"]
    assert cli([*base, "--out", str(tmp_path / "plain")]) == 0
    assert cli([*base, "--out", str(tmp_path / "full"), "--table3-full"]) == 0
    for name in ("dataset.parquet", "undetected.parquet", "samples.parquet"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    plain = json.loads((tmp_path / "plain" / "report.json").read_text())
    full = json.loads((tmp_path / "full" / "report.json").read_text())
    assert "table3_full" not in plain and "table3_full_train" not in plain["counts"]
    assert full["table3_full"]["images_dropped_by_caps"] > 0
    table = full["counts"]["table3_full_train"]["raw"]
    assert {e: row["images"] for e, row in table.items()} == {e: train[e] for e in EMOTIONS}
    capped = full["counts"]["detection"]["raw"]["undetected"]
    assert all(capped[e]["train"] <= row["undetected"] <= row["images"]
               for e, row in table.items())
    assert "Table 3 (raw), whole train split" in (tmp_path / "full" / "report.md").read_text()


def test_retry_stills_finds_faces_the_single_pass_misses(fer_csv, landmarker_model, tmp_path):
    """--retry-stills looks again at a crop with no face as analyze does on a still: the rows
    found the first time are the same, more real crops are found, a black image stays empty."""
    with gzip.open(fer_csv, "rt", newline="") as stream:
        lines = [next(stream) for _ in range(47)]
    # header, rows 0-5 (3 is missed, by the retry too), 32 and 45 (missed at pad, found by
    # the retry), a black image
    csv = tmp_path / "some.csv"
    csv.write_text("".join([*lines[:7], lines[33], lines[46], f"3,{BLACK},Training\n"]))
    base = ["prepare", "--fer2013", str(csv), "--quiet", "--workers", "1",
            "--preprocess", "pad", "--augment-copies", "0", "--caps", "none"]
    assert cli([*base, "--out", str(tmp_path / "plain")]) == 0
    assert cli([*base, "--out", str(tmp_path / "retry"), "--retry-stills"]) == 0
    plain = pd.read_parquet(tmp_path / "plain" / "dataset.parquet")
    retry = pd.read_parquet(tmp_path / "retry" / "dataset.parquet")
    assert set(plain["image_id"]) == {0, 1, 2, 4, 5}
    assert set(retry["image_id"]) == {0, 1, 2, 4, 5, 6, 7}  # the black image (8) stays empty
    pd.testing.assert_frame_equal(retry[retry["image_id"] < 6].reset_index(drop=True), plain)
    assert set(retry["face"].map(len)) == {48 * 48}
    assert retry[list(BLENDSHAPE_NAMES)].notna().all().all()
    report = json.loads((tmp_path / "retry" / "report.json").read_text())
    assert report["retry_stills"] is True
