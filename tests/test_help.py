"""Help texts and the package description say what ships: the fusion default and the paper's
blendshape models beside it, never the LSTM as *the* model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from emotion_estimator.classifier import DEFAULT_MODEL, shipped_models
from emotion_estimator.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def help_of(*argv: str) -> str:
    parser = build_parser([*argv, "--help"])
    if not argv:
        return parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return re.sub(r"\s+", " ", sub.choices[argv[0]].format_help())


@pytest.mark.parametrize("command", ["analyze", "batch"])
def test_model_option_names_every_shipped_model_and_the_default(command):
    text = help_of(command)
    assert len(shipped_models()) >= 3
    for name in shipped_models():
        assert name in text
    assert f"{DEFAULT_MODEL} (the default" in text and "(dense)" not in text


def test_top_level_train_and_package_descriptions_are_current():
    top = re.sub(r"\s+", " ", help_of())
    assert "LSTM" not in top and "classifier" in top
    train = help_of("train")
    assert "fusion" in train and "train the LSTM" not in train
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    assert "LSTM" not in description and "face crop" in description
