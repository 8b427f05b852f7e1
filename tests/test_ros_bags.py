"""Robot recordings as input and output, through the command line (no ROS install: rosbags).

Bags are written by ``rosbags`` from the shared videos (tests/ros2_peers.py ``camera_bag``):
the rows of a bag equal the rows of its video; ``--list-topics``, ``--ros-bag`` (REP-155
messages with the source stamps) and ``batch`` over bags; bad bags exit 2 with nothing written.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("rosbags")

from emotion_estimator.cli import cli  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ros2_peers import camera_bag  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
BASE = 1_700_000_000_000_000_000
pytestmark = pytest.mark.skipif(not (MEDIA / "single_face.mp4").is_file(),
                                reason="../shared/media is absent")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bags")
    made = {"mcap": d / "raw_mcap", "sqlite3": d / "png_sqlite3", "ros1": d / "jpeg.bag"}
    camera_bag(str(MEDIA / "single_face.mp4"), str(made["mcap"]), "mcap", "image",
               extra_topic=True, base_ns=BASE)
    camera_bag(str(MEDIA / "face_noface.mov"), str(made["sqlite3"]), "sqlite3", "png",
               base_ns=BASE)
    camera_bag(str(MEDIA / "single_face.mp4"), str(made["ros1"]), "ros1", "jpeg", base_ns=BASE)
    return made


@pytest.fixture(scope="module")
def video_rows(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    d = tmp_path_factory.mktemp("videos")
    out = {}
    for name in ("single_face.mp4", "face_noface.mov"):
        assert cli(["analyze", str(MEDIA / name), "-o", str(d / f"{name}.csv"),
                    "--no-progress"]) == 0
        out[name] = rows(d / f"{name}.csv")
    return out


def test_lossless_bags_give_the_rows_of_their_video(bags, video_rows, tmp_path) -> None:
    """Raw bgr8 in MCAP and PNG in sqlite3: the same table as the video, byte for byte."""
    for bag, video in ((bags["mcap"], "single_face.mp4"), (bags["sqlite3"], "face_noface.mov")):
        out = tmp_path / f"{bag.name}.csv"
        assert cli(["analyze", str(bag), "--topic", "/camera/image_raw", "-o", str(out),
                    "--no-progress"]) == 0
        assert rows(out) == video_rows[video]


def test_ros1_jpeg_bag_keeps_the_recording_timestamps(bags, video_rows, tmp_path) -> None:
    out = tmp_path / "ros1.csv"
    assert cli(["analyze", str(bags["ros1"]), "-o", str(out), "--no-progress"]) == 0
    got, want = rows(out), video_rows["single_face.mp4"]
    assert [r["timestamp_s"] for r in got] == [r["timestamp_s"] for r in want]
    assert [r["face_detected"] for r in got] == [r["face_detected"] for r in want]


def test_list_topics_names_only_image_topics(bags, capsys) -> None:
    assert cli(["analyze", str(bags["mcap"]), "--list-topics"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{bags['mcap']}\t/camera/image_raw\tsensor_msgs/msg/Image\t72"]


def test_ros_bag_output_has_rep155_messages_at_the_source_stamps(bags, tmp_path) -> None:
    from rosbags.highlevel import AnyReader

    from emotion_estimator.ros.bagwriter import typestore
    from emotion_estimator.ros.rep155 import HRI_NAMES

    table, out = tmp_path / "rows.csv", tmp_path / "faces"
    assert cli(["analyze", str(bags["sqlite3"]), "-o", str(table), "--ros-bag", str(out),
                "--no-progress"]) == 0
    def us(ns: int) -> int:  # the table's timestamps have 6 decimals
        return round((ns - BASE) / 1000)

    def name(row: dict[str, str]) -> str:  # the expression view where the model has it
        return HRI_NAMES.get(row["expression"], row["expression"]) if row.get("expression") \
            else row["label"]

    decided = {(round(float(r["timestamp_s"]) * 1e6), name(r)) for r in rows(table)
               if r["decided"] == "True"}
    source_stamps = {round(float(r["timestamp_s"]) * 1e6) for r in rows(table)}
    msgs: dict[str, list] = {}
    with AnyReader([out], default_typestore=typestore()) as reader:
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            msgs.setdefault(conn.topic, []).append((t, msg))
    assert set(msgs) == {"/humans/faces/tracked", "/humans/faces/face_0/roi",
                         "/humans/faces/face_0/expression",
                         "/emotion_estimator/expression_changes"}
    expressions = {(us(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec), m.expression)
                   for _, m in msgs["/humans/faces/face_0/expression"]}
    assert expressions == decided  # one per decided row, its name, its frame's stamp
    tracked = msgs["/humans/faces/tracked"]
    assert all(us(t) in source_stamps and m.header.frame_id in ("camera", "")
               for t, m in tracked)
    assert "face_0" in tracked[len(tracked) // 4][1].ids
    assert list(tracked[-1][1].ids) == []  # the person left: retired
    change = json.loads(msgs["/emotion_estimator/expression_changes"][0][1].data)
    assert change["face_id"] == "face_0" and change["from"] != change["to"]


def test_bad_bags_exit_2_and_write_nothing(bags, tmp_path, capsys) -> None:
    out = tmp_path / "x.csv"
    truncated_mcap = tmp_path / "cut.mcap"
    truncated_mcap.write_bytes((bags["mcap"] / "raw_mcap.mcap").read_bytes()[:3_000_000])
    truncated_ros1 = tmp_path / "cut.bag"
    truncated_ros1.write_bytes(bags["ros1"].read_bytes()[:300_000])
    cases = [
        ([str(bags["mcap"]), "--topic", "/nope"], "has no topic /nope"),
        ([str(bags["mcap"]), "--topic", "/chatter"], "carries std_msgs/msg/String"),
        ([str(truncated_mcap)], "cannot read bag"),
        ([str(truncated_ros1)], "cannot read bag"),
    ]
    for args, said in cases:
        assert cli(["analyze", *args, "-o", str(out), "--ros-bag", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err
        assert not out.exists() and not (tmp_path / "b").exists()
        assert not list(tmp_path.glob(".b.part*"))


def test_batch_over_bags(bags, tmp_path) -> None:
    import pandas as pd

    out = tmp_path / "ds"
    assert cli(["batch", str(bags["mcap"]), str(bags["ros1"]), "--out", str(out),
                "--topic", "/camera/image_raw", "--workers", "1", "--no-progress"]) == 0
    table = pd.read_parquet(out / "rows")
    assert len(table) == 2 * 72 and table["face_detected"].all()
