"""Issue 11: no output path destroys data, bad arguments are refused up front, runs are safe.

One test (or a few) per numbered item of the issue; the generated cases are in
``test_properties.py``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_estimator import write_model
from test_video import write_video

from emotion_estimator.atomic import TempFile, atomic_path, resolve_output
from emotion_estimator.cli import cli
from emotion_estimator.outputs import format_for, frame_columns, open_writer

COLUMNS = frame_columns(("happy", "sad", "unknown"))
ROW = {"frame": 0, "timestamp_s": 0.0, "face_id": 0, "face_detected": True, "x": 1.0, "y": 2.0,
       "w": 3.0, "h": 4.0, "label": "sad", "p_happy": 0.1, "p_sad": 0.8, "p_unknown": 0.1}
PREVIOUS = "frame,label\n7,happy\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture()
def still(tmp_path) -> Path:
    """A small decodable image (no face)."""
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((24, 32, 3), 90, np.uint8))
    return path


def run(capsys, *args: str) -> tuple[int, str]:
    code = cli(list(args))
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The single error line of a failed run (and nothing else: no traceback, no usage)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("emotion-estimator: error:"), err
    return lines[0]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if ".part" in p.name]


def _fail_if_reached(*args, **kwargs):
    raise AssertionError("work started before the arguments were checked")


# --- 1. outputs that are links or special files are written through, never renamed over ----

def test_output_through_a_proc_fd_link_writes_the_file_and_keeps_the_link(tmp_path):
    """The /dev/stdout case: a link into /proc/self/fd must not be replaced by a file."""
    redirected = tmp_path / "stdout.txt"
    with open(redirected, "w") as fh:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{fh.fileno()}")
        assert resolve_output(link)[1]  # written in place
        with open_writer(str(link), None, COLUMNS) as writer:  # no suffix: jsonl, like "-"
            writer.write(ROW)
    assert link.is_symlink() and os.readlink(link).startswith("/proc/self/fd/")
    assert json.loads(redirected.read_text())["label"] == "sad"
    assert no_temp_files(tmp_path)


def test_output_through_a_symlink_replaces_the_target_not_the_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "rows.csv"
    target.write_text(PREVIOUS)
    target.chmod(0o640)
    link = tmp_path / "rows.csv"
    link.symlink_to(target)
    dangling = tmp_path / "new.csv"
    dangling.symlink_to(elsewhere / "created.csv")
    for path in (link, dangling):
        with open_writer(str(path), None, COLUMNS) as writer:
            writer.write(ROW)
    assert link.is_symlink() and dangling.is_symlink()
    assert pd.read_csv(target)["label"].tolist() == ["sad"]
    assert pd.read_csv(elsewhere / "created.csv")["label"].tolist() == ["sad"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the replaced file's mode is kept
    assert no_temp_files(tmp_path)


def test_device_output_stays_a_device(tmp_path):
    with atomic_path("/dev/null") as path:
        assert str(path) == "/dev/null"
        path.write_text("discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert format_for("/dev/null", None) == "jsonl"


# --- 2. negative camera index -------------------------------------------------------------

@pytest.mark.parametrize("command", ["analyze", "blendshapes"])
@pytest.mark.parametrize("index", ["-1", "-7", str(2**40)])
def test_bad_camera_index_is_refused_without_touching_opencv(command, index, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", _fail_if_reached)
    with pytest.raises(SystemExit) as exit_info:
        cli([command, "--camera", index])
    assert exit_info.value.code == 2
    assert "camera index must be 0 to" in one_error_line(capsys.readouterr().err)


def test_camera_source_refuses_a_negative_index(monkeypatch):
    from emotion_estimator.video import CameraSource, SourceError

    monkeypatch.setattr(cv2, "VideoCapture", _fail_if_reached)
    with pytest.raises(SourceError, match="0 or more"):
        CameraSource(-1)


# --- 3. an output naming an input ------------------------------------------------------------

@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "relative"])
@pytest.mark.parametrize("option", ["-o", "--annotate"])
def test_output_naming_an_input_is_refused(how, option, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", n=3, fourcc="mp4v")
    before = video.read_bytes()
    name = {"same": video, "symlink": tmp_path / "alias.mp4",
            "hardlink": tmp_path / "hard.mp4", "relative": Path("clip.mp4")}[how]
    if how == "symlink":
        name.symlink_to(video)
    elif how == "hardlink":
        os.link(video, name)
    monkeypatch.chdir(tmp_path)
    extra = ["-f", "csv"] if option == "-o" else []
    code, err = run(capsys, "analyze", str(video), option, str(name), *extra)
    assert code == 2
    assert "is one of the inputs" in one_error_line(err)
    assert video.read_bytes() == before


def test_two_outputs_naming_one_file_are_refused(still, tmp_path, capsys):
    code, err = run(capsys, "analyze", str(still), "-o", str(tmp_path / "x.mp4"), "-f", "csv",
                    "--annotate", str(tmp_path / "x.mp4"))
    assert code == 2 and "name the same file" in one_error_line(err)


# --- 4. several inputs, one bad: one rule --------------------------------------------------

@pytest.mark.parametrize("n_good", [0, 1, 2])
def test_a_bad_input_among_any_number_leaves_the_old_output_untouched(n_good, still, tmp_path,
                                                                      capsys, monkeypatch):
    monkeypatch.setattr("emotion_estimator.estimator.EmotionEstimator", _fail_if_reached)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "rows.csv"
    out.write_text(PREVIOUS)
    code, err = run(capsys, "analyze", *[str(still)] * n_good, str(bad), "-o", str(out))
    assert code == 2
    line = one_error_line(err)
    assert "cannot decode image" in line and "bad.jpg" in line
    if n_good:
        assert f"1 of {n_good + 1} inputs unusable, nothing written" in line
    assert out.read_text() == PREVIOUS
    assert no_temp_files(tmp_path)


def test_skip_bad_writes_the_good_inputs(still, tmp_path, capsys, landmarker_model, tiny_model):
    bad = tmp_path / "bad.mp4"
    bad.write_text("text, not a video")
    out = tmp_path / "rows.csv"
    out.write_text(PREVIOUS)
    code, err = run(capsys, "analyze", str(still), str(bad), "--skip-bad", "-o", str(out),
                    "--model", str(tiny_model))
    assert code == 0, err
    assert "warning: skipped: cannot decode video" in err
    df = pd.read_csv(out)
    assert df["source"].tolist() == [str(still)] and not df["face_detected"].any()


# --- 5. non-finite and out-of-range numbers ------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--smoothing-param", "time_constant_s=nan"], ["--smoothing-param", "time_constant_s=inf"],
    ["--smoothing-param", "hold_s=-0.1"], ["--smoothing-param", "margin=1.5"],
    ["--smoothing", "hmm", "--smoothing-param", "dwell_s=nan"],
    ["--smoothing", "hmm", "--smoothing-param", "evidence_s=-inf"],
    ["--smoothing-param", "=0.1"], ["--smoothing-param", "margin"],
    ["--forget-after", "nan"], ["--forget-after", "inf"], ["--forget-after", "-1"],
    ["--max-faces", "0"], ["--max-faces", "1000000"]])
def test_non_finite_and_out_of_range_values_are_refused(args, still, capsys, monkeypatch):
    monkeypatch.setattr("emotion_estimator.estimator.EmotionEstimator", _fail_if_reached)
    try:
        code, err = run(capsys, "analyze", str(still), *args)
    except SystemExit as exc:  # refused by the option's type while parsing
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    one_error_line(err)


def test_valid_smoothing_params_are_kept():
    import argparse

    from emotion_estimator.commands.analyze import smoothing_params

    args = argparse.Namespace(smoothing_param=["time_constant_s=0.5", " margin = 0.25"])
    assert smoothing_params(args) == {"time_constant_s": 0.5, "margin": 0.25}


# --- 6. outputs are checked before any work ---------------------------------------------

@pytest.mark.parametrize("case", ["folder", "no_folder", "parent_is_file", "loop", "empty",
                                  "read_only"])
def test_unusable_output_is_refused_before_any_work(case, still, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.setattr("emotion_estimator.estimator.EmotionEstimator", _fail_if_reached)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    locked = tmp_path / "locked.csv"
    locked.write_text(PREVIOUS)
    locked.chmod(0o444)
    if case == "read_only" and os.access(locked, os.W_OK):
        pytest.skip("running as a user that may write read-only files (root)")
    output, fragment = {
        "folder": (str(tmp_path), "is a folder"),
        "no_folder": (str(tmp_path / "nope" / "x.csv"), "does not exist"),
        "parent_is_file": (str(tmp_path / "a_file" / "x.csv"), "is not a folder"),
        "loop": (str(tmp_path / "loop"), "symbolic link loop"),
        "empty": ("", "empty file name"),
        "read_only": (str(locked), "not writable"),
    }[case]
    code, err = run(capsys, "analyze", str(still), "-o", output)
    assert code == 2
    assert fragment in one_error_line(err)
    assert ".part" not in err and no_temp_files(tmp_path)


# --- 7. SIGTERM like Ctrl-C; stale temp files --------------------------------------------

def test_sigterm_keeps_the_rows_so_far_and_leaves_no_temp_file(tmp_path, landmarker_model,
                                                               tiny_model):
    clip = write_video(tmp_path / "clip.avi", n=30)
    out = tmp_path / "rows.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotion_estimator", "analyze", *[str(clip)] * 30,
         "--model", str(tiny_model), "-o", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in tmp_path.glob(".rows.jsonl.*.part")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.stderr.close()
    assert code == 143, err
    assert "terminated; output so far is kept" in err and "Traceback" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 0 < len(rows) < 30 * 30
    assert no_temp_files(tmp_path)


def test_sigterm_handler_raises_once_and_is_restored():
    from emotion_estimator.errors import Terminated, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs at the next bytecode
    assert signal.getsignal(signal.SIGTERM) is before


def test_stale_temp_file_of_a_killed_run_is_removed_and_a_live_one_kept(tmp_path):
    out = tmp_path / "rows.csv"
    stale = tmp_path / ".rows.csv.abcd1234.part"  # what kill -9 leaves behind
    stale.write_text("half a table")
    other = tmp_path / ".rows.csv.x.abcd1234.part"  # another output's temp: not ours
    other.write_text("keep")
    live = TempFile(out)  # a concurrent writer of the same output, still running
    try:
        with open_writer(str(out), None, COLUMNS) as writer:
            writer.write(ROW)
        assert not stale.exists() and other.exists() and live.path.exists()
    finally:
        live.discard()
    assert pd.read_csv(out)["label"].tolist() == ["sad"]


# --- 8. one run per prepare folder ---------------------------------------------------------

def test_folder_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    from emotion_estimator.lock import FolderBusyError, folder_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from emotion_estimator.lock import folder_lock\n"
         f"with folder_lock({str(tmp_path / 'out')!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"in use by another run \(pid {holder.pid}\)"
        with pytest.raises(FolderBusyError, match=busy), folder_lock(tmp_path / "out"):
            pass
    finally:
        holder.kill()  # like kill -9: the kernel drops the lock
        holder.wait()
        holder.stdout.close()
    with folder_lock(tmp_path / "out") as folder:
        assert folder.is_dir()


def test_second_prepare_into_one_folder_exits_2_at_once(tmp_path, capsys):
    from emotion_estimator.lock import folder_lock

    with folder_lock(tmp_path / "out"):
        code, err = run(capsys, "prepare", "--fer2013", str(tmp_path / "fer.csv"), "--out",
                        str(tmp_path / "out"), "--no-progress")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock"]
    assert code == 2
    assert "is in use by another run" in one_error_line(err)
    # the first holder created the folder and left it empty: it is removed again
    assert not (tmp_path / "out").exists()


def test_prepare_failing_early_leaves_no_empty_folder(tmp_path, capsys):
    code, err = run(capsys, "prepare", "--fer2013", str(tmp_path / "missing.csv"), "--out",
                    str(tmp_path / "new" / "out"), "--no-progress")
    assert code == 2, err
    assert not (tmp_path / "new" / "out").exists()


# --- 9. a bad --landmarker is bad input ------------------------------------------------------

@pytest.mark.parametrize("command", ["analyze", "blendshapes"])
@pytest.mark.parametrize("case", ["missing", "wrong_file", "folder"])
def test_bad_landmarker_exits_2(command, case, still, tmp_path, capsys):
    wrong = tmp_path / "face_landmarker.task"
    wrong.write_bytes(b"not a model")
    path = {"missing": tmp_path / "nope.task", "wrong_file": wrong, "folder": tmp_path}[case]
    code, err = run(capsys, command, str(still), "--landmarker", str(path))
    assert code == 2
    assert "landmarker model" in one_error_line(err)


# --- 10. the smaller ones -------------------------------------------------------------------

def test_format_and_suffix_must_agree(tmp_path):
    assert format_for("rows.csv", "csv") == "csv"
    assert format_for("rows.out", "parquet") == "parquet"  # a suffix that names no format
    assert format_for("rows.ndjson", None) == "jsonl"
    with pytest.raises(ValueError, match="contradicts the suffix"):
        format_for("rows.csv", "parquet")
    with pytest.raises(ValueError, match="cannot tell the format"):
        format_for("rows.txt", None)
    with pytest.raises(ValueError, match="cannot tell the format"):
        format_for(str(tmp_path / "rows"), None)


@pytest.mark.parametrize("args,fragment", [
    (["-o", "rows.csv", "-f", "parquet"], "contradicts"), (["-o", "rows.xlsx"], "cannot tell"),
    (["--plot", "timeline.mp4"], "--plot: write an image"),
    (["--annotate", "/dev/null"], "--annotate: write a video")])
def test_output_names_that_lie_about_their_format_are_refused(args, fragment, still, capsys,
                                                              monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, "analyze", str(still), *args)
    assert code == 2 and fragment in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png"]


@pytest.mark.parametrize("output", ["-", "fifo"])
def test_parquet_into_a_pipe_is_refused_up_front(output, still, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # never opened: a writer would block until a reader came
    target = str(fifo) if output == "fifo" else output
    code, err = run(capsys, "analyze", str(still), "-o", target, "-f", "parquet")
    assert code == 2 and "parquet needs a seekable file" in one_error_line(err)


def test_plot_in_the_format_its_suffix_names(tmp_path):
    pytest.importorskip("matplotlib")
    from emotion_estimator.estimator import to_frame
    from emotion_estimator.timeline import plot_timeline

    rows = [{**ROW, "frame": i, "timestamp_s": i / 10} for i in range(5)]
    plot_timeline(to_frame(rows, COLUMNS), ("happy", "sad", "unknown"), tmp_path / "t.svg")
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:400]


def test_video_named_jpg_is_read_as_a_video(tmp_path):
    from emotion_estimator.sources import open_source
    from emotion_estimator.video import VideoSource

    clip = write_video(tmp_path / "clip.avi", n=12)
    named = tmp_path / "holiday.jpg"
    clip.rename(named)
    with open_source(named) as source:
        assert isinstance(source, VideoSource)
        assert len(list(source)) == 12


def test_annotated_video_of_a_one_pixel_high_still_is_written(tmp_path):
    from emotion_estimator.render import VideoWriter

    out = tmp_path / "thin.mp4"
    with VideoWriter(out, fps=10) as writer:
        writer.write(np.full((1, 7, 3), 200, np.uint8))  # MPEG-4 refuses a 1-pixel side
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[0] == 2  # padded (MPEG-4 may crop an odd width to even)


def test_large_still_is_downscaled_and_boxes_stay_in_original_pixels(
        media, tmp_path, capsys, landmarker_model, tiny_model):
    from emotion_estimator.video import MAX_STILL_SIDE, ImageSource

    image = cv2.imread(str(media / "single_face.jpg"))
    factor = 2 * MAX_STILL_SIDE / max(image.shape[:2])
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), cv2.resize(image, None, fx=factor, fy=factor))
    source = ImageSource(big)
    assert max(source.image.shape[:2]) <= MAX_STILL_SIDE
    assert source.scale == pytest.approx(0.5, rel=0.01)
    rows = {}
    for name in ("single_face.jpg", "big.jpg"):
        path = media / name if name == "single_face.jpg" else big
        out = tmp_path / f"{name}.csv"
        code, err = run(capsys, "analyze", str(path), "--model", str(tiny_model), "-o", str(out))
        assert code == 0, err
        rows[name] = pd.read_csv(out).iloc[0]
    for key in "xywh":
        assert rows["big.jpg"][key] == pytest.approx(rows["single_face.jpg"][key] * factor,
                                                     rel=0.03)


@pytest.mark.parametrize("case,fragment", [("loop", "symbolic link loop"),
                                           ("broken", "broken symbolic link"),
                                           ("fifo", "not a regular file")])
def test_inputs_that_are_not_files_are_named_for_what_they_are(case, fragment, tmp_path,
                                                                capsys):
    path = tmp_path / "input.mp4"
    if case == "loop":
        path.symlink_to(tmp_path / "other.mp4")
        (tmp_path / "other.mp4").symlink_to(path)
    elif case == "broken":
        path.symlink_to(tmp_path / "gone.mp4")
    else:
        os.mkfifo(path)
    code, err = run(capsys, "analyze", str(path))
    assert code == 2 and fragment in one_error_line(err)


def test_summary_of_many_face_ids_stays_short():
    from emotion_estimator.commands.analyze import MAX_FACE_LINES, SourceStats

    stat_ = SourceStats("clip.mp4", frames=18000, with_face=17000, seconds=600.0)
    for face_id in range(75):  # 75 ids: one long-lived face, many brief ones
        stat_.labels[face_id] = Counter({"happy": 5000} if face_id == 3 else {"sad": 20})
    lines = stat_.lines()
    assert len(lines) == 1 + MAX_FACE_LINES
    assert "  face 3: happy 100% of 5000 frames" in lines[1:-1]  # the long-lived face is named
    assert lines[-1] == f"  {75 - MAX_FACE_LINES + 1} more face ids (brief appearances): " \
                        f"sad 100% of {20 * (75 - MAX_FACE_LINES + 1)} frames"


# --- every usage error: one line ----------------------------------------------------------

@pytest.mark.parametrize("argv", [["analyze", "--max-faces", "x"], ["analyze", "--bogus", "a"],
                                  ["no-such-command"], [], ["blendshapes", "-f", "xlsx", "a"]])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err)
