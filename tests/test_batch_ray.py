"""`emotion-estimator batch --engine ray` on a local Ray (num_cpus=2) started by the tests."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest
from test_batch import (  # noqa: F401
    analyze_rows,
    corpus_fixture,
    done_count,
    manifest,
    part,
    start_batch,
    ten_copies,
    wait_for,
)

from emotion_estimator.batch import BatchOptions, run_batch
from emotion_estimator.errors import InputError

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="the worker-loss tests find processes in /proc (Linux)")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for this module; its GCS address for other drivers."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _ray_processes(title: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(title.encode()):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_rows_equal_analyze_and_local_and_a_broken_input_is_recorded(cluster, corpus,
                                                                     tmp_path):
    out = tmp_path / "ray"
    result = run_batch([str(corpus)], str(out), BatchOptions(blendshapes=True), engine="ray",
                       workers=2)
    assert result.counts == {"done": 3, "failed": 1}
    m = manifest(out)
    assert m.loc["broken", "status"] == "failed" and "cannot decode" in m.loc["broken", "error"]
    assert m.loc["a", "frames"] == 30 and m.loc["b", "frames"] == 40
    local = tmp_path / "local"
    run_batch([str(corpus)], str(local), BatchOptions(blendshapes=True), workers=1)
    for name in ("a.avi", "b.avi", "face.jpg"):
        rows = part(out, Path(name).stem)
        pd.testing.assert_frame_equal(rows, analyze_rows(corpus / name, tmp_path, "--blendshapes"))
        pd.testing.assert_frame_equal(rows, part(local, Path(name).stem))
    with pytest.raises(InputError, match="smoothing 'ema' -> 'none'"):
        run_batch([str(corpus)], str(out), BatchOptions(blendshapes=True, smoothing="none"),
                  engine="ray")


def test_worker_killed_mid_task_is_retried_by_ray(cluster, corpus, tmp_path):
    out = tmp_path / "out"
    killed: list[int] = []

    def killer() -> None:
        wait_for(lambda: list((out / "rows").glob("source=b/.*.part")), timeout=90)
        pids = _ray_processes("ray::_BatchActor.run")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.extend(pids)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = run_batch([str(corpus / "b.avi")], str(out), BatchOptions(), engine="ray",
                       workers=1, retries=2)
    thread.join(timeout=5)
    assert len(killed) == 1
    assert result.counts == {"done": 1}
    m = manifest(out)
    assert m.loc["b", "attempts"] == 2 and m.loc["b", "frames"] == 40
    pd.testing.assert_frame_equal(part(out, "b"), analyze_rows(corpus / "b.avi", tmp_path))


def test_resume_after_the_driver_is_killed(cluster, corpus, tmp_path):
    folder, out = ten_copies(corpus, tmp_path), tmp_path / "out"
    proc = start_batch(folder, out, "--engine", "ray", "--ray-address", cluster,
                       "--workers", "1")
    try:
        wait_for(lambda: done_count(out) >= 2, timeout=120, what="two inputs done")
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies; Ray ends its actors
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert (manifest(out)["status"] == "done").sum() < 10
    result = run_batch([str(folder)], str(out), BatchOptions(), engine="ray", workers=2)
    assert result.counts["skipped"] >= 2 and result.counts["done"] + result.counts[
        "skipped"] == 10
    expected = analyze_rows(corpus / "a.avi", tmp_path)
    for i in range(10):
        pd.testing.assert_frame_equal(part(out, f"clip{i}"), expected)
    assert len(pd.read_parquet(out / "rows")) == 10 * 30
