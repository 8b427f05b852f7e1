"""Row writers: typed columns, empty cells for missing values, atomic publication."""

from __future__ import annotations

import json
import os
import stat
import threading

import pandas as pd
import pytest

from emotion_estimator.outputs import format_for, frame_columns, open_writer

COLUMNS = frame_columns(("happy", "sad", "unknown"), ("_neutral", "jawOpen"))
NO_FACE = {"frame": 0, "timestamp_s": 0.0, "face_detected": False}
FACE = {"frame": 1, "timestamp_s": 0.04, "face_id": 0, "face_detected": True, "x": 1.5,
        "y": 2.0, "w": 30.0, "h": 40.0, "label": "happy", "p_happy": 0.7, "p_sad": 0.1,
        "p_unknown": 0.2, "_neutral": float("nan"), "jawOpen": 0.25}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_keeps_types_and_missing_values(tmp_path, fmt):
    path = tmp_path / f"rows.{fmt}"
    with open_writer(str(path), None, COLUMNS) as writer:
        writer.write(NO_FACE)
        writer.write(FACE)
    df = {"csv": pd.read_csv, "parquet": pd.read_parquet,
          "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt](path)
    assert list(df.columns) == list(COLUMNS)
    assert df["face_detected"].tolist() == [False, True]
    assert pd.isna(df["p_happy"].iloc[0]) and df["p_happy"].iloc[1] == pytest.approx(0.7)
    assert pd.isna(df["_neutral"].iloc[1])  # NaN score -> empty / null
    assert df["label"].iloc[1] == "happy"
    if fmt == "parquet":  # read back with the API's dtypes: face_id stays an integer
        assert str(df["frame"].dtype) == "Int64" and str(df["jawOpen"].dtype) == "float64"
        assert str(df["face_id"].dtype) == "Int64" and df["face_id"].iloc[1] == 0
        assert str(df["label"].dtype) == "string" and str(df["decided"].dtype) == "boolean"


def test_file_appears_only_when_closed(tmp_path):
    path = tmp_path / "rows.csv"
    writer = open_writer(str(path), "csv", COLUMNS)
    writer.write(FACE)
    assert not path.exists()
    writer.close()
    assert path.exists() and not list(tmp_path.glob("*.part"))


def test_interrupted_run_keeps_rows_written_so_far(tmp_path):
    path = tmp_path / "rows.jsonl"
    with pytest.raises(KeyboardInterrupt), open_writer(str(path), None, COLUMNS) as writer:
        writer.write(FACE)
        raise KeyboardInterrupt
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [1]


def test_special_file_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    with open_writer(str(fifo), "jsonl", COLUMNS) as writer:
        writer.write(FACE)
    reader.join(timeout=5)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a pipe, not a renamed regular file
    assert json.loads(received[0])["label"] == "happy"


def test_format_from_suffix_and_errors(tmp_path):
    assert format_for("x.parquet", None) == "parquet"
    assert format_for("-", None) == "jsonl"
    assert format_for("x.ndjson", None) == "jsonl"
    with pytest.raises(ValueError, match="unknown format"):
        format_for("x.csv", "xlsx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_writer(str(tmp_path / "missing" / "x.csv"), None, COLUMNS)
    with pytest.raises(ValueError, match="stdout"):
        open_writer("-", "parquet", COLUMNS)


def test_published_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "rows.csv"
    with open_writer(str(path), None, COLUMNS) as writer:
        writer.write(FACE)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
