"""Benchmarks that travel: the growth cases, the stage profile, the peer's venv from FER_VENV."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_growth  # noqa: E402
import bench_speed  # noqa: E402
import benchlib  # noqa: E402


def test_growth_cases_scale_the_clip_and_tile_four_faces() -> None:
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(2)]
    assert bench_growth.case_frames(clip, (640, 360), 1) is clip  # 360p as is
    big = bench_growth.case_frames(clip, (1920, 1080), 1)
    assert [f.shape for f in big] == [(1080, 1920, 3)] * 2
    tiled = bench_growth.case_frames(clip, (1280, 720), 4)
    assert tiled[0].shape == (720, 1280, 3)
    tl, tr = tiled[0][:360, :640], tiled[0][:360, 640:]
    np.testing.assert_array_equal(tr, tl[:, ::-1])  # four faces, two of them mirrored
    np.testing.assert_array_equal(tiled[0][360:, 640:], tl)
    with pytest.raises(ValueError, match="4"):
        bench_growth.case_frames(clip, (1280, 720), 3)


def test_reports_name_the_cpu_and_the_usable_cores() -> None:
    text = benchlib.machine()
    assert f"{benchlib.cpu_count()} of " in text and "cores usable" in text
    assert "load average" in text and bench_speed.machine().startswith(text.split(",")[0])


def test_the_peer_venv_comes_from_fer_venv(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("FER_VENV", str(tmp_path / "elsewhere"))
    assert bench_speed.fer_venv() == tmp_path / "elsewhere"
    with pytest.raises(SystemExit) as info:
        bench_speed.fer_cmd("info")
    assert info.value.code == 2 and str(tmp_path / "elsewhere") in capsys.readouterr().err
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    monkeypatch.setenv("FER_VENV", str(tmp_path / "venv"))
    assert bench_speed.fer_cmd("info")[:1] == [str(python)]
    monkeypatch.delenv("FER_VENV")
    assert bench_speed.fer_venv() == BENCH / ".venv-fer"


@pytest.mark.skipif(not bench_growth.CLIP.is_file(), reason="needs ../shared/media")
def test_the_profile_accounts_for_every_stage(tmp_path) -> None:
    prof = bench_growth.profile(None, repeats=1)
    ms = prof["ms_per_frame"]
    assert list(ms) == ["decode", "landmarker", "features", "graph", "filter", "writer"]
    assert prof["frames"] == prof["faces_seen"] == 72 and all(v > 0 for v in ms.values())
    assert ms["landmarker"] > max(ms["features"], ms["graph"], ms["writer"])
    assert abs(sum(ms.values()) - prof["total_ms"]) < 1e-9
    assert prof["step_ms_per_face"] == pytest.approx(ms["features"] + ms["graph"])  # 1 a frame
    text = tmp_path / "growth.md"
    bench_growth.write_report({"created": "now", "command": "c", "machine": "m",
                               "profile": [prof]}, tmp_path)
    assert "| decode |" in text.read_text() and "per face" in text.read_text()
