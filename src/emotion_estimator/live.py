"""Live frame sources: the newest frame wins, stale frames are dropped and counted.

A camera, a network stream (``rtsp://``, ``http(s)://`` MJPEG/HLS, anything OpenCV's FFmpeg
opens) or a file replayed at its own frame rate (``realtime``) is read on a capture thread that
keeps only the newest frame in a one-slot mailbox. The analysis loop takes whatever is newest
when it is ready for the next frame, so when it falls behind, the labels still describe the
present, and :attr:`LiveSource.dropped` says how many frames it never saw. Each frame is a
:class:`LiveFrame` that knows when it was captured, so front ends can report ``latency_ms``
(capture -> result).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .video import CameraSource, Frame, FrameSource, SourceError, VideoSource


@dataclass(frozen=True)
class LiveFrame(Frame):
    """A frame with its capture time: ``captured`` (monotonic s) and ``wall`` (Unix s)."""

    captured: float = 0.0
    wall: float = 0.0


def latency_ms(frame: Frame, now: float | None = None) -> float | None:
    """Milliseconds from ``frame``'s capture to ``now`` (monotonic); None if not live."""
    if not isinstance(frame, LiveFrame):
        return None
    return ((time.monotonic() if now is None else now) - frame.captured) * 1000.0


class NewestFrame:
    """A one-slot mailbox: ``put`` overwrites (counting the frame it replaces as dropped),
    ``take`` waits for the newest frame; ``finish`` ends it, with an error or without."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._done = False
        self._error: BaseException | None = None
        self.dropped = 0
        self.dropped_at_take = 0  # ``dropped`` when the last item was taken

    def put(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def take(self) -> Any:
        """The newest item, waiting for one; None at the end (raises the producer's error)."""
        with self._cond:
            while self._item is None and not self._done:
                self._cond.wait(0.5)
            item, self._item = self._item, None
            self.dropped_at_take = self.dropped
            if item is None and self._error is not None:
                raise self._error
            return item


class LiveSource(FrameSource):
    """Base of the live sources: subclasses implement :meth:`_capture`, which calls
    :meth:`_publish` for every frame until it returns or ``self._stop`` is set.

    ``current`` is the frame most recently handed to the consumer; ``captured`` counts frames
    taken from the device, ``dropped`` those replaced by a newer one before being read, and
    ``dropped_before_current`` those dropped before ``current`` was handed over.
    """

    is_live = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.current: LiveFrame | None = None
        self.captured = 0
        self._box = NewestFrame()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start: float | None = None

    @property
    def dropped(self) -> int:
        return self._box.dropped

    @property
    def dropped_before_current(self) -> int:
        return self._box.dropped_at_take

    def _capture(self) -> None:
        raise NotImplementedError

    def _publish(self, image: np.ndarray, timestamp_s: float | None = None) -> None:
        now = time.monotonic()
        self._start = now if self._start is None else self._start
        ts = now - self._start if timestamp_s is None else timestamp_s
        self._box.put(LiveFrame(self.captured, ts, image, captured=now, wall=time.time()))
        self.captured += 1

    def _run(self) -> None:
        try:
            self._capture()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._box.finish(exc if isinstance(exc, Exception) else None)
        else:
            self._box.finish()

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture {self.name}",
                                            daemon=True)
            self._thread.start()
        while (frame := self._box.take()) is not None:
            self.current = frame
            yield frame

    def close(self) -> None:
        """Stop the capture thread and release the device."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._release()

    def _release(self) -> None:
        """Release the device (after the capture thread stopped)."""


class LiveCamera(LiveSource):
    """A camera read on its own thread; the analysis gets the newest frame.

    Opening and reading are :class:`~emotion_estimator.video.CameraSource`'s (same errors: a
    camera that delivers nothing for ``read_timeout_s`` ends the stream with
    :class:`SourceError`); this class only moves them onto the capture thread.
    """

    def __init__(self, index: int, *, read_timeout_s: float = 5.0) -> None:
        self._camera = CameraSource(index, read_timeout_s=read_timeout_s)
        super().__init__(self._camera.name)
        self.fps = self._camera.fps

    def _capture(self) -> None:
        for frame in self._camera:
            if self._stop.is_set():
                return
            self._publish(frame.image)

    def _release(self) -> None:
        self._camera.close()


Opener = Callable[[str], Any]


def _ffmpeg_capture(url: str, timeout_s: float = 5.0) -> Any:
    """An OpenCV FFmpeg capture with open and read timeouts."""
    import cv2

    ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class StreamSource(LiveSource):
    """A network stream by URL; reconnects up to ``reconnects`` times in a row (waiting
    ``retry_wait_s``, then twice as long each time, at most ``max_wait_s``), then ends with
    :class:`SourceError`.

    ``opener(url)`` returns a ``cv2.VideoCapture``-like object (tests pass a fake).
    """

    def __init__(self, url: str, *, reconnects: int = 5, retry_wait_s: float = 0.5,
                 max_wait_s: float = 5.0, opener: Opener | None = None) -> None:
        super().__init__(_redact(url))
        self.url = url
        self.reconnects = reconnects
        self.retry_wait_s = retry_wait_s
        self.max_wait_s = max_wait_s
        self.reconnections = 0
        self._opener = opener or _ffmpeg_capture
        self._cap = self._open_with_retries()
        fps = self._cap.get(5)  # cv2.CAP_PROP_FPS
        self.fps = fps if fps and 0 < fps < 1000 else None

    def _try_open(self) -> Any | None:
        cap = self._opener(self.url)
        if cap is not None and cap.isOpened():
            return cap
        if cap is not None:
            cap.release()
        return None

    def _open_with_retries(self) -> Any:
        wait = self.retry_wait_s
        for attempt in range(self.reconnects + 1):
            if attempt:
                if self._stop.wait(wait):
                    break
                wait = min(wait * 2, self.max_wait_s)
            if (cap := self._try_open()) is not None:
                return cap
        raise SourceError(f"cannot open stream {self.name} "
                          f"({self.reconnects + 1} attempts; wrong URL or the server is down?)")

    def _capture(self) -> None:
        while not self._stop.is_set():
            ok, image = self._cap.read()
            if ok and image is not None:
                self._publish(image)
                continue
            if self._stop.is_set():
                return
            self._cap.release()
            self.reconnections += 1
            self.warnings.append(f"{self.name}: stream interrupted; reconnecting")
            try:
                self._cap = self._open_with_retries()
            except SourceError as exc:
                if self._stop.is_set():
                    return
                raise SourceError(f"{self.name} stopped delivering frames and "
                                  f"{self.reconnects} reconnect attempts failed") from exc

    def _release(self) -> None:
        self._cap.release()


class ReplaySource(LiveSource):
    """A video file played at its own frame rate as if it were live (``--realtime``).

    Frames are published at their container times; when the analysis is slower than the
    file, frames are dropped as from a camera. ``loop=True`` replays it until closed;
    ``speed`` plays it faster (a benchmark's source that outruns the analysis).
    """

    def __init__(self, path: str | os.PathLike, *, loop: bool = False,
                 speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        super().__init__(str(path))
        self.path = Path(path)
        self.loop = loop
        self.speed = speed
        self._video: VideoSource | None = VideoSource(self.path)  # opens: same errors
        self.fps = self._video.fps
        self.frame_count = None if loop else self._video.frame_count

    def _capture(self) -> None:
        t0 = time.monotonic()
        offset = 0.0
        step = 1.0 / (self.fps or 30.0)
        while not self._stop.is_set():
            video, self._video = self._video or VideoSource(self.path), None
            last = 0.0
            with video:
                for frame in video:
                    last = frame.timestamp_s
                    delay = t0 + (offset + last) / self.speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    if self._stop.is_set():
                        return
                    self._publish(frame.image, (offset + last) / self.speed)
                self.warnings.extend(w for w in video.warnings if w not in self.warnings)
            if not self.loop:
                return
            offset += last + step

    def _release(self) -> None:
        if self._video is not None:
            self._video.close()


def _redact(url: str) -> str:
    """The URL without its password (``user:pass@host`` -> ``user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.partition("@")
    if at and ":" in creds and "/" not in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url
