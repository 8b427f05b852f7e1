"""The per-frame work of the server on threads, through :meth:`EmotionEstimator.stream`.

:class:`LivePipeline` runs the shared loop over the live source; :class:`FramesSession` runs
it over the frames one ``/v1/frames`` client sends (its own tracker and filters). Both hand
each result to :class:`Publisher`, which builds the messages, counts metrics, keeps the
newest result for the dashboard and passes the messages to the hub on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import describe
from ..estimator import EmotionEstimator, FrameResult
from ..live import LiveFrame, latency_ms
from ..video import Frame, FrameSource
from .hub import Hub
from .messages import EventDetector, dumps, frame_message
from .metrics import Metrics


class Publisher:
    """Result -> messages, metrics, the newest result; messages go to ``hub`` on ``loop``."""

    def __init__(self, hub: Hub, metrics: Metrics, classes: tuple[str, ...]) -> None:
        self.hub, self.metrics, self.classes = hub, metrics, classes
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._latest_msg: dict[str, Any] | None = None  # the frame message of ``_latest``
        self._jpeg: tuple[FrameResult | None, bytes | None] = (None, None)

    def __call__(self, result: FrameResult, source: str, frame: LiveFrame | None,
                 detector: EventDetector, dropped: int = 0,
                 new_drops: int = 0) -> list[dict[str, Any]]:
        latency = latency_ms(frame) if frame is not None else None
        msg = frame_message(result, source, frame, latency, dropped)
        events = detector(result, source, frame)
        with self._lock:
            self.metrics.frame(len(result.faces), None if latency is None else latency / 1000,
                               new_drops)
            self._latest, self._latest_msg = result, msg
        if events:
            self.metrics.events.inc(len(events))
        texts = [("frame", dumps(msg)), *(("event", dumps(e)) for e in events)]
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self.hub.publish, texts)
        return [msg, *events]

    def jpeg(self) -> bytes | None:
        """The newest result drawn (boxes, labels, bars) as JPEG; one encoding per result."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[bytes | None, dict[str, Any] | None]:
        """The newest result drawn as JPEG and its ``frame`` message: one frame, so a page
        shows the picture and the table of the same moment."""
        with self._lock:
            latest, msg = self._latest, self._latest_msg
        return self._draw(latest), msg

    def _draw(self, latest: FrameResult | None) -> bytes | None:
        import cv2

        from ..render import annotate

        with self._lock:
            done, data = self._jpeg
        if latest is None or latest.image is None:
            return None
        if done is latest:
            return data
        image = annotate(latest.image, latest, self.classes)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        data = buf.tobytes() if ok else None
        with self._lock:
            self._jpeg = (latest, data)
        return data


class LivePipeline:
    """The live source through the shared loop on one thread, until stopped or it ends.

    ``on_end`` is called (on that thread) when the source failed or ended by itself, not
    when :meth:`stop` stopped it.
    """

    def __init__(self, estimator: EmotionEstimator, source: FrameSource,
                 publish: Publisher, on_end: Callable[[], None] | None = None) -> None:
        self.estimator, self.source, self.publish = estimator, source, publish
        self.on_end = on_end
        self.state = "starting"
        self.error: str | None = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        detector, seen = EventDetector(), 0
        self.state = "running"
        try:
            for result in self.estimator.stream(self.source):
                if self._stop.is_set():
                    break
                frame = getattr(self.source, "current", None)
                if not isinstance(frame, LiveFrame) or frame.index != result.frame:
                    frame = None
                dropped = getattr(self.source, "dropped_before_current", 0)
                self.publish(result, self.source.name, frame, detector, dropped, dropped - seen)
                seen = dropped
                self.frames += 1
        except Exception as exc:  # noqa: BLE001 - reported by /healthz and the CLI
            self.error, self.state = describe(exc), "failed"
        else:
            self.state = "stopped" if self._stop.is_set() else "ended"
        if self.state != "stopped" and not self._stop.is_set() and self.on_end is not None:
            self.on_end()

    @property
    def gone(self) -> bool:
        """Whether the source failed or ended by itself (the server has nothing live)."""
        return self.state in ("failed", "ended")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and release the source (camera, stream or file)."""
        self._stop.set()
        if self.source.is_live:  # unblocks a loop waiting for the next frame
            self.source.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.source.close()


class PushSource(FrameSource):
    """Frames pushed by a client, as a live source (one at a time)."""

    is_live = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.current: LiveFrame | None = None
        self._queue: queue.Queue[LiveFrame | None] = queue.Queue(maxsize=2)
        self._count = 0
        self._t0 = time.monotonic()

    def push(self, image: np.ndarray, received: float, timestamp_s: float | None = None) -> None:
        """Queue a frame; its time is the sender's ``timestamp_s`` when given, else the
        seconds since the connection opened at its receipt."""
        ts = received - self._t0 if timestamp_s is None else timestamp_s
        self._queue.put(LiveFrame(self._count, ts, image, captured=received,
                                  wall=time.time() - (time.monotonic() - received)))
        self._count += 1

    def end(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self._queue.get()) is not None:
            self.current = frame
            yield frame


class FramesSession:
    """One ``/v1/frames`` client: its own thread, tracker and filters; ``dropped`` counts the
    frames the connection replaced by newer ones before they were analysed."""

    def __init__(self, estimator: EmotionEstimator, publish: Publisher, name: str) -> None:
        self.estimator, self.publish, self.name = estimator, publish, name
        self.source = PushSource(name)
        self.loop = asyncio.get_running_loop()
        self.results: asyncio.Queue[list[dict[str, Any]] | BaseException] = asyncio.Queue()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        detector, seen = EventDetector(), 0
        try:
            for result in self.estimator.stream(self.source):
                dropped = self.dropped
                out: list[dict[str, Any]] | BaseException = self.publish(
                    result, self.name, self.source.current, detector, dropped, dropped - seen)
                seen = dropped
                self.loop.call_soon_threadsafe(self.results.put_nowait, out)
        except Exception as exc:  # noqa: BLE001 - handed to the connection
            self.loop.call_soon_threadsafe(self.results.put_nowait, exc)

    async def analyze(self, image: np.ndarray, received: float,
                      timestamp_s: float | None = None) -> list[dict[str, Any]]:
        """The messages for one frame (the frame message, then any events)."""
        self.source.push(image, received, timestamp_s)
        out = await self.results.get()
        if isinstance(out, BaseException):
            raise out
        return out

    def close(self) -> None:
        """End the stream (its landmarker is released by the thread); blocking."""
        self.source.end()
        self._thread.join(timeout=10)
