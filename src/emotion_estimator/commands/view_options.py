"""The options that choose what a classifier reports, shared by analyze, batch, serve, ros2:
``--operating-point NAME`` and ``--expressions`` / ``--no-expressions``."""

from __future__ import annotations

import argparse
from typing import Any


def add_view_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operating-point", default="balanced", metavar="NAME",
                   help="a point stored in the model: balanced (default), sad-sensitive "
                        "(catches more sad faces at the cost of false alarms); an unknown name "
                        "lists the model's points")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--expressions", dest="expressions", action="store_true", default=None,
                      help="require the seven-expression view (expression, expr_* columns, "
                           "valence, arousal); default: reported when the model has it")
    view.add_argument("--no-expressions", dest="expressions", action="store_false",
                      help="leave the expression view out")


def view_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``EmotionEstimator`` keyword arguments of these options."""
    return {"operating_point": args.operating_point, "expressions": args.expressions}
