"""`emotion-estimator blendshapes`: tables on real media and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_video import write_video

from emotion_estimator import BLENDSHAPE_NAMES


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emotion_estimator", *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("emotion-estimator: error:"), proc.stderr
    assert fragment in lines[0]


def test_face_then_no_face_video(media, landmarker_model, tmp_path):
    out = tmp_path / "rows.parquet"
    proc = run_cli("blendshapes", str(media / "face_noface.mov"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(out)
    assert list(df.columns[:8]) == ["frame", "timestamp_s", "face_id", "face_detected",
                                   "x", "y", "w", "h"]
    assert list(df.columns[8:]) == list(BLENDSHAPE_NAMES)
    assert df["frame"].tolist() == list(range(169))  # one row per frame with max 1 face
    assert df["face_detected"].iloc[:72].all()
    assert (~df["face_detected"].iloc[72:]).sum() >= 90  # the person has left (README: 96)
    assert df.loc[~df["face_detected"], list(BLENDSHAPE_NAMES)].isna().all().all()
    assert df["timestamp_s"].is_monotonic_increasing
    assert (df.loc[df["face_detected"].iloc[:72].index, "face_id"] == 0).all()  # one tracked id
    assert str(df["face_id"].dtype) == "Int64"  # an integer with nulls, as in the API
    scores = df[list(BLENDSHAPE_NAMES)].dropna().to_numpy()
    assert (scores == scores.round(5)).all() and (scores != scores.round(3)).any()  # as analyze
    assert "169 frames" in proc.stderr and "with a face" in proc.stderr


def test_group_photo_default_gives_the_largest_face(media, landmarker_model):
    proc = run_cli("blendshapes", str(media / "multi_face.jpg"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["face_detected"] and rows[0]["face_id"] == 0
    assert "warning: multi_face.jpg: more than 1 face found" in proc.stderr  # not silently


def test_multi_face_and_jsonl_stdout(media, landmarker_model):
    proc = run_cli("blendshapes", str(media / "multi_face.jpg"), "--max-faces", "4")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["face_id"] for r in rows] == [0, 1]
    assert all(r["face_detected"] for r in rows)


def test_folder_with_a_bad_file_is_refused_before_writing_unless_skip_bad(
        media, landmarker_model, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "face.jpg").write_bytes((media / "single_face.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes((media / "single_face.jpg").read_bytes()[:300])
    (folder / "readme.txt").write_text("not media")
    out = tmp_path / "rows.csv"
    out.write_text("previous,good\n1,2\n")
    proc = run_cli("blendshapes", str(folder), "-o", str(out))
    assert_one_line_error(proc, 2, "1 of 2 inputs unusable, nothing written")
    assert "broken.jpg" in proc.stderr
    assert out.read_text() == "previous,good\n1,2\n"  # the old table is untouched
    proc = run_cli("blendshapes", str(folder), "-o", str(out), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped: cannot decode image" in proc.stderr and "broken.jpg" in proc.stderr
    df = pd.read_csv(out)
    assert df["source"].tolist() == [str(folder / "face.jpg")]
    assert df["mouthSmileLeft"].iloc[0] > 0.5


def test_truncated_video_keeps_rows_and_warns(landmarker_model, tmp_path):
    full = write_video(tmp_path / "full.avi", n=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    out = tmp_path / "rows.csv"
    proc = run_cli("blendshapes", str(cut), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "truncated" in proc.stderr
    assert 0 < len(pd.read_csv(out)) < 30


@pytest.mark.parametrize("case", ["missing", "text_as_mp4", "corrupt_image", "no_output_dir",
                                  "absent_camera", "no_input"])
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path, landmarker_model):
    fake = tmp_path / "notes.mp4"
    fake.write_text("hello")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    args, fragment = {
        "missing": ([str(tmp_path / "nope.mp4")], "no such file"),
        "text_as_mp4": ([str(fake)], "cannot decode video"),
        "corrupt_image": ([str(corrupt)], "cannot decode image"),
        "no_output_dir": ([str(fake), "-o", str(tmp_path / "no" / "x.csv")], "does not exist"),
        "absent_camera": (["--camera", "97"], "camera 97 is not available"),
        "no_input": ([], "INPUT"),
    }[case]
    proc = run_cli("blendshapes", *args)
    assert_one_line_error(proc, 2, fragment)
    assert not list(Path(tmp_path).glob("*.part"))


def test_closed_pipe_ends_quietly(media, landmarker_model):
    proc = subprocess.Popen([sys.executable, "-m", "emotion_estimator", "blendshapes",
                             str(media / "single_face.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "error" not in err
