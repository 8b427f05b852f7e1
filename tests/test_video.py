"""Frame sources on synthetic files written with cv2."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_estimator.sources import expand_inputs, open_source
from emotion_estimator.video import ImageSource, SourceError, VideoSource


def write_video(path: Path, n: int = 30, fps: float = 10.0, fourcc: str = "MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), i * 8, np.uint8))
    writer.release()
    return path


def test_video_frames_in_order_with_container_timestamps(tmp_path):
    source = open_source(write_video(tmp_path / "clip.avi", n=30, fps=10.0))
    assert isinstance(source, VideoSource) and source.fps == pytest.approx(10.0)
    frames = list(source)
    assert [f.index for f in frames] == list(range(30))
    assert np.allclose([f.timestamp_s for f in frames], np.arange(30) / 10.0, atol=1e-3)
    # brightness ramps with the index: the decode thread keeps frame order
    assert np.all(np.diff([f.image.mean() for f in frames]) > 0)
    assert source.warnings == []


def test_truncated_video_yields_decodable_frames_then_warns(tmp_path):
    full = write_video(tmp_path / "full.avi", n=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    source = open_source(cut)
    frames = list(source)
    assert 0 < len(frames) < 30
    assert len(source.warnings) == 1 and "truncated" in source.warnings[0]


def test_early_stop_releases_decoder_thread_at_once(tmp_path):
    import threading
    import time

    source = open_source(write_video(tmp_path / "clip.avi", n=30))
    frames = iter(source)
    next(frames)
    time.sleep(0.5)  # let the decoder fill its queue and block
    start = time.perf_counter()
    frames.close()  # what `break`, Ctrl-C or a closed stream do
    assert time.perf_counter() - start < 1.0
    assert not any(t.name == "decode" and t.is_alive() for t in threading.enumerate())


def test_image_source_and_errors(tmp_path):
    good = tmp_path / "img.png"
    cv2.imwrite(str(good), np.zeros((10, 12, 3), np.uint8))
    source = open_source(good)
    assert isinstance(source, ImageSource)
    (frame,) = list(source)
    assert frame.image.shape == (10, 12, 3) and frame.timestamp_s == 0.0

    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(good.read_bytes()[:20])
    with pytest.raises(SourceError, match="cannot decode image"):
        open_source(corrupt)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(SourceError, match="cannot decode video"):
        open_source(text)
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.mov")


def test_expand_inputs_takes_media_files_from_folders(tmp_path):
    for name in ("b.png", "a.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([str(tmp_path)])] == ["a.mp4", "b.png"]
    (tmp_path / "c.jpg").symlink_to(tmp_path / "gone.jpg")  # a broken link is not dropped
    found = expand_inputs([str(tmp_path)])
    assert [p.name for p in found] == ["a.mp4", "b.png", "c.jpg"]
    with pytest.raises(SourceError, match="broken symbolic link"):
        open_source(found[-1])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image or video"):
        expand_inputs([str(empty)])


class FakeCapture:
    """Stands in for cv2.VideoCapture(index): delivers ``good`` frames, then nothing."""

    def __init__(self, index: int, good: int = 3) -> None:
        self.left = good

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((48, 64, 3), np.uint8)

    def release(self) -> None:
        pass


@pytest.fixture()
def dropping_camera(monkeypatch):
    """cv2 cameras that give 3 frames then stop; a 0.2 s read timeout."""
    from emotion_estimator import video

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    original = video.CameraSource.__init__

    def quick(self, index, *, read_timeout_s=0.2):
        original(self, index, read_timeout_s=read_timeout_s)

    monkeypatch.setattr(video.CameraSource, "__init__", quick)


def test_camera_that_stops_delivering_raises_after_frames(dropping_camera):
    from emotion_estimator.video import CameraSource

    frames = []
    with pytest.raises(SourceError, match="stopped delivering"):
        for frame in CameraSource(0):
            frames.append(frame)
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(b.timestamp_s >= a.timestamp_s for a, b in zip(frames, frames[1:], strict=False))


def test_cli_keeps_rows_when_camera_drops_out(dropping_camera, tmp_path, landmarker_model,
                                              capsys):
    from emotion_estimator.cli import cli

    out = tmp_path / "rows.csv"
    assert cli(["blendshapes", "--camera", "0", "-o", str(out), "--no-progress"]) == 1
    assert "stopped delivering frames" in capsys.readouterr().err
    lines = out.read_text().splitlines()  # header + the frames seen: a live camera hands
    assert 2 <= len(lines) <= 1 + 3 and lines[-1].startswith("2,")  # over the newest (#2)
