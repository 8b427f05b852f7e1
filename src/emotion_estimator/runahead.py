"""Run one stage of a per-frame loop ahead, on its own thread, in order.

:meth:`EmotionEstimator.stream <emotion_estimator.estimator.EmotionEstimator.stream>` runs
MediaPipe on frame ``n + 1`` while the caller's thread classifies, filters, draws and writes
frame ``n``: with two cores the frame rate is the slower of the two halves instead of their
sum. The stage sees the items in order on one thread (MediaPipe's VIDEO mode needs that), the
caller gets ``(item, result)`` pairs in the same order, and an error of the source or the
stage is raised in the caller's thread at the place it happened, after every earlier pair.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()
JOIN_S = 10.0  # closing waits this long for the stage to finish the item it is on


class _Failed:
    """An exception raised by the source or the stage, carried to the caller's thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def run_ahead(items: Iterable[T], stage: Callable[[T], R], depth: int = 2,
              name: str = "run-ahead") -> Iterator[tuple[T, R]]:
    """``(item, stage(item))`` for each item, computed up to ``depth`` items ahead on a thread.

    ``depth=0`` runs everything in the caller's thread, one item at a time (no thread: the
    low-power path), with the same results. Closing the iterator early (``break``, an error,
    Ctrl-C in the caller) stops the thread before the next item reaches the stage and waits
    for the item in flight, so the stage's resources can be released right after.
    """
    if depth < 0:
        raise ValueError("depth must be 0 or more")
    if depth == 0:
        return ((item, stage(item)) for item in items)
    return _ahead(items, stage, depth, name)


def _ahead(items: Iterable[T], stage: Callable[[T], R], depth: int,
           name: str) -> Iterator[tuple[T, R]]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: object) -> bool:
        """Queue ``entry``; False once the caller has stopped reading (never blocks for ever)."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        source = iter(items)
        try:
            for item in source:
                if stop.is_set():  # the caller left: the stage must not start another item
                    return
                if not put((item, stage(item))):
                    return
        except BaseException as exc:  # noqa: BLE001 - every error goes to the caller
            put(_Failed(exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # a generator's own clean-up runs now, on this thread
                close()
        put(_DONE)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while (entry := q.get()) is not _DONE:
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry
    finally:
        stop.set()
        thread.join(JOIN_S)
