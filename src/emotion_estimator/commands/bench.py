"""``emotion-estimator bench accuracy|speed|growth|all``: benchmarks (against ``fer``; growth:
against a bare MediaPipe loop, by resolution and faces).

A thin wrapper over the scripts in the source checkout's ``benchmarks/`` (they are not part of
the installed package): it checks the setup, then runs each script with this interpreter and
passes the remaining options through. Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SCRIPTS = {"accuracy": "bench_accuracy.py", "speed": "bench_speed.py"}
OWN = {"growth": "bench_growth.py"}  # no peer needed; not part of "all"


def benchmarks_dir() -> Path:
    """``<checkout>/benchmarks`` (src/emotion_estimator/commands -> three levels up)."""
    return Path(__file__).resolve().parents[3] / "benchmarks"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=["accuracy", "speed", "growth", "all"],
                   help="accuracy: FER2013 PrivateTest (original and FER+ labels) and "
                        "labelled photos, end to end; speed: video fps, latency, size; "
                        "growth: product / bare MediaPipe CPU and fps by resolution and "
                        "faces, and a per-stage profile; all: accuracy + speed")
    p.add_argument("--setup-peer", action="store_true",
                   help="first build benchmarks/.venv-fer with fer + TensorFlow (large download)")
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="passed to the script(s), e.g. --reps 5, or --model default lstm "
                        "--limit 200 for accuracy (see benchmarks/README.md)")


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from ..errors import InputError

    root = benchmarks_dir()
    if not (root / "benchlib.py").is_file():
        raise InputError("bench needs a source checkout: benchmarks/ is not beside the package "
                         f"(looked in {root})")
    if args.which in OWN:
        return subprocess.call([sys.executable, str(root / OWN[args.which]), *args.options],
                               stderr=_stderr())
    if args.setup_peer:
        code = subprocess.call(["bash", str(root / "peers" / "setup_fer.sh")])
        if code:
            return code
    skip_fer = "--skip-fer" in args.options
    venv = Path(os.environ.get("FER_VENV") or root / ".venv-fer")
    if not skip_fer and not (venv / "bin" / "python").is_file():
        raise InputError(f"the peer's venv {venv} is missing: run "
                         "'emotion-estimator bench --setup-peer ...' or "
                         "benchmarks/peers/setup_fer.sh, or set FER_VENV to fer's venv "
                         "(or pass --skip-fer to accuracy)")
    which = list(SCRIPTS) if args.which == "all" else [args.which]
    if args.which == "all" and args.options:
        raise InputError("options are script-specific: run 'bench accuracy' and 'bench speed' "
                         "separately to pass them")
    err = _stderr()
    for name in which:
        code = subprocess.call([sys.executable, str(root / SCRIPTS[name]), *args.options],
                               stderr=err)
        if code:
            return code
    if args.which == "all":  # both result sets are fresh: the summary table
        return subprocess.call([sys.executable, str(root / "headline.py")], stderr=err)
    return 0


def _stderr() -> int | None:
    """Where the scripts' messages go: this process's ``sys.stderr`` (the CLI points fd 2 at
    /dev/null to hide native logs and keeps the terminal in ``sys.stderr``)."""
    import sys

    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. an in-memory stream under a test
        return None
