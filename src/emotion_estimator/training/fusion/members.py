"""Train an ensemble's members (one fusion run per seed), one after another or side by side.

Side by side (``jobs`` > 1) each member is its own process with ``threads // jobs`` torch
threads: on a 2-core CPU two one-thread members train in about two thirds of the time the
same two take one after the other on two threads (small convolutions do not use a second
thread fully). A finished member is kept, an interrupted one resumed, as one after another.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .data import FusionSplit
from .train import CHECKPOINT, FusionConfig, train_fusion


def member_runs(out: Path, seeds: Sequence[int]) -> list[Path]:
    """The run folder of each seed: ``OUT/seed-S``."""
    return [out / f"seed-{s}" for s in seeds]


def member_config(config: FusionConfig, seed: int) -> FusionConfig:
    """One member's config: its seed, and its own start (``INIT/seed-S``) where that exists."""
    init = config.init and Path(config.init) / f"seed-{seed}"
    return replace(config, seed=seed, init=str(init) if init and init.is_dir() else config.init)


def train_members(config: FusionConfig, out: Path, seeds: Sequence[int], *, jobs: int = 1,
                  splits: Callable[[], dict[str, FusionSplit] | None] = lambda: None,
                  log: Callable[[str], None] | None = None) -> list[Path]:
    """Train each seed's run that is not finished; returns every seed's run folder.

    ``splits`` is asked once, only when a member is left to train: the members share its
    rows (a teacher's targets are computed once); None lets each member read its data.
    Side by side, each member's log lines reach ``log`` (default: stderr) marked with its seed.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    runs = member_runs(out, seeds)
    todo = [(member_config(config, s), run) for s, run in zip(seeds, runs, strict=True)
            if not (run / CHECKPOINT).is_file()]
    if not todo:
        return runs
    shared = splits()
    if jobs <= 1 or len(todo) == 1:
        for member, run in todo:
            train_fusion(member, run, resume=True, log=log, splits=shared)
        return runs
    threads = max(1, config.threads // jobs)
    context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    # the workers' lines come back through a queue: their fd 2 may be /dev/null (quiet CLI)
    lines = context.SimpleQueue()
    with context.Pool(min(jobs, len(todo)), _speak_through, (lines,)) as pool:
        pending = [pool.apply_async(_train_member, (replace(member, threads=threads), run,
                                                    shared)) for member, run in todo]
        while pending:
            pending[0].wait(0.5)
            while not lines.empty():
                log(lines.get())
            for result in [r for r in pending if r.ready()]:
                result.get()  # a member's error is raised here; leaving the block stops the rest
                pending.remove(result)
        while not lines.empty():
            log(lines.get())
    return runs


_lines: Any = None  # a worker's way back to the parent's log


def _speak_through(lines: Any) -> None:
    global _lines
    _lines = lines


def _train_member(config: FusionConfig, run: Path, splits: dict[str, FusionSplit] | None
                  ) -> None:
    """One member in a worker process, its log lines marked with its seed."""
    def log(line: str) -> None:
        _lines.put(f"seed {config.seed}: {line}")

    train_fusion(config, run, resume=True, log=log, splits=splits)
