"""One batch task: an input's frames through the shared per-frame step into one Parquet part.

A :class:`Worker` lives as long as its process (a pool worker or a Ray actor): it loads the
classifier once and analyses input after input with ``EmotionEstimator.stream``, the loop
``analyze`` runs, so the rows equal ``analyze``'s on the same file. Each input gets a fresh
VIDEO-mode landmarker (``stream`` opens one per source): MediaPipe's video mode tracks faces
from frame to frame, and carrying that state from one file into the next would change rows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..errors import describe
from .manifest import DONE, FAILED, BatchOptions, Record, part_path, partition
from .store import Store

Progress = Callable[[int], None]


class Worker:
    """Analyses inputs into ``<out>/rows/source=<id>/part-0.parquet`` with fixed options."""

    def __init__(self, options: BatchOptions, out: str) -> None:
        from ..assets import sha256_of
        from ..classifier import resolve_model
        from ..estimator import EmotionEstimator

        self.options = options
        self.store = Store(out)
        self.estimator = EmotionEstimator(**options.estimator_kwargs())
        self.columns = self.estimator.columns(options.blendshapes)
        path = getattr(self.estimator.classifier, "path", None) or resolve_model(options.model)
        self.model_sha256 = sha256_of(Path(path))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, input_id: str, path: str, attempt: int = 1,
            progress: Progress | None = None) -> Record:
        """Analyse one input; a bad input gives a ``failed`` record, never an exception."""
        rec = Record(id=input_id, path=path, attempts=attempt, model_sha256=self.model_sha256,
                     options=self.options.signature(), version=__version__, worker=self.name)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            st = os.stat(path)  # before reading: a change while it runs shows next time
            rec.size, rec.mtime_ns = st.st_size, st.st_mtime_ns
            self._analyze(rec, progress)
            rec.status = DONE
        except Exception as exc:  # noqa: BLE001 - recorded in the manifest, the batch goes on
            rec.status, rec.error = FAILED, describe(exc)
            with contextlib.suppress(OSError):  # no stale rows from an earlier file
                self.store.delete_dir(partition(input_id))
        rec.seconds = round(time.perf_counter() - start, 3)
        rec.cpu_s = round(time.process_time() - cpu, 3)
        rec.fps = round(rec.frames / rec.seconds, 2) if rec.seconds > 0 else 0.0
        return rec

    def _analyze(self, rec: Record, progress: Progress | None) -> None:
        from ..outputs import ParquetWriter
        from ..sources import open_source

        with (self.store.writing(part_path(rec.id)) as tmp,
              open_source(rec.path, topic=self.options.topic) as source):
            writer = ParquetWriter(tmp, self.columns)
            try:
                for result in self.estimator.stream(source):
                    for row in result.rows(self.options.blendshapes):
                        writer.write(row)
                    rec.frames += 1
                    rec.frames_with_face += bool(result.faces)
                    if progress is not None and rec.frames % 25 == 0:
                        progress(25)
            finally:
                writer.close()
            rec.rows = writer.rows_written
            if progress is not None and rec.frames % 25:
                progress(rec.frames % 25)
            if source.warnings:  # a truncated tail: rows kept, the reason noted
                rec.error = source.warnings[0]

    def close(self) -> None:
        self.estimator.close()
