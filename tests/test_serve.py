"""`serve`: an in-process server over the shared videos replayed with --realtime (loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
websockets = pytest.importorskip("websockets")

from test_serve_support import Scripted, running  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from benchlib import rss_mb, silent_client  # noqa: E402  (the bench's clients, shared)
from websockets.sync.client import connect  # noqa: E402

from emotion_estimator import EmotionEstimator  # noqa: E402
from emotion_estimator.serve import ServeConfig, create_app  # noqa: E402
from emotion_estimator.serve.hub import Hub, Subscriber  # noqa: E402

TOKEN = "test-token-123"


def http(url: str, data: bytes | None = None, token: str | None = TOKEN,
         query_token: bool = False) -> tuple[int, bytes, dict]:
    if query_token and token:
        url += ("&" if "?" in url else "?") + f"token={token}"
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token and not query_token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def ws(url: str, token: str | None = TOKEN, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url, additional_headers=headers, open_timeout=10, **kw)


def jpegs(media: Path, n: int) -> list[bytes]:
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    out = []
    while len(out) < n and (frame := cap.read())[0]:
        out.append(cv2.imencode(".jpg", frame[1])[1].tobytes())
    cap.release()
    return out


@pytest.fixture(scope="module")
def live(media, landmarker_model):
    """A token-protected server over single_face.mp4 replayed live (looped)."""
    from emotion_estimator.live import ReplaySource

    config = ServeConfig(token=TOKEN, client_queue=8, max_frame_bytes=200_000,
                         max_image_bytes=300_000)
    app = create_app(EmotionEstimator(), ReplaySource(media / "single_face.mp4", loop=True),
                     config)
    with running(app, config, sndbuf=8192) as address:
        yield address, app.state.server


@pytest.fixture(scope="module")
def scripted(landmarker_model):
    """A server without source or token whose classifier turns from happy to sad."""
    config = ServeConfig()
    app = create_app(EmotionEstimator(Scripted(switch=12)), None, config)
    with running(app, config) as address:
        yield address


def frames_of(conn, n: int, timeout: float = 10) -> list[dict]:
    return [json.loads(conn.recv(timeout=timeout)) for _ in range(n)]


def test_stream_messages_arrive_parse_and_account_for_every_frame(live):
    address, _ = live
    with ws(f"ws://{address}/v1/stream") as conn:
        msgs = frames_of(conn, 45)
    frames = [m for m in msgs if m["type"] == "frame"]
    assert len(frames) >= 30
    for m in frames:
        assert {"source", "frame", "timestamp_s", "capture_time", "latency_ms",
                "dropped_frames", "face_detected", "faces"} <= set(m)
        assert 0 <= m["latency_ms"] < 2000 and abs(m["capture_time"] - time.time()) < 30
    face = frames[-1]["faces"][0]
    assert {"face_id", "x", "y", "w", "h", "label", "p_happy", "p_sad", "p_unknown",
            "decided"} <= set(face)
    # a reading client loses no message: every gap in frame numbers is a source drop
    for a, b in zip(frames, frames[1:], strict=False):
        assert b["frame"] - a["frame"] - 1 == b["dropped_frames"] - a["dropped_frames"]
    # events, where there are any, match the label change in the frame messages
    labels: dict[int, str] = {}
    for m in msgs:
        if m["type"] == "frame":
            for f in m["faces"]:
                labels.setdefault(f["face_id"], f["label"])
                if m is not msgs[-1]:
                    labels[f["face_id"]] = f["label"]
        else:
            assert m["to"] == labels[m["face_id"]] and m["from"] != m["to"]


def test_health_metrics_and_the_token(live, media):
    address, _ = live
    base = f"http://{address}"
    status, body, _ = http(f"{base}/healthz", token=None)
    assert status == 200 and json.loads(body)["source"] == "running"
    for path in ("/metrics", "/", "/v1/video.mjpg"):
        status, body, headers = http(base + path, token=None)
        assert status == 401 and json.loads(body)["error"] and headers["www-authenticate"]
        assert http(base + path, token="wrong")[0] == 401
    assert http(f"{base}/v1/analyze", data=b"x", token=None)[0] == 401
    status, body, _ = http(f"{base}/metrics", query_token=True)
    text = body.decode()
    for name in ("emotion_frames_total", "emotion_faces_total", "emotion_fps",
                 "emotion_dropped_frames_total", "emotion_latency_seconds_bucket",
                 'emotion_clients{endpoint="stream"}', "emotion_messages_dropped_total"):
        assert name in text
    assert float(re.search(r"^emotion_frames_total (\S+)", text, re.M).group(1)) > 0
    for path in ("/v1/stream", "/v1/frames"):
        for token in (None, "wrong"):
            with pytest.raises(websockets.exceptions.InvalidStatus, match="403"):
                ws(f"ws://{address}{path}", token=token)
    with connect(f"ws://{address}/v1/stream?token={TOKEN}", open_timeout=10) as conn:
        assert json.loads(conn.recv(timeout=10))["type"] in ("frame", "event")
    page = http(f"{base}/", query_token=True)[1].decode()
    assert "<canvas" in page and "/v1/stream" in page


def test_analyze_endpoint_sizes_and_corrupt_images(live, media):
    address, _ = live
    url = f"http://{address}/v1/analyze"
    status, body, _ = http(url, data=(media / "single_face.jpg").read_bytes())
    result = json.loads(body)
    assert status == 200 and result["face_detected"] and result["faces"][0]["label"] == "happy"
    status, body, _ = http(url, data=(media / "no_face.jpg").read_bytes())
    assert status == 200 and json.loads(body) == {"width": 1920, "height": 1080,
                                                  "face_detected": False, "faces": []}
    status, body, headers = http(url, data=b"\xff\xd8 not really a jpeg" * 10)
    assert status == 400 and json.loads(body)["error"].startswith("cannot decode image")
    assert headers["content-type"] == "application/json"
    status, body, _ = http(url, data=b"\0" * 300_001)
    assert status == 413 and "larger than 300000 bytes" in json.loads(body)["error"]
    bomb = cv2.imencode(".png", np.zeros((5000, 5000, 3), np.uint8))[1].tobytes()
    assert len(bomb) < 300_000  # small file, 25 megapixels
    status, body, _ = http(url, data=bomb)
    assert status == 413 and "pixels" in json.loads(body)["error"]


def test_frames_endpoint_returns_results_and_rejects_bad_frames(live, media):
    address, _ = live
    with ws(f"ws://{address}/v1/frames") as conn:
        conn.send((media / "single_face.jpg").read_bytes())
        msg = json.loads(conn.recv(timeout=20))
        assert msg["type"] == "frame" and msg["source"].startswith("frames/")
        assert msg["faces"][0]["face_id"] == 0 and msg["latency_ms"] >= 0
        conn.send(b"garbage")
        error = json.loads(conn.recv(timeout=10))
        assert (error["type"], error["status"]) == ("error", 400)
        assert error["error"].startswith("cannot decode image")
        conn.send("text")
        assert json.loads(conn.recv(timeout=10))["status"] == 400
        conn.send(b"\0" * 200_001)
        error = json.loads(conn.recv(timeout=10))
        assert error["status"] == 413
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            conn.recv(timeout=10)
        assert closed.value.rcvd.code == 1009


def test_snapshot_picture_and_its_message_are_one_frame(live):
    """/v1/frame.jpg: the dashboard's picture and, in a header, that frame's message."""
    address, _ = live
    assert http(f"http://{address}/v1/frame.jpg", token=None)[0] == 401
    deadline = time.monotonic() + 20
    while (got := http(f"http://{address}/v1/frame.jpg"))[0] != 200:
        assert time.monotonic() < deadline, got[0]
        time.sleep(0.1)
    _, body, headers = got
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    msg = json.loads(headers["x-frame-message"])
    assert picture.shape == (360, 640, 3) and msg["type"] == "frame"
    (face,) = msg["faces"]
    x, y, w, h = (round(face[k]) for k in ("x", "y", "w", "h"))
    from emotion_estimator.render import UNDECIDED, class_color

    box = UNDECIDED if not face["decided"] else class_color(face["label"], ("happy", "sad",
                                                                              "unknown"))
    edge = picture[y + h // 2, max(x - 1, 0):x + 3].astype(int)  # the box's left edge
    assert (np.abs(edge - box).max(axis=1) < 60).any()  # drawn for this very face


def test_frames_carry_the_senders_timestamp(live, media):
    """``{"timestamp_s": T}`` before a frame: the frame is filtered at the robot's time T."""
    address, _ = live
    photo = (media / "single_face.jpg").read_bytes()
    with ws(f"ws://{address}/v1/frames") as conn:
        stamps = []
        for t in (100.0, 100.25, 100.5):
            conn.send(json.dumps({"timestamp_s": t}))
            conn.send(photo)
            stamps.append(json.loads(conn.recv(timeout=20))["timestamp_s"])
        assert stamps == [100.0, 100.25, 100.5]
        conn.send(photo)  # unstamped: the time since the connection opened, on receipt
        assert json.loads(conn.recv(timeout=20))["timestamp_s"] < 100
        conn.send(json.dumps({"timestamp_s": 99.0}))
        error = json.loads(conn.recv(timeout=10))
        assert error["status"] == 400 and "backwards" in error["error"]


