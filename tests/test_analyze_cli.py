"""`emotion-estimator analyze`: outputs on real media, live JSON lines, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_estimator import write_model
from test_video import write_video

from emotion_estimator.cli import cli
from emotion_estimator.video import Frame, FrameSource, SourceError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def run(capsys, *args: str) -> tuple[int, str]:
    code = cli(["analyze", *args])
    return code, capsys.readouterr().err


def assert_one_line_error(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("emotion-estimator: error:"), err
    assert fragment in lines[0], err


def test_json_lines_arrive_while_the_video_is_processed(media, landmarker_model, tiny_model):
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotion_estimator", "analyze", str(media / "face_noface.mov"),
         "--model", str(tiny_model), "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        running = proc.poll() is None  # the first frame is out before the video is done
        rows = [first, *(json.loads(line) for line in proc.stdout)]
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert running
    assert [r["frame"] for r in rows] == list(range(169))
    assert first["face_detected"] and first["face_id"] == 0 and first["label"] in (
        "happy", "sad", "unknown")
    assert sum(not r["face_detected"] for r in rows[72:]) >= 90  # the person has left


def test_annotated_video_plot_and_table(media, landmarker_model, tiny_model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    table, video, plot = tmp_path / "rows.parquet", tmp_path / "ann.mp4", tmp_path / "tl.png"
    code, err = run(capsys, str(media / "single_face.mp4"), "--model", str(tiny_model),
                    "-o", str(table), "--annotate", str(video), "--plot", str(plot),
                    "--no-progress")
    assert code == 0, err
    df = pd.read_parquet(table)
    assert len(df) == 72 and (df["face_id"] == 0).all()
    from emotion_estimator import EmotionEstimator

    api = EmotionEstimator(tiny_model).analyze_video(media / "single_face.mp4")
    pd.testing.assert_frame_equal(df, api)  # the CLI's file, read back, is the API's table
    assert list(df.columns[-3:]) == ["p_happy", "p_sad", "p_unknown"]
    assert "72 frames, 72 with a face" in err and "face 0:" in err
    annotated, original = cv2.VideoCapture(str(video)), cv2.VideoCapture(
        str(media / "single_face.mp4"))
    frames = 0
    while True:
        ok, image = annotated.read()
        if not ok:
            break
        if frames == 0:  # something is drawn on the face
            _, raw = original.read()
            x, y, w, h = (int(v) for v in df.loc[0, ["x", "y", "w", "h"]])
            drawn = np.abs(image.astype(int) - raw.astype(int))[y:y + h + 20, x:x + w]
            assert drawn.max() > 100
        frames += 1
    assert frames == 72
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multi_face_photo_gives_two_ids(media, landmarker_model, tiny_model, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code, err = run(capsys, str(media / "multi_face.jpg"), "--max-faces", "4",
                    "--model", str(tiny_model), "-o", str(out))
    assert code == 0, err
    assert pd.read_csv(out)["face_id"].tolist() == [0, 1]


class FakeCamera(FrameSource):
    """A live source that delivers ``n`` grey frames, then fails with ``error``."""

    is_live = True

    def __init__(self, n: int, error: BaseException) -> None:
        super().__init__()
        self.name, self.fps, self.n, self.error = "camera 7", 30.0, n, error

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            yield Frame(i, i / 30, np.full((48, 64, 3), 128, np.uint8))
        raise self.error


@pytest.mark.parametrize("stop", ["camera_fails", "ctrl_c"])
def test_camera_run_that_ends_keeps_the_output(stop, monkeypatch, tmp_path, capsys,
                                               landmarker_model, tiny_model):
    error = (SourceError("camera 7 stopped delivering frames") if stop == "camera_fails"
             else KeyboardInterrupt())
    monkeypatch.setattr("emotion_estimator.sources.open_source",
                        lambda *_, **__: FakeCamera(5, error))
    out = tmp_path / "rows.csv"
    code, err = run(capsys, "--camera", "7", "--model", str(tiny_model), "-o", str(out))
    assert "Traceback" not in err
    assert len(pd.read_csv(out)) == 5  # every frame before the stop is in the file
    if stop == "camera_fails":
        assert code == 1 and "error: camera 7 stopped delivering frames" in err
    else:
        assert code == 0 and "interrupted" in err


def test_truncated_video_gives_rows_then_a_warning(tmp_path, capsys, landmarker_model,
                                                   tiny_model):
    full = write_video(tmp_path / "full.avi", n=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    out = tmp_path / "rows.csv"
    code, err = run(capsys, str(cut), "--model", str(tiny_model), "-o", str(out))
    assert code == 0, err
    assert 0 < len(pd.read_csv(out)) < 30
    assert "warning:" in err and "truncated" in err


@pytest.mark.parametrize("case", ["missing", "text_as_mp4", "corrupt_image", "no_output_dir",
                                  "no_annotate_dir", "annotate_suffix", "not_onnx",
                                  "wrong_width", "no_input", "parquet_stdout",
                                  "plot_without_matplotlib", "smoothing_param"])
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch, tiny_model):
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"this is not a protobuf")
    not_onnx.with_suffix(".json").write_text(tiny_model.with_suffix(".json").read_text())
    wide = write_model(tmp_path / "wide.onnx", width=10)
    still = tmp_path / "grey.png"  # a good input: the model / option is what is wrong
    cv2.imwrite(str(still), np.full((32, 32, 3), 128, np.uint8))
    if case == "plot_without_matplotlib":
        monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = ["--model", str(tiny_model)]
    args, fragment = {
        "missing": ([str(tmp_path / "nope.mp4"), *model], "no such file"),
        "text_as_mp4": ([str(text), *model], "cannot decode video"),
        "corrupt_image": ([str(corrupt), *model], "cannot decode image"),
        "no_output_dir": ([str(text), "-o", str(tmp_path / "no" / "x.csv")], "does not exist"),
        "no_annotate_dir": ([str(text), "--annotate", str(tmp_path / "no" / "a.mp4")],
                            "does not exist"),
        "annotate_suffix": ([str(text), "--annotate", str(tmp_path / "a.gif")],
                            "--annotate: write a video"),
        "not_onnx": ([str(still), "--model", str(not_onnx)], "not a readable ONNX model"),
        "wrong_width": ([str(still), "--model", str(wide)], "input shape"),
        "no_input": ([], "give INPUT files or --camera N"),
        "parquet_stdout": ([str(text), *model, "-f", "parquet"], "parquet"),
        "plot_without_matplotlib": ([str(text), "--plot", str(tmp_path / "t.png")],
                                    "matplotlib"),
        "smoothing_param": ([str(still), *model, "--smoothing", "hmm", "--smoothing-param",
                             "hold_s=0.2"], "the hmm filter has no parameter 'hold_s'"),
    }[case]
    code, err = run(capsys, *args)
    assert code == 2
    assert_one_line_error(err, fragment)


def test_show_window_quits_on_q_and_keeps_the_output(monkeypatch, tmp_path, capsys,
                                                     landmarker_model, tiny_model):
    keys = iter([-1, -1, ord("q")])
    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    monkeypatch.setattr("emotion_estimator.sources.open_source",
                        lambda *_, **__: FakeCamera(100, SourceError("not reached")))
    out = tmp_path / "rows.jsonl"
    code, err = run(capsys, "--camera", "7", "--show", "--model", str(tiny_model),
                    "-o", str(out))
    assert code == 0, err
    assert shown == [(48, 64, 3)] * 3
    assert len(out.read_text().splitlines()) == 3


def test_annotate_draws_faces_and_marks_frames_without_one():
    from emotion_estimator.estimator import FaceResult, FrameResult
    from emotion_estimator.render import annotate, class_color

    classes = ("happy", "sad", "unknown")
    blank = np.zeros((240, 320, 3), np.uint8)
    marked = annotate(blank, FrameResult(0, 0.0, []), classes)
    assert marked[:20, :60].any() and not marked[60:].any()  # a mark in the corner only
    assert not blank.any()  # the input is not drawn on
    face = FaceResult(3, (100.0, 60.0, 80.0, 100.0), "sad",
                      {"happy": 0.1, "sad": 0.7, "unknown": 0.2}, {}, np.zeros(52))
    drawn = annotate(blank, FrameResult(0, 0.0, [face]), classes)
    assert tuple(drawn[110, 100]) == class_color("sad", classes)  # the box's left edge
    assert not drawn[100:150, 110:170].any()  # the face itself stays visible


def test_video_writer_publishes_only_on_close(tmp_path):
    from emotion_estimator.render import VideoWriter

    out = tmp_path / "clip.mp4"
    with VideoWriter(out, fps=10) as writer:
        for i in range(5):
            writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
        assert not out.exists()
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    VideoWriter(tmp_path / "empty.mp4", fps=10).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp files left
