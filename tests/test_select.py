"""The paper's blendshape selection rule, its overlap report and the select-blendshapes CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES
from emotion_estimator.cli import cli
from emotion_estimator.errors import InputError
from emotion_estimator.training.select import PAPER_NAMES, load_train_rows, select


def _table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 0.39, size=(n, 52)).astype(np.float32)
    col = BLENDSHAPE_NAMES.index
    scores[:150, col("browDownLeft")] = 0.5  # 150 > 100: kept
    scores[:101, col("mouthSmileLeft")] = 0.9  # 101 > 100: kept
    scores[:100, col("cheekPuff")] = 0.9  # exactly 100: not "more than" 100
    scores[:, col("jawOpen")] = 0.4  # equal to the threshold is not above it
    table = pd.DataFrame(scores, columns=list(BLENDSHAPE_NAMES))
    table.insert(0, "image_id", np.arange(n))
    return table


def test_rule_is_strictly_above_threshold_in_more_than_min_count():
    selection = select(_table(), threshold=0.4, min_count=100)
    assert selection.names == ("browDownLeft", "mouthSmileLeft")
    assert selection.counts["cheekPuff"] == 100 and selection.counts["jawOpen"] == 0
    assert selection.indices == (1, 44)
    assert select(_table(), threshold=0.4, min_count=99).names == (
        "browDownLeft", "cheekPuff", "mouthSmileLeft")


def test_paper_27_and_overlap():
    assert len(PAPER_NAMES) == 27
    assert PAPER_NAMES[0] == "browDownLeft" and PAPER_NAMES[-1] == "mouthUpperUpRight"
    assert "cheekPuff" not in PAPER_NAMES and "jawOpen" in PAPER_NAMES
    overlap = select(_table(), 0.4, 99).overlap()
    assert overlap["both"] == ["browDownLeft", "mouthSmileLeft"]
    assert overlap["only_ours"] == ["cheekPuff"]
    assert len(overlap["only_paper"]) == 25


def _dataset(tmp_path):
    base = _table()
    parts = []
    for split, augmented, variant in [("train", False, "raw"), ("train", False, "pad"),
                                      ("train", True, "raw"), ("test", False, "raw")]:
        part = base.copy()
        part.insert(1, "split", split)
        part.insert(2, "augmented", augmented)
        part.insert(3, "preprocess", variant)
        if variant == "pad" or augmented or split == "test":
            part[list(BLENDSHAPE_NAMES)] = 0.95  # would flip every decision if counted
        parts.append(part)
    path = tmp_path / "dataset.parquet"
    pd.concat(parts, ignore_index=True).to_parquet(path)
    return path


def test_counts_only_original_train_rows_of_one_variant(tmp_path):
    path = _dataset(tmp_path)
    rows, variant = load_train_rows(path)
    assert variant == "raw" and len(rows) == 300
    assert select(rows).names == ("browDownLeft", "mouthSmileLeft")
    rows, _ = load_train_rows(tmp_path, include_augmented=True)
    assert len(rows) == 600
    rows, variant = load_train_rows(path, preprocess="pad")
    assert variant == "pad" and len(select(rows).names) == 52
    with pytest.raises(InputError, match="upscale"):
        load_train_rows(path, preprocess="upscale")


def test_cli_writes_json_and_figures(tmp_path, capsys):
    path = _dataset(tmp_path)
    assert cli(["select-blendshapes", str(path), "--image-id", "7"]) == 0
    printed = capsys.readouterr().out
    assert "2 of 52" in printed and "mouthSmileLeft" in printed
    result = json.loads((tmp_path / "selection" / "selection.json").read_text())
    assert result["names"] == ["browDownLeft", "mouthSmileLeft"]
    assert result["indices"] == [1, 44] and result["rows"] == 300
    for name in ("histogram.png", "scatter.png"):
        assert (tmp_path / "selection" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["missing.parquet"], "not found"),
    (["{d}", "--threshold", "2"], "threshold"),
    (["{d}", "--image-id", "99999"], "image-id"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    path = _dataset(tmp_path)
    argv = [a.replace("{d}", str(path)) if a == "{d}" else str(tmp_path / a)
            if a.endswith(".parquet") else a for a in argv]
    assert cli(["select-blendshapes", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