def test_events_at_real_label_changes_and_events_only(scripted, media):
    """Frames sent by a "robot"; the classifier turns from happy to sad at call 13: one event
    happy -> sad at that change, none for the face's first decision; ``events_only``
    subscribers get that event and nothing else."""
    address = scripted
    with connect(f"ws://{address}/v1/stream?events_only=1", open_timeout=10) as events, \
            connect(f"ws://{address}/v1/stream", open_timeout=10) as everything, \
            connect(f"ws://{address}/v1/frames", open_timeout=10) as robot:
        replies = []
        for data in jpegs(media, 30):
            robot.send(data)
            replies.append(json.loads(robot.recv(timeout=20)))
            while replies[-1]["type"] == "event":
                replies.append(json.loads(robot.recv(timeout=20)))
            time.sleep(0.01)
        frames = [m for m in replies if m["type"] == "frame"]
        sent_events = [m for m in replies if m["type"] == "event"]
        labels = [(m["faces"][0]["label"], m["faces"][0]["decided"]) for m in frames]
        assert labels[0] == ("unknown", False)  # a new face starts undecided
        assert ("happy", True) in labels and labels[-1] == ("sad", True)
        assert [(e["from"], e["to"], e["face_id"]) for e in sent_events] == [("happy", "sad", 0)]
        change = next(m for m in frames if m["faces"][0]["label"] == "sad")
        assert sent_events[0]["frame"] == change["frame"] and sent_events[0]["probabilities"]
        got = json.loads(events.recv(timeout=10))
        assert got["type"] == "event" and got["to"] == "sad"
        with pytest.raises(TimeoutError):
            events.recv(timeout=0.5)  # nothing else: no frame messages
        seen = [json.loads(everything.recv(timeout=10)) for _ in range(len(replies))]
        assert [m["type"] for m in seen] == [m["type"] for m in replies]


