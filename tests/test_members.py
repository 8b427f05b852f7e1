"""An ensemble's members trained side by side (``train --seeds S,S --jobs N``): each in its own
process, the same runs as one after another, a member's error stops the rest."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from test_fusion import write_dataset  # noqa: E402

from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.training.fusion.train import CHECKPOINT  # noqa: E402

LABELS = ["happy", "sad", "fear", "sad", "happy", "angry", "sad", "happy", "sad", "happy"]
SPLITS = ["train"] * 8 + ["val"] * 2
ARGS = ("--kind", "fusion", "--seeds", "0,1", "--batch-size", "4", "--width", "8", "--device",
        "cpu", "--epochs", "2")


def _train(data, out, *extra: str) -> int:
    return cli(["train", str(data), "--out", str(out), *ARGS, *extra])


def test_side_by_side_members_are_the_runs_trained_one_after_another(tmp_path,
                                                                    capfd) -> None:
    data = write_dataset(tmp_path / "fer", ("pad",), LABELS, SPLITS)
    # as a user runs it: the CLI keeps native chatter off fd 2, the workers' lines still show
    done = subprocess.run([sys.executable, "-m", "emotion_estimator", "train", str(data),
                           "--out", str(tmp_path / "apart"), *ARGS, "--threads", "2",
                           "--jobs", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # each member's lines are marked with its seed (the two processes share one stderr)
    assert "seed 0: epoch   2/2" in done.stderr and "seed 1: epoch   2/2" in done.stderr
    assert _train(data, tmp_path / "serial", "--threads", "1") == 0
    for seed in (0, 1):
        side = torch.load(tmp_path / "apart" / f"seed-{seed}" / CHECKPOINT, weights_only=False)
        serial = torch.load(tmp_path / "serial" / f"seed-{seed}" / CHECKPOINT,
                            weights_only=False)
        # --threads 2 over 2 jobs: one thread each, as the one-after-another runs had
        assert side["config"]["threads"] == 1 and side["config"]["seed"] == seed
        for name, weights in serial["state_dict"].items():
            assert torch.equal(side["state_dict"][name], weights), name
    assert (tmp_path / "apart" / "ensemble.pt").is_file()
    seed_0 = torch.load(tmp_path / "apart" / "seed-0" / CHECKPOINT, weights_only=False)
    seed_1 = torch.load(tmp_path / "apart" / "seed-1" / CHECKPOINT, weights_only=False)
    assert not torch.equal(seed_0["state_dict"]["head.1.weight"],
                           seed_1["state_dict"]["head.1.weight"])  # two draws, not one twice

    # a finished member is kept, a lost one trained again (the same run: same seed, threads)
    kept = (tmp_path / "apart" / "seed-0" / CHECKPOINT).stat().st_mtime_ns
    for name in (CHECKPOINT, "state.pt"):
        (tmp_path / "apart" / "seed-1" / name).unlink()
    capfd.readouterr()  # (one member left trains in this process, on all of --threads)
    assert _train(data, tmp_path / "apart", "--threads", "1", "--jobs", "2") == 0
    assert "epoch   2/2" in capfd.readouterr().err
    assert (tmp_path / "apart" / "seed-0" / CHECKPOINT).stat().st_mtime_ns == kept
    again = torch.load(tmp_path / "apart" / "seed-1" / CHECKPOINT, weights_only=False)
    assert all(torch.equal(again["state_dict"][k], v) for k, v in seed_1["state_dict"].items())


def test_a_members_error_is_one_line_and_exit_2(tmp_path, capfd) -> None:
    data = write_dataset(tmp_path / "fer", ("pad",), LABELS, SPLITS)
    init = tmp_path / "init"
    for seed in (0, 1):  # each member's start is unreadable: both workers fail
        (init / f"seed-{seed}").mkdir(parents=True)
        (init / f"seed-{seed}" / CHECKPOINT).write_bytes(b"not a checkpoint")
    assert _train(data, tmp_path / "ens", "--jobs", "2", "--init", str(init)) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init: cannot read" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "ens" / "ensemble.pt").exists()


@pytest.mark.parametrize("extra", [("--jobs", "0"), ("--jobs", "2", "--seed", "3")])
def test_jobs_need_seeds_and_a_positive_count(tmp_path, capfd, extra) -> None:
    data = write_dataset(tmp_path / "fer", ("pad",), LABELS, SPLITS)
    code = cli(["train", str(data), "--out", str(tmp_path / "run"), "--kind", "fusion",
                *(["--seeds", "0,1"] if extra[1] == "0" else []), *extra])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--jobs" in err[0]
    assert not (tmp_path / "run").exists()


def _workers(pid: int) -> list[int]:
    """The member processes a CLI process started (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_member_killed_mid_run_stops_the_other_and_exits_with_one_line(tmp_path) -> None:
    data = write_dataset(tmp_path / "fer", ("pad",), LABELS, SPLITS)
    args = [*ARGS[:-1], "100000"]  # --epochs: far more than the test waits for
    cli_process = subprocess.Popen(
        [sys.executable, "-m", "emotion_estimator", "train", str(data), "--out",
         str(tmp_path / "ens"), *args, "--jobs", "2"], stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in cli_process.stderr],
                     daemon=True).start()
    try:
        seen: set[str] = set()
        while len(seen) < 2:  # both members are past an epoch
            line = lines.get(timeout=120)
            if ": epoch " in line:
                seen.add(line.split(":")[0])
        workers = _workers(cli_process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        assert cli_process.wait(timeout=60) == 1
    finally:
        cli_process.kill()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    errors = [line for line in rest if "error" in line]
    assert len(errors) == 1 and "stopped (killed by signal 9)" in errors[0], rest[-3:]
    assert not any("Traceback" in line for line in rest)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{workers[1]}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the other member is stopped, not left training
    assert not Path(f"/proc/{workers[1]}").exists()
