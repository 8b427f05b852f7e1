"""`emotion-estimator batch` on the local process pool: rows, manifest, resumption, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

from emotion_estimator.batch.inputs import assign_ids, collect
from emotion_estimator.cli import cli
from emotion_estimator.errors import InputError

BATCH = [sys.executable, "-m", "emotion_estimator", "batch", "--no-progress"]


def cut(src: Path, dest: Path, start: int, stop: int) -> Path:
    """Frames [start, stop) of ``src`` as an MJPG .avi at the source's frame rate."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    for i in range(stop):
        ok, image = cap.read()
        assert ok, f"{src} has fewer than {stop} frames"
        if i < start:
            continue
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        writer.write(image)
    writer.release()
    cap.release()
    return dest


@pytest.fixture(scope="module", name="corpus")
def corpus_fixture(media, landmarker_model, tmp_path_factory) -> Path:
    """Two short real clips (a face; a face that leaves), a still and a broken file."""
    folder = tmp_path_factory.mktemp("corpus")
    cut(media / "single_face.mp4", folder / "a.avi", 0, 30)
    cut(media / "face_noface.mov", folder / "b.avi", 55, 95)
    (folder / "face.jpg").write_bytes((media / "single_face.jpg").read_bytes())
    (folder / "broken.mp4").write_text("not a video\n")
    return folder


def analyze_rows(path: Path, tmp_path: Path, *options: str) -> pd.DataFrame:
    out = tmp_path / f"{path.stem}-analyze.parquet"
    assert cli(["analyze", str(path), "-o", str(out), "--no-progress", *options]) == 0
    return pd.read_parquet(out)


def part(out: Path, input_id: str) -> pd.DataFrame:
    files = list((out / "rows" / f"source={input_id}").iterdir())
    assert [f.name for f in files] == ["part-0.parquet"], files  # one part, no temp files
    return pd.read_parquet(files[0])


def manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet").set_index("id")


