"""A batch run: plan (skip what is done), run the tasks on an engine, keep the manifest.

The manifest is rewritten (atomically) as inputs finish, at most every ``save_every_s``
seconds, and at the end. A run killed in between loses at most those seconds of records:
their inputs run again next time and overwrite their own partition, so no row is duplicated.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .. import __version__
from ..errors import InputError
from .inputs import BatchInput, assign_ids, collect
from .manifest import (
    DONE,
    FAILED,
    MANIFEST,
    ROWS,
    SKIPPED,
    BatchOptions,
    Record,
    part_path,
    read_manifest,
    write_manifest,
)
from .store import Store

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Where tasks run: ``run`` calls ``on_record`` once per input, ``on_frames`` as it goes."""

    def run(self, inputs: list[BatchInput], on_record: Callable[[Record], None],
            on_frames: Callable[[int], None]) -> None: ...


@dataclass
class BatchResult:
    """What a run did: every input's record, this run's seconds and frames."""

    records: list[Record]
    seconds: float
    frames: int = 0
    counts: Counter = field(default_factory=Counter)

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if r.status == FAILED]


def model_identity(options: BatchOptions) -> tuple[str, tuple[str, ...]]:
    """The model's sha256 and classes (loads it: a bad model is an input error here)."""
    from ..assets import sha256_of
    from ..classifier import EmotionClassifier, resolve_model

    try:
        clf = EmotionClassifier.load(options.model)
    except (OSError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    return sha256_of(resolve_model(options.model)), tuple(clf.classes)


def check_options(previous: dict[str, Record], signature: str, model_sha: str) -> str | None:
    """Why the earlier results in the folder do not match these options (None: they do)."""
    for rec in previous.values():
        if not rec.finished:
            continue
        if rec.model_sha256 != model_sha:
            return f"model (sha256 {rec.model_sha256[:12]} -> {model_sha[:12]})"
        if rec.options != signature:
            old, new = json.loads(rec.options or "{}"), json.loads(signature)
            changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(new | old)
                       if old.get(k) != new.get(k)]
            return ", ".join(changed) or "options"
    return None


def make_engine(name: str, options: BatchOptions, out: str, workers: int | None, retries: int,
                ray_address: str | None) -> Engine:
    if name == "local":
        from .engine_local import LocalEngine

        return LocalEngine(options, out, workers, retries)
    if name == "ray":
        from .engine_ray import RayEngine

        return RayEngine(options, out, workers, retries, ray_address)
    raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def _unchanged(rec: Record | None, inp: BatchInput, store: Store) -> bool:
    """An earlier record that still holds: finished, same file, size and modification time
    (a record without one, from an older version, counts as changed), part present."""
    if rec is None or not rec.finished or rec.path != inp.path:
        return False
    try:
        st = os.stat(inp.path)
    except OSError:
        return False
    return (rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns
            and store.exists(part_path(inp.id)))


class _Progress:
    """A bar over inputs with the frame count and rate beside it (stderr)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.frames, self.start = 0, time.perf_counter()
        self.bar = tqdm(total=total, unit="input", file=sys.stderr, disable=not enabled or None,
                        desc="batch")

    def add_frames(self, n: int) -> None:
        self.frames += n
        rate = self.frames / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.frames} frames, {rate:.0f} frames/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


def run_batch(items: Iterable[str], out: str, options: BatchOptions, *, engine: str = "local",
              workers: int | None = None, retries: int = 2, force: bool = False,
              ray_address: str | None = None, progress: bool = False,
              save_every_s: float = 2.0, recursive: bool = False,
              log: Callable[[str], None] | None = None) -> BatchResult:
    """Analyse every input into ``out/rows/source=<id>/part-0.parquet`` + ``out/manifest.parquet``.

    Inputs done by an earlier run with the same options and model are skipped; failed ones
    run again. Earlier results made with other options raise :class:`InputError` unless
    ``force`` (which discards them first). Folders are scanned below too when ``recursive``;
    what a scan leaves out is said through ``log``.
    """
    log = log or (lambda line: None)
    found = collect(items, recursive, log)
    if not found:
        raise InputError("no inputs")
    model_sha, _ = model_identity(options)
    runner = make_engine(engine, options, out, workers, retries, ray_address)  # Ray importable?
    try:
        store = Store(out)
    except ValueError as exc:
        raise InputError(f"cannot use output {out}: {exc}") from exc
    with contextlib.ExitStack() as stack:
        if store.local is not None:  # a second run into the same folder: exit 2 at once
            from ..lock import folder_lock

            stack.enter_context(folder_lock(store.local))
        return _run(found, store, options, model_sha, runner, force, progress, save_every_s,
                    log)


def _run(found: list[tuple[str, str | None]], store: Store, options: BatchOptions,
         model_sha: str, runner: Engine, force: bool, progress: bool, save_every_s: float,
         log: Callable[[str], None]) -> BatchResult:
    """The run proper, with the output folder locked."""
    try:
        store.makedirs()
        previous = read_manifest(store)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot use output {store.root}: {exc}") from exc
    inputs = assign_ids(found, {r.path: r.id for r in previous.values()})
    signature = options.signature()
    changed = check_options(previous, signature, model_sha)
    if changed and not force:
        raise InputError(f"{store.uri('')} holds results made with other options: {changed}; "
                         "rerun with --force to discard them, or choose another --out")
    if changed or (force and previous):
        log(f"--force: discarding the earlier results in {store.uri('')}")
        store.delete_dir(ROWS)
        previous = {}

    records = dict(previous)
    todo = []
    for inp in inputs:
        if _unchanged(previous.get(inp.id), inp, store):
            records[inp.id].status = SKIPPED
        else:
            todo.append(inp)
    bar = _Progress(len(inputs), progress)
    bar.bar.update(len(inputs) - len(todo))
    saved = time.monotonic()
    this_run: list[Record] = []

    def on_record(rec: Record) -> None:
        nonlocal saved
        if not rec.model_sha256:  # a record the engine made for a lost worker
            rec.model_sha256, rec.options, rec.version = model_sha, signature, __version__
        records[rec.id] = rec
        this_run.append(rec)
        bar.bar.update()
        if time.monotonic() - saved >= save_every_s:
            write_manifest(store, records)
            saved = time.monotonic()

    start = time.perf_counter()
    write_manifest(store, records)
    try:
        if todo:
            runner.run(todo, on_record, bar.add_frames)
    finally:
        write_manifest(store, records)
        bar.close()
        if removed := store.discard_partial(ROWS):  # workers stopped mid-write (SIGTERM)
            log(f"removed {removed} unfinished temp file(s) in {store.uri(ROWS)}")
    ours = [records[i.id] for i in inputs]
    return BatchResult(ours, time.perf_counter() - start, sum(r.frames for r in this_run),
                       Counter(r.status for r in ours))


__all__ = ["DONE", "FAILED", "MANIFEST", "SKIPPED", "BatchResult", "run_batch"]
