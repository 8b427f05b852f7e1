"""``emotion-estimator train DATASET --out RUN``: train the LSTM (or dense) classifier."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Data, model and optimiser options shared by train, tune and ablate."""
    d = p.add_argument_group("data")
    d.add_argument("--blendshapes", default="rule",
                   help="rule (the paper's rule on this train split: score > 0.4 in > 100 "
                        "images) | paper27 | all | selection JSON | comma-separated names "
                        "(default: rule)")
    d.add_argument("--preprocess", default="raw,pad",
                   help="preprocess variants to train/validate on (default: raw,pad)")
    d.add_argument("--no-augmented", dest="augmented", action="store_false",
                   help="leave out augmented train rows")
    m = p.add_argument_group("model")
    m.add_argument("--kind", choices=["lstm", "dense"], default="lstm")
    m.add_argument("--hidden", type=int, default=32, help="units per layer (default: 32)")
    m.add_argument("--layers", type=int, default=2, help="stacked layers (default: 2)")
    m.add_argument("--dropout", type=float, default=0.1)
    m.add_argument("--activation", choices=["relu", "gelu", "tanh", "silu"], default="tanh",
                   help="hidden activation of the dense model")
    o = p.add_argument_group("optimisation")
    o.add_argument("--loss", choices=["cce", "mse", "focal"], default="cce")
    o.add_argument("--no-class-weights", dest="class_weights", action="store_false",
                   help="unweighted loss (default: balanced class weights)")
    o.add_argument("--smoothing", type=float, default=0.0, help="label smoothing (cce)")
    o.add_argument("--gamma", type=float, default=2.0, help="focal loss gamma")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--weight-decay", type=float, default=1e-4)
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--epochs", type=int, default=60)
    o.add_argument("--plateau", type=int, default=3,
                   help="halve the learning rate after N epochs without a better validation "
                        "loss; 0 = constant rate (default: 3)")
    o.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    o.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip temperature calibration on the validation split")
    o.add_argument("--offsets", choices=["none", "f1", "acc+f1"], default="acc+f1",
                   help="per-class logit offsets fitted on the validation split to maximise "
                        "macro F1 or accuracy + macro F1 (default: acc+f1)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")


def config_from_args(args: argparse.Namespace):
    """A :class:`TrainConfig` from parsed options (validated: bad values exit 2)."""
    from ..errors import InputError
    from ..training.train import TrainConfig

    for name in ("hidden", "layers", "batch_size", "epochs", "threads"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.dropout < 1 or not 0 <= args.smoothing < 1:
        raise InputError("--dropout and --smoothing must be in [0, 1)")
    if args.lr <= 0:
        raise InputError("--lr must be positive")
    dataset = Path(args.dataset)
    if not dataset.exists():
        raise InputError(f"dataset not found: {dataset}")
    return TrainConfig(
        dataset=str(dataset), blendshapes=args.blendshapes,
        preprocess=tuple(s.strip() for s in args.preprocess.split(",") if s.strip()),
        augmented=args.augmented, kind=args.kind, hidden=args.hidden, layers=args.layers,
        dropout=args.dropout, activation=args.activation, loss=args.loss,
        class_weights=args.class_weights, smoothing=args.smoothing, gamma=args.gamma,
        lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
        epochs=args.epochs, plateau=args.plateau, patience=args.patience, calibrate=args.calibrate,
        offsets=args.offsets, seed=args.seed, threads=args.threads, command=_command(),
    )


def _command() -> str:
    """The command line as typed (stored in the exported metadata)."""
    import shlex
    import sys

    return shlex.join(["emotion-estimator", *sys.argv[1:]])


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="blendshape dataset: dataset.parquet or the folder holding it")
    p.add_argument("--out", required=True, help="run folder (model.pt, history, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--export", metavar="ONNX", help="also export the best model to this .onnx")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..training.train import train

    config = config_from_args(args)
    result = train(config, args.out, resume=args.resume)
    if args.export:
        from ..training.export import export

        meta = export(result.checkpoint, args.export)
        print(f"exported {args.export} ({meta['onnx_bytes']} bytes)")
    print(f"{Path(args.out) / 'model.pt'}")
    return 0
