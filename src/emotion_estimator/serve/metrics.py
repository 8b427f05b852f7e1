"""Prometheus metrics of one server (its own registry: several apps may live in a process)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401 - re-exported
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Frames, faces, fps, dropped frames, latency, clients, dropped messages, events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("emotion_frames", "Frames analysed", registry=r)
        self.faces = Counter("emotion_faces", "Faces analysed", registry=r)
        self.dropped = Counter("emotion_dropped_frames",
                               "Frames dropped by the newest-frame policy", registry=r)
        self.fps = Gauge("emotion_fps", "Frames analysed per second (last 2 s)", registry=r)
        self.latency = Histogram("emotion_latency_seconds", "Capture -> result",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.clients = Gauge("emotion_clients", "Connected clients", ["endpoint"], registry=r)
        self.messages_dropped = Counter("emotion_messages_dropped",
                                        "Messages dropped for slow clients", registry=r)
        self.events = Counter("emotion_events", "Label change events", registry=r)
        self._times: deque[float] = deque()

    def frame(self, faces: int, latency_s: float | None, dropped: int = 0) -> None:
        """Count one analysed frame (``dropped``: source drops since the last frame)."""
        self.frames.inc()
        self.faces.inc(faces)
        if dropped > 0:
            self.dropped.inc(dropped)
        if latency_s is not None:
            self.latency.observe(latency_s)
        now = time.monotonic()
        self._times.append(now)
        while self._times and now - self._times[0] > 2.0:
            self._times.popleft()
        span = now - self._times[0] if len(self._times) > 1 else 0.0
        self.fps.set((len(self._times) - 1) / span if span > 0 else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
