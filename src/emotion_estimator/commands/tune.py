"""``emotion-estimator tune DATASET --trials N``: Optuna search, resumable (SQLite)."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    from .train import add_model_arguments

    p.add_argument("dataset", help="blendshape dataset: dataset.parquet or the folder holding it")
    p.add_argument("--out", required=True, help="study folder (study.db, best.json)")
    p.add_argument("--trials", type=int, default=20, help="trials to add (default: 20)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--study", default="emotion", help="study name in the SQLite file")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import InputError
    from ..training.tune import tune
    from .train import config_from_args

    if args.trials < 1:
        raise InputError("--trials must be at least 1")
    best = tune(config_from_args(args), args.out, args.trials, study_name=args.study,
                timeout=args.timeout)
    print(json.dumps(best, indent=1))
    return 0
