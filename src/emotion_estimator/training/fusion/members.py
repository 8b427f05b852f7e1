"""Train an ensemble's members (one fusion run per seed), one after another or side by side.

Side by side (``jobs`` > 1) each member is its own process with ``threads // jobs`` torch
threads: on a 2-core CPU two one-thread members took 97-113 s an epoch each, side by side,
against 72-89 s an epoch for one member on two threads, one after the other (small convolutions
do not use a second thread fully): a fifth to a third less wall time. A finished member is
kept, an interrupted one resumed, as one after another; the first that fails stops the rest.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing import connection
from pathlib import Path
from typing import Any

from ...errors import InputError, describe
from .data import FusionSplit
from .model import FusionProbabilities
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
                  log: Callable[[str], None] | None = None,
                  teacher: FusionProbabilities | None = None) -> list[Path]:
    """Train each seed's run that is not finished; returns every seed's run folder.

    ``splits`` is asked once, only when a member is left to train: the members share its
    rows (a teacher's targets are computed once); None lets each member read its data.
    Side by side, each member's log lines reach ``log`` (default: stderr) marked with its seed.
    ``teacher``: a consistent teacher for every member (``train_fusion``).
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
            train_fusion(member, run, resume=True, log=log, splits=shared, teacher=teacher)
        return runs
    _side_by_side(todo, jobs, max(1, config.threads // jobs), shared, log, teacher)
    return runs


def _side_by_side(todo: list[tuple[FusionConfig, Path]], jobs: int, threads: int,
                  shared: dict[str, FusionSplit] | None, log: Callable[[str], None],
                  teacher: FusionProbabilities | None = None) -> None:
    """At most ``jobs`` member processes at a time; their lines come back through a queue
    (their fd 2 may be /dev/null: the quiet CLI). The first member that fails or dies stops
    the others (each keeps its last finished epoch) and is raised as one line."""
    context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    lines = context.SimpleQueue()
    waiting, running, error = list(todo), [], None
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                member, run = waiting.pop(0)
                process = context.Process(target=_train_member, daemon=True,
                                          args=(replace(member, threads=threads), run, shared,
                                                lines, teacher))
                process.start()
                running.append((process, member.seed))
            connection.wait([p.sentinel for p, _ in running], timeout=0.5)
            error = _relay(lines, log) or error
            for process, seed in [r for r in running if not r[0].is_alive()]:
                running.remove((process, seed))
                error = _relay(lines, log) or error
                code = process.exitcode
                if code != 0:
                    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    raise error or RuntimeError(f"the member with seed {seed} stopped ({how}): "
                                                "run the same command again to resume")
    finally:
        for process, _ in running:
            process.terminate()
            process.join()


def _relay(lines: Any, log: Callable[[str], None]) -> Exception | None:
    """Pass the workers' waiting lines to ``log``; a worker's error comes back as itself."""
    error = None
    while not lines.empty():
        kind, seed, text = lines.get()
        if kind == "log":
            log(f"seed {seed}: {text}")
        else:
            error = InputError(text) if kind == "input" else RuntimeError(f"seed {seed}: {text}")
    return error


def _train_member(config: FusionConfig, run: Path, splits: dict[str, FusionSplit] | None,
                  lines: Any, teacher: FusionProbabilities | None = None) -> None:
    """One member in its own process, its log lines and any error sent to the parent."""
    try:
        train_fusion(config, run, resume=True, splits=splits, teacher=teacher,
                     log=lambda line: lines.put(("log", config.seed, line)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the parent says it once
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - the parent reports it as one line
        lines.put(("input" if isinstance(exc, InputError) else "error", config.seed,
                   describe(exc)))
        raise SystemExit(1) from None
