"""Honest displays: an undecided face shows as undecided, a held label with its own
probability; stills get an annotated image, a bar chart and a word about faces left out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_estimator import write_model

from emotion_estimator.cli import cli
from emotion_estimator.estimator import FaceResult, FrameResult
from emotion_estimator.render import UNDECIDED, annotate, class_color, face_text

CLASSES = ("happy", "sad", "unknown")
HELD = {"happy": 0.12, "sad": 0.71, "unknown": 0.17}  # sad leads, not yet by margin + hold


def face(label: str, decided: bool) -> FaceResult:
    return FaceResult(1, (100.0, 60.0, 80.0, 100.0), label, HELD, HELD, np.zeros(52),
                      decided=decided)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_undecided_and_held_labels_are_told_apart():
    assert face_text(face("unknown", decided=False)) == "#1 undecided"
    assert face_text(face("unknown", decided=True)) == "#1 unknown 17%"  # its own probability
    blank = np.zeros((240, 320, 3), np.uint8)
    undecided = annotate(blank, FrameResult(0, 0.0, [face("unknown", False)]), CLASSES)
    decided = annotate(blank, FrameResult(0, 0.0, [face("sad", True)]), CLASSES)
    assert tuple(undecided[110, 100]) == UNDECIDED  # the box's left edge
    assert tuple(decided[110, 100]) == class_color("sad", CLASSES)


def test_timeline_strip_marks_the_undecided_start():
    from emotion_estimator.timeline import label_runs

    rows = pd.DataFrame({"timestamp_s": [0.0, 0.1, 0.2, 0.3, 0.4, 1.0],
                         "label": ["unknown", "unknown", "happy", "happy", "sad", "sad"],
                         "decided": [False, False, True, True, True, True]})
    runs = label_runs(rows, step=0.1)
    assert [r[2] for r in runs] == [None, "happy", "sad", "sad"]  # a gap splits a run
    assert runs[0][:2] == pytest.approx((-0.05, 0.15)) and runs[1][0] == pytest.approx(0.15)
    older = rows.astype({"decided": "boolean"}).assign(decided=pd.NA)  # a table without it
    assert [r[2] for r in label_runs(older, step=0.1)][0] == "unknown"


def test_still_gets_an_annotated_image_a_bar_chart_and_a_warning(
        media, landmarker_model, tiny_model, tmp_path, capsys):
    photo = media / "multi_face.jpg"
    out, plot, rows = tmp_path / "faces.jpg", tmp_path / "faces.png", tmp_path / "rows.csv"
    code = cli(["analyze", str(photo), "--model", str(tiny_model), "--annotate", str(out),
                "--plot", str(plot), "-o", str(rows)])
    err = capsys.readouterr().err
    assert code == 0, err
    drawn, original = cv2.imread(str(out)), cv2.imread(str(photo))
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original).max() > 100  # boxes and labels drawn on it
    assert cv2.imread(str(plot)) is not None
    assert "warning: multi_face.jpg: more than 1 face found" in err  # not silently dropped
    table = pd.read_csv(rows)
    assert len(table) == 1 and bool(table["decided"].iloc[0])  # a still decides at once
    code = cli(["analyze", str(photo), "--model", str(tiny_model), "--max-faces", "4",
                "-o", str(rows)])
    err = capsys.readouterr().err
    assert code == 0 and "warning" not in err and len(pd.read_csv(rows)) >= 2


def test_an_image_annotation_of_a_video_is_refused_before_work(
        media, landmarker_model, tiny_model, tmp_path, capsys):
    out = tmp_path / "frame.jpg"
    code = cli(["analyze", str(media / "single_face.mp4"), "--model", str(tiny_model),
                "--annotate", str(out), "-o", str(tmp_path / "rows.csv")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "an image is written for a photo" in lines[0]
    assert not list(tmp_path.iterdir())
