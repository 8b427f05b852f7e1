"""summarize / episodes / events over a result table (API and CLI), against the per-frame
results they come from and against the events serve sends for the same frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_estimator import BLENDSHAPE_NAMES, fake_face

from emotion_estimator.cli import cli
from emotion_estimator.estimator import FrameAnalyzer, to_frame
from emotion_estimator.outputs import frame_columns
from emotion_estimator.serve.messages import EventDetector
from emotion_estimator.summary import episodes, events, summarize
from emotion_estimator.video import Frame

CLASSES = ("happy", "sad", "unknown")
FPS = 30


class Smiles:
    """happy = the smile score, sad a constant 0.05, unknown the rest."""

    classes = CLASSES

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        smile = x[:, BLENDSHAPE_NAMES.index("mouthSmileLeft")]
        return np.stack([smile, np.full_like(smile, 0.05), 0.95 - smile], axis=1)


def scripted() -> tuple[list, pd.DataFrame]:
    """Two faces over 3 s: the left one smiles, stops, smiles again; the right one stays
    neutral; 10 frames without anyone in the middle of the third second."""
    analyze = FrameAnalyzer(Smiles(), "ema", forget_s=1.0)
    image = np.zeros((4, 4, 3), np.uint8)
    results = []
    for i in range(3 * FPS):
        t = i / FPS
        smile = 0.95 if t < 1.0 or t >= 2.0 else 0.05
        faces = [] if 70 <= i < 80 else [fake_face(10, smile), fake_face(300, 0.05)]
        results.append(analyze(Frame(i, t, image), faces))
    rows = [row for r in results for row in r.rows()]
    return results, to_frame(rows, frame_columns(CLASSES))


def test_episodes_events_and_summary_follow_the_frames():
    results, table = scripted()
    runs = episodes(table)
    left = runs[runs["face_id"] == 0]
    right = runs[runs["face_id"] == 1]
    assert left["label"].tolist() == ["happy", "unknown", "happy"]
    assert right["label"].tolist() == ["unknown"]
    assert len(right) == 1 and right["end_frame"].iloc[0] == 3 * FPS - 1
    assert FPS < left["start_frame"].iloc[1] < FPS + 10  # the filter follows within 0.33 s
    assert 2 * FPS < left["start_frame"].iloc[2] < 2 * FPS + 10
    assert left["frames"].sum() + left["start_frame"].iloc[0] == 3 * FPS - 10  # no face: none
    # the same events serve sends for these results, frame for frame
    detector = EventDetector()
    sent = [e for r in results for e in detector(r, "test")]
    got = events(table)
    assert [(e["face_id"], e["frame"], e["from"], e["to"]) for e in sent] == list(
        got[["face_id", "frame", "from", "to"]].itertuples(index=False, name=None))
    assert len(got) == 2 and got["p_happy"].between(0, 1).all()
    summary = summarize(table).set_index("face_id")
    assert summary.loc[0, "label"] == "happy" and summary.loc[1, "label"] == "unknown"
    assert summary.loc[0, "events"] == 2 and summary.loc[1, "events"] == 0
    assert summary.loc[0, "frames"] == 3 * FPS - 10
    shares = summary.loc[0, [f"share_{c}" for c in (*CLASSES, "undecided")]]
    assert shares.sum() == pytest.approx(1.0, abs=1e-4) and shares["share_undecided"] > 0
    assert str(summary.index.dtype) == "Int64"


def test_cli_summarize_reads_what_analyze_writes(tmp_path, capsys):
    _, table = scripted()
    rows = tmp_path / "rows.csv"
    table.to_csv(rows, index=False)
    out = tmp_path / "events.parquet"
    assert cli(["summarize", str(rows), "--by", "events", "-o", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), events(table), check_dtype=False)
    assert cli(["summarize", str(rows)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("face_id,frames,") and len(printed) == 3
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert cli(["summarize", str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a result table" in err[0]
    assert cli(["summarize", str(tmp_path / "missing.csv")]) == 2
