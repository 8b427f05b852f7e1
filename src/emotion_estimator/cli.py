"""The one command-line entry point: ``emotion-estimator <command> ...``.

Each command lives in ``emotion_estimator.commands.<name>`` with ``configure(parser)`` and
``run(args) -> int``; heavy imports (torch, mediapipe) happen inside ``run`` only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import (
    EXIT_INPUT,
    EXIT_RUNTIME,
    EXIT_TERMINATED,
    InputError,
    Terminated,
    one_line_errors,
)

COMMANDS: dict[str, str] = {
    "analyze": "emotion per face and frame of images, videos or a camera",
    "blendshapes": "per-frame table of the 52 MediaPipe blendshapes",
    "batch": "a corpus on a process pool or Ray -> Parquet rows + manifest, resumable",
    "summarize": "a result table per face, as label episodes, or as change events",
    "prepare": "FER2013 or a labelled folder -> blendshape dataset (caps, detection, augmentation)",
    "select-blendshapes": "choose blendshapes by the paper's threshold rule",
    "train": "train a classifier on a prepared dataset (fusion: the default; lstm, dense: the "
             "paper's blendshape models)",
    "tune": "hyper-parameter search with Optuna",
    "evaluate": "metrics, confusion matrix and misclassified images of a model",
    "ablate": "the paper's ablations as one table",
    "export": "export a trained run to ONNX + metadata JSON",
    "models": "fetch / verify / locate model files",
    "bench": "side-by-side benchmarks against peer tools",
    "serve": "live results over HTTP / WebSocket, a dashboard and metrics",
    "ros2": "a ROS 2 node: camera topic in, REP-155 (ROS4HRI) face expressions out",
}


def _module(name: str):
    return importlib.import_module(f"emotion_estimator.commands.{name.replace('-', '_')}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (fast --help)."""
    parser = argparse.ArgumentParser(
        prog="emotion-estimator",
        description="Estimate happy / sad / unknown per face in photos, videos and camera "
                    "streams: MediaPipe Face Landmarker, then a small ONNX classifier over the "
                    "aligned face crop, landmarks and blendshapes.",
    )
    one_line_errors(parser)  # usage errors: one line, exit 2
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    args = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = one_line_errors(sub.add_parser(name, help=help_text, description=help_text))
        if name == chosen:
            _module(name).configure(p)
    return parser


def quiet_native_logs() -> None:
    """Keep MediaPipe / TFLite / FFmpeg chatter off the terminal.

    Native libraries write straight to file descriptor 2; Python's ``sys.stderr`` moves to a
    copy of it and fd 2 goes to /dev/null. Set ``EMOTION_ESTIMATOR_NATIVE_LOGS=1`` to keep them.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("EMOTION_ESTIMATOR_NATIVE_LOGS") == "1":
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable fd 2 (embedded interpreter): leave it alone
        return
    sys.stderr = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(devnull, 2)
    os.close(devnull)


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) 0 ok, 1 runtime error, 2 usage/input error."""
    if argv is None:
        quiet_native_logs()
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = _module(args.command).run(args)
    except KeyboardInterrupt as exc:
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like a Unix tool
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    except InputError as exc:
        print(f"emotion-estimator: error: {exc}", file=sys.stderr)
        code = EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        from .errors import describe

        print(f"emotion-estimator: error: {describe(exc)}", file=sys.stderr)
        code = EXIT_RUNTIME
    if argv is None:
        sys.exit(code)
    return code