def test_a_client_that_never_reads_gets_messages_dropped_not_queued(live):
    """A raw WebSocket client that never reads, then 4 MB of messages: its queue stays at
    the bound, drops are counted, memory does not grow, and the stream goes on."""
    address, server = live
    raw = silent_client(address, token=TOKEN, rcvbuf=2048)
    try:
        assert b" 101 " in raw.recv(1024)
        before, rss = server.metrics.messages_dropped._value.get(), rss_mb()
        burst = [("frame", "x" * 4000)] * 8
        for _ in range(125):  # 4 MB in all, 8 messages (the queue bound) at a time
            server.loop.call_soon_threadsafe(server.hub.publish, burst)
            time.sleep(0.004)
            assert max(len(s.queue) for s in server.hub.subscribers) <= 8
        assert server.metrics.messages_dropped._value.get() - before > 500
        assert rss_mb() - rss < 20
        with ws(f"ws://{address}/v1/stream") as reader:  # the others are served as before
            frames = [m for m in frames_of(reader, 10) if m["type"] == "frame"]
        assert len(frames) >= 5 and max(len(s.queue) for s in server.hub.subscribers) <= 8
    finally:
        raw.close()


def test_hub_bounds_each_client_and_keeps_events_over_frames():
    async def scenario() -> None:
        hub = Hub()
        slow, events = hub.subscribe(3), hub.subscribe(3, events_only=True)
        hub.publish([("frame", "f1"), ("event", "e1"), ("frame", "f2")])
        hub.publish([("frame", "f3"), ("frame", "f4")])
        assert list(slow.queue) == [("event", "e1"), ("frame", "f3"), ("frame", "f4")]
        assert slow.dropped == 2 and list(events.queue) == [("event", "e1")]
        assert await slow.next_batch() == [("event", "e1"), ("frame", "f3"), ("frame", "f4")]
        hub.close()
        assert await slow.next_batch() == [] and hub.subscribe(1).closed

    asyncio.run(scenario())
    assert Subscriber(1).maxlen == 1


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emotion_estimator", "serve", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "give --token or set EMOTION_ESTIMATOR_TOKEN"),
    (["--source", "missing.mp4"], "no such file"),
    (["--camera", "97"], "camera 97 is not available"),
    (["--realtime"], "--realtime and --loop replay a --source file"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, landmarker_model):
    env_token = os.environ.pop("EMOTION_ESTIMATOR_TOKEN", None)
    try:
        done = cli(*args)
    finally:
        if env_token is not None:
            os.environ["EMOTION_ESTIMATOR_TOKEN"] = env_token
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_serve_cleanly(sig, media, landmarker_model):
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotion_estimator", "serve", "--source",
         str(media / "single_face.mp4"), "--realtime", "--loop", "--port", "0"],
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1)
        with connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=20) as conn:
            assert json.loads(conn.recv(timeout=20))["type"] == "frame"
            proc.send_signal(sig)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                while True:
                    conn.recv(timeout=10)
            assert closed.value.rcvd is not None  # the server closed it, with a close frame
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert "stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_robot_client_example_acts_on_sad(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "robot_client.py"
    spec = importlib.util.spec_from_file_location("robot_client", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.on_event({"type": "event", "face_id": 2, "from": "happy", "to": "sad",
                      "probabilities": {"happy": 0.1, "sad": 0.8, "unknown": 0.1}})
    assert "face 2 looks sad" in capsys.readouterr().out
