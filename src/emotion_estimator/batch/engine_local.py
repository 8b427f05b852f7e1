"""``--engine local``: a pool of worker processes, each holding one :class:`Worker`.

The parent hands each worker one input at a time, so it always knows which input a worker
holds: a worker that dies (killed, out of memory, a crash in native code) is replaced and its
input is retried, up to ``retries`` times; the other workers carry on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .inputs import BatchInput
from .manifest import FAILED, BatchOptions, Record

OnRecord = Callable[[Record], None]
OnFrames = Callable[[int], None]


def cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _worker_main(options: BatchOptions, out: str, conn: Connection) -> None:
    """A pool worker: build the Worker once, then run inputs until told to stop."""
    from ..errors import describe
    from .tasks import Worker

    parent = os.getppid()

    def progress(n: int) -> None:
        if os.getppid() != parent:  # the batch process is gone: stop, do not linger
            os._exit(1)
        conn.send(("frames", n))

    try:
        worker = Worker(options, out)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", describe(exc)))
        return
    conn.send(("ready", worker.name))
    try:
        while (task := conn.recv()) is not None:
            input_id, path, attempt = task
            conn.send(("record", worker.run(input_id, path, attempt, progress)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        worker.close()


@dataclass
class _Slot:
    process: Any
    conn: Connection
    task: tuple[BatchInput, int] | None = None
    ready: bool = False


class LocalEngine:
    """Runs inputs on ``workers`` local processes (spawned: no state shared with the parent)."""

    name = "local"

    def __init__(self, options: BatchOptions, out: str, workers: int | None = None,
                 retries: int = 2) -> None:
        self.options, self.out = options, out
        self.workers = max(1, workers or cores())
        self.retries = retries
        self._ctx = mp.get_context("spawn")

    def _start(self) -> _Slot:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(self.options, self.out, child),
                                    daemon=True, name="emotion-batch-worker")
        process.start()
        child.close()
        return _Slot(process, parent)

    def run(self, inputs: list[BatchInput], on_record: OnRecord, on_frames: OnFrames) -> None:
        """Process all inputs; ``on_record`` gets each finished input's record."""
        pending = deque((inp, 1) for inp in inputs)
        slots = [self._start() for _ in range(min(self.workers, len(inputs)))]
        try:
            while pending or any(s.task for s in slots):
                for slot in slots:
                    if slot.ready and slot.task is None and pending:
                        slot.task = pending.popleft()
                        inp, attempt = slot.task
                        slot.conn.send((inp.id, inp.path, attempt))
                waitables = [s.conn for s in slots] + [s.process.sentinel for s in slots]
                ready = set(wait(waitables))
                for i, slot in enumerate(slots):
                    if slot.conn not in ready and slot.process.sentinel not in ready:
                        continue
                    alive = True
                    while alive and slot.conn.poll():  # drain: a record may precede a death
                        alive = self._receive(slot, on_record, on_frames)
                    if not alive or not slot.process.is_alive():
                        slots[i] = self._replace(slot, pending, on_record)
        finally:
            for slot in slots:
                self._stop(slot)

    def _receive(self, slot: _Slot, on_record: OnRecord, on_frames: OnFrames) -> bool:
        """Handle one message; False when the worker's pipe is closed (it died)."""
        try:
            kind, value = slot.conn.recv()
        except (EOFError, OSError):
            slot.conn.close()
            return False
        if kind == "frames":
            on_frames(value)
        elif kind == "ready":
            slot.ready = True
        elif kind == "record":
            slot.task = None
            on_record(value)
        elif kind == "error":
            raise RuntimeError(f"batch worker could not start: {value}")
        return True

    def _replace(self, slot: _Slot, pending: deque, on_record: OnRecord) -> _Slot:
        """A dead worker: retry its input (or record it failed) and start a new worker."""
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        if slot.task is not None:
            inp, attempt = slot.task
            if attempt <= self.retries:
                pending.appendleft((inp, attempt + 1))
            else:
                on_record(Record(id=inp.id, path=inp.path, status=FAILED, attempts=attempt,
                                 error=f"worker process died {attempt} times "
                                       f"(last exit code {code})"))
        self._stop(slot)
        return self._start()

    @staticmethod
    def _stop(slot: _Slot) -> None:
        try:
            if not slot.conn.closed:
                slot.conn.send(None)
        except OSError:
            pass
        slot.process.join(timeout=2)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=2)
        slot.conn.close()
