"""Live sources: newest frame wins, drops counted, reconnects, real-time replay (fast fakes)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_estimator.live import (
    LiveCamera,
    LiveFrame,
    NewestFrame,
    ReplaySource,
    StreamSource,
    latency_ms,
)
from emotion_estimator.sources import expand_inputs, is_url, open_source
from emotion_estimator.video import ImageSource, SourceError


def write_video(path: Path, n: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), i * 4 % 256, np.uint8))
    writer.release()
    return path


class FastCapture:
    """A cv2.VideoCapture stand-in: ``n`` frames, one every ``period_s``, then read fails."""

    def __init__(self, n: int = 10_000, period_s: float = 0.001, opened: bool = True) -> None:
        self.n, self.period_s, self.opened, self.reads = n, period_s, opened, 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.opened

    def get(self, prop: int) -> float:
        return 1000.0

    def read(self):
        if self.reads >= self.n:
            time.sleep(0.01)
            return False, None
        time.sleep(self.period_s)
        self.reads += 1
        return True, np.full((4, 4, 3), self.reads % 256, np.uint8)

    def release(self) -> None:
        self.opened = False


def slow_consumer(source, frames: int, work_s: float) -> list[LiveFrame]:
    seen = []
    for frame in source:
        seen.append(frame)
        assert latency_ms(frame) < 1000
        time.sleep(work_s)  # the analysis is much slower than the source
        if len(seen) == frames:
            break
    return seen


def test_newest_frame_mailbox_counts_what_it_overwrites():
    box = NewestFrame()
    for i in range(5):
        box.put(i)
    assert box.take() == 4 and box.dropped == 4
    box.put(5)
    box.finish()
    assert box.take() == 5 and box.take() is None
    failed = NewestFrame()
    failed.finish(SourceError("gone"))
    with pytest.raises(SourceError, match="gone"):
        failed.take()


def test_stream_faster_than_processing_hands_over_the_newest_frame_and_counts_drops():
    source = StreamSource("rtsp://robot.invalid/cam", opener=lambda url: FastCapture())
    try:
        seen = slow_consumer(source, frames=8, work_s=0.03)
    finally:
        source.close()
    indices = [f.index for f in seen]
    assert indices == sorted(indices) and min(np.diff(indices)) > 1  # frames were skipped
    assert source.dropped >= indices[-1] - len(seen) - 1 > 0  # and every skipped one counted
    # the frame handed over was captured just before it was taken: never a stale queue
    assert all(b.captured - a.captured >= 0.02 for a, b in zip(seen, seen[1:], strict=False))


def test_camera_thread_drops_stale_frames_and_stops_when_the_camera_does(monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FastCapture(n=300, period_s=0.0005))
    camera = LiveCamera(3, read_timeout_s=0.2)
    assert camera.name == "camera 3" and camera.is_live
    seen = []
    with pytest.raises(SourceError, match="camera 3 stopped delivering"), camera:
        for frame in camera:
            seen.append(frame)
            time.sleep(0.02)
    assert 1 <= len(seen) < 100 and camera.captured == 300
    assert camera.dropped == 300 - len(seen)
    assert seen[-1].index == 299  # the last frame is never lost


def test_stream_reconnects_then_fails_with_a_clear_error():
    opens = []

    def opener(url):
        opens.append(url)
        # 1st open: 5 frames then the connection drops; 2nd open fails; 3rd: 5 more frames;
        # then the server is gone for good
        if len(opens) in (1, 3):
            return FastCapture(n=5, period_s=0.002)
        return FastCapture(opened=False)

    source = StreamSource("rtsp://user:secret@cam.invalid/live", reconnects=2,
                          retry_wait_s=0.01, opener=opener)
    assert "secret" not in source.name
    frames = []
    with pytest.raises(SourceError, match="reconnect attempts failed"):
        for frame in source:
            frames.append(frame)
            time.sleep(0.004)
    source.close()
    assert source.reconnections == 2 and len(opens) == 6
    assert 2 <= len(frames) <= 10 and frames[-1].index == 9


def test_an_unreachable_url_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open stream .*2 attempts"):
        StreamSource("http://127.0.0.1:9/nothing.mjpg", reconnects=1, retry_wait_s=0.01)


def test_realtime_replay_keeps_the_file_rate_and_drops_when_behind(tmp_path):
    clip = write_video(tmp_path / "clip.avi", n=20, fps=50.0)  # 0.4 s
    source = open_source(clip, realtime=True)
    assert isinstance(source, ReplaySource) and source.is_live
    start = time.monotonic()
    with source:
        seen = [f for f in source if time.sleep(0.045) is None]  # ~22 fps of work
    elapsed = time.monotonic() - start
    assert 0.35 <= elapsed < 2.0  # paced at the file's rate, not as fast as it decodes
    assert 5 <= len(seen) <= 15 and source.dropped == 20 - len(seen)
    assert seen[-1].index == 19
    assert all(b.timestamp_s > a.timestamp_s for a, b in zip(seen, seen[1:], strict=False))


def test_looped_replay_runs_past_the_end_with_growing_timestamps(tmp_path):
    clip = write_video(tmp_path / "clip.avi", n=10, fps=100.0)  # 0.1 s
    with ReplaySource(clip, loop=True) as source:
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 25:
                break
    assert frames[-1].timestamp_s > 0.2
    assert all(b.timestamp_s > a.timestamp_s for a, b in zip(frames, frames[1:], strict=False))


def test_open_source_routes_urls_and_realtime_and_keeps_the_rest(tmp_path):
    assert is_url("rtsp://cam/1") and is_url("HTTPS://x/y.m3u8") and not is_url("clip.mp4")
    assert not is_url("c:/clips/a.mp4")
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(open_source(image, realtime=True), ImageSource)
    assert expand_inputs(["rtsp://cam/1", str(image)]) == ["rtsp://cam/1", image]
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.mp4", realtime=True)
    with pytest.raises(SourceError, match="camera index must be 0 or more|not available"):
        open_source(-1)


class MjpegHandler(http.server.BaseHTTPRequestHandler):
    """An IP camera's MJPEG stream (multipart/x-mixed-replace), 30 fps, at most 3 s."""

    jpegs: list[bytes] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(90):
                jpeg = self.jpegs[i % len(self.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
                time.sleep(1 / 30)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def mjpeg_url(media):
    """single_face.mp4 served as an MJPEG stream on 127.0.0.1 (an ephemeral port)."""
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    jpegs = []
    while len(jpegs) < 10 and (frame := cap.read())[0]:
        jpegs.append(cv2.imencode(".jpg", frame[1])[1].tobytes())
    cap.release()
    handler = type("Handler", (MjpegHandler,), {"jpegs": jpegs})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    server.shutdown()
    server.server_close()


def test_a_real_mjpeg_stream_opens_through_ffmpeg(mjpeg_url):
    source = open_source(mjpeg_url)
    assert isinstance(source, StreamSource)
    with source:
        frames = slow_consumer(source, frames=5, work_s=0.0)
    assert [f.image.shape for f in frames] == [(360, 640, 3)] * 5


def test_analyze_realtime_writes_rows_for_the_frames_it_kept(tmp_path, landmarker_model):
    from emotion_estimator.cli import cli

    clip = write_video(tmp_path / "clip.avi", n=15, fps=30.0)
    out = tmp_path / "rows.csv"
    assert cli(["analyze", str(clip), "--realtime", "-o", str(out), "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    assert 2 <= len(lines) <= 16 and lines[0].startswith("frame,timestamp_s")
