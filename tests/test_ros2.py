"""The ros2 node against the real rclpy, each party its own process (no mocks of ROS).

A camera publisher sends real frames of the shared videos (CompressedImage, and raw Image),
the node (``python -m emotion_estimator ros2``) runs as its own process, and a listener
records the REP-155 topics, ``/diagnostics`` and the change topic. Loopback only
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) on a domain id of this test run's own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("hri_msgs.msg")

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
PEERS = str(Path(__file__).with_name("ros2_peers.py"))
FACE_ID = re.compile(r"^face_\d+$")
LABELS = {"happy", "sad", "unknown",  # 3-class labels, or the expression view:
          "neutral", "angry", "surprised", "disgusted", "scared"}

needs_media = pytest.mark.skipif(not (MEDIA / "face_noface.mov").is_file(),
                                 reason="../shared/media is absent")


@pytest.fixture
def ros_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=str(1 + (os.getpid() + hash(tmp_path.name)) % 100),
               ROS_LOG_DIR=str(tmp_path / "roslog"), PYTHONUNBUFFERED="1")
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # each process sets its library path
    return env


class Run:
    """Node + listener processes; :meth:`finish` stops them and reads the record."""

    def __init__(self, tmp_path: Path, env: dict[str, str], node_args: list[str]) -> None:
        self.tmp, self.env = tmp_path, env
        self.record_path = tmp_path / "record.json"
        self.node_err = open(tmp_path / "node.err", "w+")  # noqa: SIM115 - read in finish
        self.node = subprocess.Popen(
            [sys.executable, "-m", "emotion_estimator", "ros2", *node_args],
            env=env, stdout=subprocess.DEVNULL, stderr=self.node_err, cwd=tmp_path)
        self.listener = subprocess.Popen(
            [sys.executable, PEERS, "listen", "--seconds", "600", "--out",
             str(self.record_path)], env=env, stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout.readline().strip() == "listening"
        deadline = time.monotonic() + 60
        while "publishing REP-155 faces" not in self.node_log():  # the node is up
            assert self.node.poll() is None, self.node_log()
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.1)

    def publish(self, *args: str) -> dict:
        out = subprocess.run([sys.executable, PEERS, "publish", *args], env=self.env,
                             capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop_node(self, sig: int) -> int:
        self.node.send_signal(sig)
        return self.node.wait(timeout=20)

    def finish(self) -> dict:
        time.sleep(0.5)  # the last messages reach the listener
        self.listener.send_signal(signal.SIGINT)
        assert self.listener.wait(timeout=20) == 0
        return json.loads(self.record_path.read_text())

    def node_log(self) -> str:
        self.node_err.seek(0)
        return self.node_err.read()

    def close(self) -> None:
        for proc in (self.node, self.listener):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.node_err.close()


@pytest.fixture
def run(tmp_path: Path, ros_env: dict[str, str]):
    runs: list[Run] = []

    def start(*node_args: str) -> Run:
        runs.append(Run(tmp_path, ros_env, list(node_args)))
        return runs[-1]

    yield start
    for r in runs:
        r.close()


def _check_consistent(record: dict, stamps: set[int]) -> None:
    """Every per-face message: a valid id that ``tracked`` listed at the same stamp, the
    source image's stamp and frame id, a label, a normalised box."""
    tracked_at = {t["stamp"]: set(t["ids"]) for t in record["tracked"]}
    assert record["expression"] and record["roi"]
    for msg in record["expression"] + record["roi"]:
        assert FACE_ID.match(msg["face"])
        assert msg["stamp"] in stamps, "a stamp that no source image had"
        assert msg["frame_id"] == "camera"
        if msg["stamp"] in tracked_at:  # tracked (reliable) may start before we listened
            assert msg["face"] in tracked_at[msg["stamp"]]
    for msg in record["expression"]:
        assert msg["expression"] in LABELS
        assert 0.0 <= msg["confidence"] <= 1.0
    for msg in record["roi"]:
        assert 0.0 <= msg["xmin"] < msg["xmax"] <= 1.0
        assert 0.0 <= msg["ymin"] < msg["ymax"] <= 1.0


