"""The numbers the node reports on ``/diagnostics``: fps, latency, dropped and bad frames.

``frames_dropped``: taken off the topic but replaced by a newer one before the worker was
free (newest frame wins); ``frames_lost_in_transport``: gaps in a publisher's sequence numbers
(best-effort samples the middleware overwrote or lost before we read them).

Counters are totals since start; fps and latency percentiles cover the last ``window_s``.
Bad input is counted per kind (``unsupported_encoding``, ``corrupt_image``, ``wrong_type``,
...) and each kind is logged once, with its first message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


class NodeStats:
    """Thread-safe counters of one node."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._done: deque[tuple[float, float]] = deque()  # (monotonic end, latency ms)
        self.received = 0
        self.processed = 0
        self.lost = 0  # never reached us: gaps in the publishers' sequence numbers
        self.bad: Counter[str] = Counter()
        self._last_seq: dict[bytes, int] = {}

    def frame_received(self, publisher: bytes = b"", seq: int | None = None) -> None:
        with self._lock:
            self.received += 1
            if seq is not None and seq > 0:
                last = self._last_seq.get(publisher)
                if last is not None and seq > last + 1:
                    self.lost += seq - last - 1
                self._last_seq[publisher] = seq

    def frame_done(self, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            now = time.monotonic()
            self._done.append((now, latency_ms))
            while self._done and self._done[0][0] < now - self.window_s:
                self._done.popleft()

    def bad_frame(self, kind: str) -> bool:
        """Count a bad frame of ``kind``; True the first time (the caller logs it then)."""
        with self._lock:
            self.bad[kind] += 1
            return self.bad[kind] == 1

    def snapshot(self, dropped: int) -> dict[str, float | int]:
        """Current values (``dropped``: the mailbox's count of frames replaced unseen)."""
        with self._lock:
            now = time.monotonic()
            recent = [(t, lat) for t, lat in self._done if t >= now - self.window_s]
            values: dict[str, float | int] = {
                "frames_received": self.received, "frames_processed": self.processed,
                "frames_dropped": dropped, "frames_lost_in_transport": self.lost,
                "frames_unsupported": sum(self.bad.values())}
            values.update({f"bad_{kind}": n for kind, n in sorted(self.bad.items())})
        span = (recent[-1][0] - recent[0][0]) if len(recent) > 1 else 0.0
        values["fps"] = round((len(recent) - 1) / span, 2) if span > 0 else 0.0
        if recent:
            lat = np.array([lat for _, lat in recent])
            values["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 2)
            values["latency_ms_p95"] = round(float(np.percentile(lat, 95)), 2)
        return values
