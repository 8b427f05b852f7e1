"""`serve` against hostile input and foreign web pages (issue 17): Host and Origin policy,
image admission on both image endpoints, newest-frame-wins on /v1/frames, truthful health,
token strength; and no traceback in the server's logs meanwhile."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
websockets = pytest.importorskip("websockets")

from hostile import HEADER_BOMBS, encoded  # noqa: E402
from test_serve_support import Scripted, running  # noqa: E402
from test_video import write_video  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from emotion_estimator import EmotionEstimator  # noqa: E402
from emotion_estimator.serve import ServeConfig, create_app  # noqa: E402
from emotion_estimator.video import Frame, FrameSource, SourceError  # noqa: E402

APP_ORIGIN = "https://app.example"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_tracebacks() -> Iterator[Collect]:
    """Every test here: no log record of the server carries a traceback."""
    handler = Collect()
    names = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "emotion_estimator")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
    assert not [r for r in handler.records if r.exc_info], "a traceback in the server log"


@pytest.fixture(scope="module")
def server(landmarker_model):
    """No source, no token (loopback), one foreign origin allowed."""
    config = ServeConfig(cors_origins=(APP_ORIGIN,), max_image_bytes=300_000,
                         max_frame_bytes=300_000)
    classifier = Scripted(switch=10**9)
    app = create_app(EmotionEstimator(classifier), None, config)
    with running(app, config) as address:
        yield address, app.state.server, classifier


def request(url: str, data: bytes | None = None, headers: dict | None = None,
            method: str | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def raw_ws_status(address: str, path: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket handshake sent with exactly these extra headers."""
    host, port = address.split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(sock.recv(1024).split(b" ", 2)[1])


# --- Host and Origin -------------------------------------------------------------------------

def test_a_rebound_host_name_gets_nothing(server):
    address, _, _ = server
    port = address.split(":")[1]
    for path in ("/", "/healthz", "/metrics", "/v1/video.mjpg"):
        status, body, _ = request(f"http://{address}{path}",
                                  headers={"Host": f"evil.example:{port}"})
        assert status == 403 and json.loads(body) == {"error": "host not allowed"}
    assert request(f"http://{address}/healthz", headers={"Host": f"localhost:{port}"})[0] == 200
    for path in ("/v1/stream", "/v1/frames"):
        assert raw_ws_status(address, path, {"Host": f"evil.example:{port}"}) == 403
        assert raw_ws_status(address, path, {"Host": address}) == 101