def _reference_labels(video: Path, scale: float, every: int) -> dict[int, str]:
    """In-process expression names (the REP-155 mapping) of the same frames, scaled as
    published, by their time in us."""
    import cv2

    from emotion_estimator.estimator import EmotionEstimator
    from emotion_estimator.ros.rep155 import expression_of
    from emotion_estimator.video import VideoSource

    est, out = EmotionEstimator(), {}
    with VideoSource(video) as src:
        for f in src:
            if f.index % every:
                continue
            image = cv2.resize(f.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            for face in est.process(image, f.timestamp_s).faces:
                if face.decided:
                    out[round(f.timestamp_s * 1e6)] = expression_of(face).expression
    est.reset()
    return out


@needs_media
def test_png_frames_same_labels_faces_retired_and_sigint(run) -> None:
    """face_noface.mov as lossless CompressedImage (half size, every 2nd frame) after 3
    corrupt frames, in lockstep with the video's own timing: every frame answered, the labels
    are those of the same frames in-process, the face is retired when the person has left,
    corrupt frames are counted and said once; SIGINT ends the node with exit 0 and no face
    topic left."""
    video = MEDIA / "face_noface.mov"
    r = run("--topic", "/camera/image_raw")
    sent = r.publish(str(video), "--kind", "png", "--scale", "0.5", "--lockstep", "--every",
                     "2", "--corrupt", "3", "--topic", "/camera/image_raw", "--linger-s", "1.5")
    assert r.node.poll() is None and r.listener.poll() is None  # both still running
    assert r.stop_node(signal.SIGINT) == 0
    record = r.finish()
    stamps = set(sent["stamps"])
    assert len(sent["answered"]) >= 0.95 * len(stamps)  # lockstep: (nearly) nothing lost
    _check_consistent(record, stamps)
    base = min(stamps)
    got = {round((m["stamp"] - base) / 1000): m["expression"] for m in record["expression"]}
    want = _reference_labels(video, 0.5, 2)
    common = set(got) & set(want)
    assert len(common) >= 0.8 * len(want)
    assert sum(got[t] == want[t] for t in common) >= 0.9 * len(common)
    # the person leaves at frame 72: the face is retired while the node still runs
    last_face = max(m["stamp"] for m in record["expression"])
    later = [t for t in record["tracked"] if t["stamp"] > last_face and t["stamp"] in stamps]
    assert later and later[-1]["ids"] == []
    assert any(s["topics"] for s in record["face_topics"])
    assert record["face_topics"][-1]["topics"] == []
    values = [next(iter(d.values())) for d in record["diagnostics"] if d][-1]
    assert 1 <= int(values["bad_corrupt_image"]) <= 3  # some may be replaced unseen
    assert r.node_log().count("cannot decode compressed image") == 1  # said once


@needs_media
def test_raw_image_frames_and_sigterm(run) -> None:
    """single_face.mp4 as raw rgb8 Image (half size: one shared-memory sample), 30 fps from
    the wall clock: the smiling face is announced with expressions at the source stamps;
    SIGTERM stops it cleanly, retiring the face."""
    r = run("--topic", "camera", "--type", "image")
    sent = r.publish(str(MEDIA / "single_face.mp4"), "--kind", "image", "--encoding", "rgb8",
                     "--scale", "0.5", "--topic", "/camera", "--repeat", "2")
    assert r.stop_node(signal.SIGTERM) == 0
    record = r.finish()
    _check_consistent(record, set(sent["stamps"]))
    assert {m["expression"] for m in record["expression"]} & {"happy"}
    assert record["tracked"][-1]["ids"] == []  # retired on the way out


def test_wrong_message_type_is_logged_once_and_counted(run) -> None:
    """A std_msgs/String publisher on the input topic: the node says so once, counts it in
    /diagnostics and keeps running."""
    if not (MEDIA / "single_face.mp4").is_file():
        pytest.skip("../shared/media is absent")
    r = run("--topic", "/camera/image_raw")
    r.publish(str(MEDIA / "single_face.mp4"), "--kind", "string", "--fps", "60",
              "--wait-s", "2", "--linger-s", "1.5")
    assert r.node.poll() is None
    assert r.stop_node(signal.SIGINT) == 0
    record = r.finish()
    values = [next(iter(d.values())) for d in record["diagnostics"] if d]
    assert any(v.get("bad_wrong_type") == "1" for v in values)
    assert r.node_log().count("carries std_msgs/msg/String") == 1


def test_missing_ros_extra_exits_2_with_the_install_hint(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "from emotion_estimator.cli import cli\n"
            "sys.exit(cli(['ros2', '--topic', '/camera']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "pip install 'emotion-estimator[ros]'" in out.stderr
    assert "Traceback" not in out.stderr