def test_rows_equal_analyze_and_a_broken_input_is_recorded(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(["batch", str(corpus), "--out", str(out), "--workers", "2", "--blendshapes",
                "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3, err  # some failed
    assert "4 inputs: 3 done, 0 skipped (done before), 1 failed" in err
    assert "failed: broken:" in err and "Traceback" not in err
    for name in ("a.avi", "b.avi", "face.jpg"):
        expected = analyze_rows(corpus / name, tmp_path, "--blendshapes")
        pd.testing.assert_frame_equal(part(out, Path(name).stem), expected)
    m = manifest(out)
    assert m.loc["broken", "status"] == "failed"
    assert "cannot decode video" in m.loc["broken", "error"]
    assert not (out / "rows" / "source=broken").exists()
    assert list(m.loc[["a", "b", "face"], "status"]) == ["done"] * 3
    assert m.loc["a", "frames"] == m.loc["a", "frames_with_face"] == 30
    assert m.loc["b", "frames"] == 40 and 0 < m.loc["b", "frames_with_face"] < 40
    assert m.loc["a", "size"] == (corpus / "a.avi").stat().st_size
    assert m.loc["a", "fps"] > 0 and m.loc["a", "seconds"] > 0 and m.loc["a", "cpu_s"] > 0
    assert len(m.loc["a", "model_sha256"]) == 64 and m.loc["a", "version"]
    # one table over the Hive partitions, the source id as a column
    rows = pd.read_parquet(out / "rows")
    assert sorted(rows["source"].astype(str).unique()) == ["a", "b", "face"]
    assert str(rows["face_id"].dtype) == "Int64" and rows["face_id"].isna().any()
    assert len(rows) == m["rows"].sum()


def test_rerun_skips_done_retries_failed_and_refuses_changed_options(corpus, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.avi", "broken.mp4"):
        (folder / name).write_bytes((corpus / name).read_bytes())
    out = tmp_path / "out"
    assert cli(["batch", str(folder), "--out", str(out), "--workers", "1",
                "--no-progress"]) == 3
    first = manifest(out)
    (folder / "broken.mp4").write_bytes((corpus / "b.avi").read_bytes())  # fixed
    capsys.readouterr()
    assert cli(["batch", str(folder), "--out", str(out), "--no-progress"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().err
    second = manifest(out)
    assert second.loc["a", "status"] == "skipped"
    assert second.loc["a", "finished_at"] == first.loc["a", "finished_at"]
    assert second.loc["broken", "status"] == "done" and second.loc["broken", "frames"] == 40

    assert cli(["batch", str(folder), "--out", str(out), "--smoothing", "hmm",
                "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smoothing 'ema' -> 'hmm'" in err[0] and "--force" in err[0]
    assert manifest(out).loc["a", "status"] == "skipped"  # untouched
    assert cli(["batch", str(folder), "--out", str(out), "--smoothing", "hmm", "--force",
                "--no-progress"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().err
    expected = analyze_rows(folder / "a.avi", tmp_path, "--smoothing", "hmm")
    pd.testing.assert_frame_equal(part(out, "a"), expected)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for args in (["nothing-here.mp4", "--out", str(tmp_path / "o")],
                 [str(tmp_path / "file"), "--out", str(tmp_path / "file")],
                 [str(tmp_path / "file"), "--out", str(tmp_path / "o"), "--workers", "0"]):
        assert cli(["batch", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("emotion-estimator: error:"), err


def test_ids_from_names_csv_and_earlier_runs(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for p in ("x/clip.mp4", "y/clip.mp4", "x/my clip!.mov", "y/001.mp4"):
        (tmp_path / p).write_bytes(b"")
    listed = tmp_path / "list.csv"
    listed.write_text("path,id\nx/clip.mp4,interview 7\ny/clip.mp4,\ny/001.mp4,\n")
    found = assign_ids(collect([str(listed), str(tmp_path / "x" / "my clip!.mov")]))
    assert [i.id for i in found] == ["interview_7", "clip", "id001", "my_clip"]
    both = assign_ids(collect([str(tmp_path / "x"), str(tmp_path / "y")]))
    assert len({i.id for i in both}) == 4 and all(i.id.startswith(("clip-", "my_clip", "id001"))
                                                   for i in both)
    again = assign_ids(collect([str(tmp_path / "y")]), {str(tmp_path / "y/clip.mp4"): "old"})
    assert [i.id for i in again] == ["id001", "old"]
    listed.write_text("path,id\nx/clip.mp4,a\ny/clip.mp4,a\n")
    with pytest.raises(InputError, match="given to two inputs"):
        assign_ids(collect([str(listed)]))


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append((int(stat.parent.name), cmd))
    return out


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    """``check()``'s first true value, polled until ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_worker_killed_mid_task_is_retried(corpus, tmp_path):
    long = tmp_path / "long.avi"
    long.write_bytes((corpus / "b.avi").read_bytes())
    out = tmp_path / "out"
    proc = subprocess.Popen([*BATCH, str(long), str(corpus / "a.avi"), "--out", str(out),
                             "--workers", "1"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: list((out / "rows").glob("source=long/.*.part")),
                  what="the first task to start writing")
        workers = [pid for pid, cmd in _children(proc.pid) if "spawn_main" in cmd]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    m = manifest(out)
    assert m.loc["long", "attempts"] == 2 and m.loc["a", "attempts"] == 1
    assert m.loc["long", "status"] == "done" and m.loc["long", "frames"] == 40
    pd.testing.assert_frame_equal(part(out, "long"), analyze_rows(long, tmp_path))


def ten_copies(corpus: Path, tmp_path: Path) -> Path:
    """A folder of ten copies of the 30-frame clip: a run long enough to be killed in."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(10):
        (folder / f"clip{i}.avi").write_bytes((corpus / "a.avi").read_bytes())
    return folder


def start_batch(folder: Path, out: Path, *options: str) -> subprocess.Popen:
    """``batch`` in its own process group (to be killed whole, like a lost job)."""
    return subprocess.Popen([*BATCH, str(folder), "--out", str(out), *options],
                            stderr=subprocess.DEVNULL, start_new_session=True)


def done_count(out: Path) -> int:
    """Inputs the manifest records as done so far (0 while it cannot be read yet)."""
    try:
        return int((manifest(out)["status"] == "done").sum())
    except (OSError, ValueError):
        return 0


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_resume_after_killed_run_loses_and_duplicates_nothing(corpus, tmp_path):
    folder, out = ten_copies(corpus, tmp_path), tmp_path / "out"
    proc = start_batch(folder, out, "--workers", "1")
    wait_for(lambda: done_count(out) >= 2, what="two inputs in the manifest")
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the batch process and its workers, like a lost job
    proc.wait(timeout=30)
    killed = manifest(out)
    assert (killed["status"] == "done").sum() < 10
    assert subprocess.run([*BATCH, str(folder), "--out", str(out)],
                          capture_output=True, timeout=300).returncode == 0
    m = manifest(out)
    assert set(m["status"]) <= {"done", "skipped"} and len(m) == 10
    assert (m["status"] == "skipped").sum() >= 2  # resumed, not redone
    expected = analyze_rows(corpus / "a.avi", tmp_path)
    for i in range(10):
        pd.testing.assert_frame_equal(part(out, f"clip{i}"), expected)
    assert len(pd.read_parquet(out / "rows")) == 10 * 30


def test_output_to_a_url_and_the_python_api(corpus, tmp_path):
    from emotion_estimator.batch import BatchOptions, run_batch

    out = tmp_path / "url"
    result = run_batch([str(corpus / "face.jpg")], out.as_uri(), BatchOptions(), workers=1)
    assert result.counts == {"done": 1} and not result.failed
    pd.testing.assert_frame_equal(part(out, "face"), analyze_rows(corpus / "face.jpg", tmp_path))
    again = run_batch([str(corpus / "face.jpg")], out.as_uri(), BatchOptions(), workers=1)
    assert again.counts == {"skipped": 1} and again.frames == 0


def test_engine_ray_without_ray_is_refused_before_any_work(corpus, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    out = tmp_path / "o"
    assert cli(["batch", str(corpus / "face.jpg"), "--out", str(out), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "emotion-estimator[distributed]" in err[0], err
    assert not out.exists()


def test_a_second_run_into_the_same_folder_is_refused(corpus, tmp_path, capsys):
    from emotion_estimator.lock import folder_lock

    out = tmp_path / "out"
    with folder_lock(out):  # another run holds the folder
        assert cli(["batch", str(corpus / "face.jpg"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another run" in err[0], err
    assert not (out / "manifest.parquet").exists()
