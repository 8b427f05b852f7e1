"""``emotion-estimator ablate DATASET --out DIR``: the paper's ablations as one table."""

from __future__ import annotations

import argparse

VARIANT_HELP = (
    "base, paper's 27 blendshapes, all 52 blendshapes, dense, dense + all 52, mse loss, "
    "focal loss, no class weights"
)


def configure(p: argparse.ArgumentParser) -> None:
    from .train import add_model_arguments

    p.add_argument("dataset", help="blendshape dataset: dataset.parquet or the folder holding it")
    p.add_argument("--out", required=True, help="folder: one run per variant + ablation.csv/.md")
    p.add_argument("--only", action="append", metavar="VARIANT",
                   help=f"run only this variant (repeatable): {VARIANT_HELP}")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..training.ablate import VARIANTS, ablate, to_markdown
    from .train import config_from_args

    bad = [v for v in args.only or [] if v not in VARIANTS]
    if bad:
        raise InputError(f"unknown variant {bad[0]!r}; choose from: {VARIANT_HELP}")
    table = ablate(config_from_args(args), args.out, args.only)
    print(to_markdown(table))
    return 0