def test_foreign_pages_are_refused_allowed_origins_and_same_origin_pass(server):
    address, _, classifier = server
    for path in ("/v1/stream", "/v1/frames"):
        assert raw_ws_status(address, path, {"Host": address,
                                             "Origin": "http://evil.example"}) == 403
        assert raw_ws_status(address, path, {"Host": address, "Origin": "null"}) == 403
        assert raw_ws_status(address, path, {"Host": address, "Origin": APP_ORIGIN}) == 101
        assert raw_ws_status(address, path, {"Host": address,
                                             "Origin": f"http://{address}"}) == 101
    calls = classifier.calls
    face = encoded(".jpg", 64, 64)
    status, body, _ = request(f"http://{address}/v1/analyze", face,
                              {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403 and "cross-origin" in json.loads(body)["error"]
    status, _, _ = request(f"http://{address}/v1/analyze", face,
                           {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"})
    assert status == 403 and classifier.calls == calls  # refused before any work
    status, _, headers = request(f"http://{address}/v1/analyze", face, {"Origin": APP_ORIGIN})
    assert status == 200 and headers["access-control-allow-origin"] == APP_ORIGIN
    status, _, headers = request(f"http://{address}/v1/analyze", method="OPTIONS", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert status == 200 and headers["access-control-allow-origin"] == APP_ORIGIN
    assert request(f"http://{address}/v1/analyze", face)[0] == 200  # no Origin: not a browser


# --- images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(HEADER_BOMBS))
def test_bombs_get_413_at_once_on_analyze(server, name):
    address, _, _ = server
    start = time.perf_counter()
    status, body, _ = request(f"http://{address}/v1/analyze", HEADER_BOMBS[name]())
    assert status == 413 and json.loads(body)["error"].startswith("image too large")
    assert time.perf_counter() - start < 1.0  # HTTP included; the rule itself: < 50 ms


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp"])
def test_tiny_images_get_400_not_500(server, ext):
    address, _, _ = server
    status, body, _ = request(f"http://{address}/v1/analyze", encoded(ext, 5, 5))
    assert status == 400 and json.loads(body) == {
        "error": "image too small (5x5; at least 8 px a side)"}


def test_frames_endpoint_answers_every_bad_frame_and_stays_open(server):
    address, _, _ = server
    with connect(f"ws://{address}/v1/frames", open_timeout=10) as conn:
        for data, status in ((HEADER_BOMBS["png_40000"](), 413), (encoded(".png", 3, 3), 400),
                             (encoded(".bmp", 7, 40), 400), (b"\x89PNG garbage", 400)):
            conn.send(data)
            msg = json.loads(conn.recv(timeout=10))
            assert msg["type"] == "error" and msg["status"] == status, msg
        conn.send(encoded(".png", 64, 48))
        msg = json.loads(conn.recv(timeout=20))
        assert msg["type"] == "frame" and msg["face_detected"] is False


def test_frames_newest_frame_wins_with_drops_counted_and_honest_latency(server, media):
    address, srv, _ = server
    blank = encoded(".jpg", 320, 240)
    face = (media / "single_face.jpg").read_bytes()
    dropped_before = srv.metrics.dropped._value.get()
    with connect(f"ws://{address}/v1/frames", open_timeout=10) as conn:
        for _ in range(15):
            conn.send(blank)
        conn.send(face)
        sent_last = time.monotonic()
        replies = []
        while True:
            try:
                replies.append((json.loads(conn.recv(timeout=3)), time.monotonic()))
            except TimeoutError:
                break
    frames = [(m, t) for m, t in replies if m["type"] == "frame"]
    last, got_last = frames[-1]
    assert last["face_detected"] is True  # the newest frame was analysed, not a queue
    assert len(frames) < 16 and len(frames) + last["dropped_frames"] == 16
    assert srv.metrics.dropped._value.get() - dropped_before == last["dropped_frames"]
    assert 0 < last["latency_ms"] <= (got_last - sent_last) * 1000 + 50


# --- health ----------------------------------------------------------------------------------

class Gated(FrameSource):
    """Blank frames until ``release`` is set; then ends, or fails when ``fail``."""

    is_live = True

    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.name, self.fail, self.release = "gated", fail, threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while not self.release.wait(0.05):
            yield Frame(i, i * 0.05, np.zeros((48, 64, 3), np.uint8))
            i += 1
        if self.fail:
            raise SourceError("camera unplugged")


@pytest.mark.parametrize("fail", [False, True])
def test_health_says_503_and_clients_are_told_when_the_source_is_gone(fail, landmarker_model):
    config = ServeConfig(keep_serving=True)
    source = Gated(fail)
    app = create_app(EmotionEstimator(Scripted(switch=10**9)), source, config)
    with running(app, config) as address:
        status, body, _ = request(f"http://{address}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        with connect(f"ws://{address}/v1/stream?events_only=1", open_timeout=10) as conn:
            source.release.set()
            msg = json.loads(conn.recv(timeout=10))
        state = "failed" if fail else "ended"
        assert msg["type"] == "status" and msg["source"] == "gated" and msg["state"] == state
        assert ("camera unplugged" in msg["error"]) if fail else ("error" not in msg)
        status, body, _ = request(f"http://{address}/healthz")
        assert status == 503 and json.loads(body)["status"] == f"source {state}"
        status, _, _ = request(f"http://{address}/v1/analyze", encoded(".png", 64, 64))
        assert status == 200  # kept serving: stills still work


def serve_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emotion_estimator", "serve", "--port", "0",
                             *args], stderr=subprocess.PIPE, text=True)


def test_serve_exits_1_when_its_source_ends_unless_told_to_keep_serving(tmp_path,
                                                                         landmarker_model):
    clip = write_video(tmp_path / "clip.avi", n=5)
    proc = serve_cli("--source", str(clip))
    try:
        assert proc.wait(timeout=60) == 1
        err = proc.stderr.read()
        assert f"emotion-estimator: error: source {clip} ended" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = serve_cli("--source", str(clip), "--keep-serving")
    try:
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stderr.readline()).group(1)
        deadline, status = time.monotonic() + 30, 200
        while status != 503 and time.monotonic() < deadline:
            status = request(f"http://127.0.0.1:{port}/healthz")[0]
            time.sleep(0.1)
        assert status == 503 and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0 and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


# --- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0", "--token", "a"], "at least 16 characters"),
    (["--host", "0.0.0.0", "--token", "aaaaaaaaaaaaaaaaaaaa"], "6 of them different"),
    (["--token", "   "], "without spaces"),
    (["--token", "tab\tinside-the-token"], "without spaces"),
    (["--cors-origin", "evil.example"], "not an origin"),
    (["--max-pixels", "0"], "--max-pixels"),
])
def test_weak_tokens_and_bad_policy_options_exit_2(args, message):
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_ESTIMATOR_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "emotion_estimator", "serve", *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_allowed_hosts_default_to_loopback_and_the_bound_name():
    from emotion_estimator.serve.security import allowed_hosts

    assert {"localhost", "127.0.0.1", "::1"} <= allowed_hosts("127.0.0.1")
    assert "robot.lan" in allowed_hosts("robot.lan")
    assert "evil.example" not in allowed_hosts("0.0.0.0")
    assert "api.example" in allowed_hosts("0.0.0.0", ("API.example:443",))
