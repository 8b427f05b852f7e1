"""``emotion-estimator train DATASET --out RUN``: train a classifier.

``--kind lstm|dense``: the paper's blendshape models; ``--kind fusion``: the face crop +
landmarks + blendshapes model (:mod:`emotion_estimator.training.fusion.train`).
"""

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
    d.add_argument("--preprocess",
                   help="preprocess variants to train/validate on (default: raw,pad; fusion: "
                        "pad)")
    d.add_argument("--no-augmented", dest="augmented", action="store_false",
                   help="leave out augmented train rows")
    m = p.add_argument_group("model")
    m.add_argument("--kind", choices=["lstm", "dense", "fusion"], default="lstm",
                   help="the paper's lstm or dense blendshape model, or fusion (aligned face "
                        "crop + landmarks + blendshapes; see the fusion options)")
    m.add_argument("--hidden", type=int, default=32, help="units per layer (default: 32)")
    m.add_argument("--layers", type=int, default=2, help="stacked layers (default: 2)")
    m.add_argument("--dropout", type=float, help="(default: 0.1; fusion: 0.3)")
    m.add_argument("--activation", choices=["relu", "gelu", "tanh", "silu"], default="tanh",
                   help="hidden activation of the dense model")
    o = p.add_argument_group("optimisation")
    o.add_argument("--loss", choices=["cce", "mse", "focal"], default="cce")
    o.add_argument("--no-class-weights", dest="class_weights", action="store_false",
                   help="unweighted loss (default: balanced class weights)")
    o.add_argument("--smoothing", type=float,
                   help="label smoothing (default: 0; fusion: 0.05)")
    o.add_argument("--gamma", type=float, default=2.0, help="focal loss gamma")
    o.add_argument("--lr", type=float, help="(peak) learning rate (default: 1e-3; fusion: 3e-3)")
    o.add_argument("--weight-decay", type=float, help="(default: 1e-4; fusion: 5e-4)")
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--epochs", type=int, help="(default: 60; fusion: 36)")
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
    o.add_argument("--threads", type=int, help="torch CPU threads (default: 1; fusion: 2)")


def config_from_args(args: argparse.Namespace):
    """A :class:`TrainConfig` from parsed options (validated: bad values exit 2)."""
    from ..errors import InputError
    from ..training.train import TrainConfig

    _defaults(args, preprocess="raw,pad", dropout=0.1, smoothing=0.0, lr=1e-3,
              weight_decay=1e-4, epochs=60, threads=1)
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


def _defaults(args: argparse.Namespace, **values: object) -> None:
    """Fill the options left unset with the chosen model family's defaults."""
    for name, value in values.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def _command() -> str:
    """The command line as typed (stored in the exported metadata)."""
    import shlex
    import sys

    return shlex.join(["emotion-estimator", *sys.argv[1:]])


def add_fusion_arguments(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("fusion model (--kind fusion)")
    f.add_argument("--inputs", default="face,landmarks,blendshapes",
                   help="comma list of face, landmarks, blendshapes (default: all three)")
    f.add_argument("--labels", choices=["fer", "ferplus", "source", "blend"], default="fer",
                   help="targets: the dataset's labels (fer); FER+ vote shares (ferplus, soft: "
                        "from the dataset's ferplus_* columns, else from --ferplus); the "
                        "source's own labels folded by the dataset's class map (source: "
                        "FER2013's even in a dataset labelled by FER+ majority); half source "
                        "one-hot, half FER+ shares (blend)")
    f.add_argument("--ferplus", metavar="CSV",
                   help="FER+ fer2013new.csv (same row order), for a dataset without ferplus_* "
                        "vote columns")
    f.add_argument("--width", type=int, default=32, help="CNN channels after the stem")
    f.add_argument("--stem", choices=["full", "separable"], default="full",
                   help="the CNN stem's stride-2 layer: a full 3x3 convolution, or depthwise "
                        "3x3 + 1x1 at an eighth of the multiply-adds (separable; --init from a "
                        "full-stem run takes every other layer)")
    f.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train without augmentation")
    f.add_argument("--max-sad-as-happy", type=float, default=0.02,
                   help="cap on the validation rate of sad faces called happy when fitting "
                        "the operating points (default: 0.02)")
    f.add_argument("--extra", action="append", default=[], metavar="DATASET",
                   help="another prepared dataset to train on too (repeatable), e.g. a "
                        "real-face folder from `prepare --folder`; its train rows join the "
                        "training rows, its val rows the validation rows, its test rows "
                        "(the fixed held-out part) stay out")
    f.add_argument("--extra-repeat", type=int, default=3, metavar="N",
                   help="each --extra dataset's train rows are seen N times per epoch "
                        "(default: 3)")
    f.add_argument("--fine-weight", type=float, default=1.0, metavar="W",
                   help="weight of the 7-expression head over the source emotions (FER2013's "
                        "7; exported as the expression view; 0: none; default: 1)")
    f.add_argument("--fine-balance", type=float, default=0.0, metavar="P",
                   help="the expression head's loss weighs each emotion by (mean count / its "
                        "count) ** P: 0.5 lifts rare disgust and fear, 1 balances fully "
                        "(default: 0, unweighted)")
    f.add_argument("--fine-labels", choices=["source", "ferplus", "blend"], default="source",
                   help="the expression head's targets: the source's own emotion (source); "
                        "the FER+ vote shares over the seven, contempt left out (ferplus); "
                        "half each (blend); rows without votes keep their own (default: "
                        "source)")
    f.add_argument("--cost-weight", type=float, default=1.0, metavar="W",
                   help="weight of the expected-cost term (sad called happy costs most; "
                        "0: plain cross-entropy; default: 1)")
    f.add_argument("--hard-weight", type=float, default=2.0, metavar="W",
                   help="extra loss weight of hard faces: non-happy faces with a smile-shaped "
                        "mouth, sad faces with raised inner brows and shut eyes (default: 2)")
    f.add_argument("--ema", type=float, default=0.999, metavar="DECAY",
                   help="decay of the weight average that is validated and kept (0: off; "
                        "default: 0.999)")
    f.add_argument("--seeds", metavar="S,S,...",
                   help="an ensemble: train one run per seed in OUT/seed-S (a finished run is "
                        "kept, an interrupted one resumed; side by side with --jobs, or apart "
                        "with --seed S --out OUT/seed-S), then average them into one "
                        "graph (OUT/ensemble.pt) with operating points fitted on val")
    f.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with --seeds: train N members at once, each in its own process with "
                        "--threads / N threads (2 on a 2-core CPU: a fifth to a third less "
                        "wall time than one after the other; default: 1)")
    f.add_argument("--init", metavar="RUN",
                   help="start from a trained run's weights (its folder or fusion.pt; same "
                        "inputs and width): fine-tune it with these labels and weights; with "
                        "--seeds, each seed starts from RUN/seed-S where that exists")
    f.add_argument("--teacher", metavar="ENSEMBLE",
                   help="distil: mix a trained ensemble's (or run's) calibrated probabilities "
                        "into the targets (its ensemble.pt, fusion.pt or folder)")
    f.add_argument("--teacher-weight", type=float, default=0.5, metavar="W",
                   help="share of the teacher in the targets (default: 0.5)")
    f.add_argument("--teacher-expressions", action="store_true",
                   help="the teacher's seven expression probabilities also take "
                        "--teacher-weight of the expression head's targets")
    f.add_argument("--consistent-teacher", action="store_true",
                   help="the teacher reads every training batch as the student sees it, "
                        "augmented (one teacher pass per step), instead of each face once "
                        "un-augmented")
    f.add_argument("--peer-teacher", choices=("fer",),
                   help="training time only: fer's CNN (MIT) on the run's crops joins the "
                        "teacher and teaches the expression head; it runs in the peer's venv "
                        "(benchmarks/peers/setup_fer.sh)")
    f.add_argument("--peer-weight", type=float, default=0.3, metavar="W",
                   help="the peer's share of the teacher and of the expression head's targets "
                        "(default: 0.3)")
    f.add_argument("--peer-python", metavar="PYTHON",
                   help="the peer venv's interpreter (default: $FER_VENV/bin/python, else "
                        "benchmarks/.venv-fer/bin/python)")
    f.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="prepared dataset: dataset.parquet or the folder holding it")
    p.add_argument("--out", required=True, help="run folder (model.pt, history, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--export", metavar="ONNX", help="also export the best model to this .onnx")
    add_model_arguments(p)
    add_fusion_arguments(p)


def fusion_config_from_args(args: argparse.Namespace):
    """A :class:`FusionConfig` from parsed options (validated: bad values exit 2)."""
    from ..errors import InputError
    from ..training.fusion.model import INPUT_NAMES
    from ..training.fusion.train import FusionConfig

    d = FusionConfig()
    _defaults(args, preprocess=d.preprocess, dropout=d.dropout, smoothing=d.smoothing, lr=d.lr,
              weight_decay=d.weight_decay, epochs=d.epochs, threads=d.threads)

    inputs = tuple(s.strip() for s in args.inputs.split(",") if s.strip())
    if not inputs or any(i not in INPUT_NAMES for i in inputs):
        raise InputError(f"--inputs takes a comma list of {', '.join(INPUT_NAMES)}")
    if args.ferplus and not Path(args.ferplus).is_file():
        raise InputError(f"--ferplus: not found: {args.ferplus}")
    for name in ("batch_size", "epochs", "threads", "width"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.max_sad_as_happy <= 1 or not 0 <= args.dropout < 1:
        raise InputError("--max-sad-as-happy must be in [0, 1] and --dropout in [0, 1)")
    for dataset in (args.dataset, *args.extra):
        if not Path(dataset).exists():
            raise InputError(f"dataset not found: {dataset}")
    if args.extra_repeat < 1 or min(args.fine_weight, args.cost_weight, args.hard_weight) < 0:
        raise InputError("--extra-repeat must be at least 1, and --fine-weight, --cost-weight "
                         "and --hard-weight 0 or more")
    if not 0 <= args.ema < 1:
        raise InputError("--ema must be in [0, 1)")
    if not 0 <= args.fine_balance <= 1:
        raise InputError("--fine-balance must be in [0, 1]")
    if not 0 <= args.teacher_weight <= 1 or not 0 <= args.peer_weight <= 1:
        raise InputError("--teacher-weight and --peer-weight must be in [0, 1]")
    if args.peer_teacher and "face" not in inputs:
        raise InputError("--peer-teacher needs the face input (--inputs ...,face)")
    if args.teacher_expressions and not args.teacher:
        raise InputError("--teacher-expressions needs --teacher")
    if args.consistent_teacher and (not args.teacher or args.peer_teacher
                                    or args.teacher_expressions):
        raise InputError("--consistent-teacher needs --teacher, and takes neither "
                         "--peer-teacher nor --teacher-expressions")
    return FusionConfig(
        dataset=str(args.dataset), inputs=tuple(n for n in INPUT_NAMES if n in inputs),
        preprocess=args.preprocess.split(",")[0].strip(), labels=args.labels,
        ferplus=str(args.ferplus or ""), width=args.width, stem=args.stem,
        dropout=args.dropout,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, smoothing=args.smoothing,
        class_weights=args.class_weights, augment=args.augment,
        max_sad_as_happy=args.max_sad_as_happy, seed=args.seed, threads=args.threads,
        fine_weight=args.fine_weight, fine_balance=args.fine_balance,
        fine_labels=args.fine_labels,
        cost_weight=args.cost_weight,
        hard_weight=args.hard_weight, ema=args.ema, extra=tuple(str(e) for e in args.extra),
        extra_repeat=args.extra_repeat, init=str(args.init or ""),
        teacher=str(args.teacher or ""), teacher_weight=args.teacher_weight,
        teacher_expressions=args.teacher_expressions,
        consistent_teacher=args.consistent_teacher,
        peer_teacher=str(args.peer_teacher or ""), peer_weight=args.peer_weight,
        peer_python=str(args.peer_python or ""), device=args.device, command=_command())


def run(args: argparse.Namespace) -> int:
    if args.kind == "fusion":
        return _run_fusion(args)
    from ..training.train import train

    config = config_from_args(args)
    result = train(config, args.out, resume=args.resume)
    if args.export:
        from ..training.export import export

        meta = export(result.checkpoint, args.export)
        print(f"exported {args.export} ({meta['onnx_bytes']} bytes)")
    print(f"{Path(args.out) / 'model.pt'}")
    return 0


def _seeds(text: str | None) -> list[int]:
    from ..errors import InputError

    if text is None:
        return []
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds takes a comma list of integers, not {text!r}") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError("--seeds needs at least two different seeds")
    return seeds


def _distilled_splits(config):
    """Train / val splits with the teacher mixed into the train targets (None: no teacher,
    the run reads its data itself)."""
    if not (config.teacher or config.peer_teacher):
        return None
    from ..training.fusion.distill import teacher_split
    from ..training.fusion.train import training_splits

    splits = training_splits(config)
    splits["train"] = teacher_split(config, splits["train"])
    return splits


def _run_fusion(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..training.fusion.train import CHECKPOINT, train_fusion

    config = fusion_config_from_args(args)
    teacher = None
    if config.consistent_teacher:
        from ..training.fusion.distill import batch_teacher

        teacher = batch_teacher(config.teacher, config.inputs)
    seeds = _seeds(args.seeds)
    out = Path(args.out)
    if args.jobs < 1 or (args.jobs > 1 and not seeds):
        raise InputError("--jobs trains several --seeds at once: give --seeds and N >= 1")
    if seeds:
        from ..training.fusion.ensemble import ENSEMBLE, combine_runs
        from ..training.fusion.members import train_members

        # the members share their data (and the teacher's targets), read once
        runs = train_members(config, out, seeds, jobs=args.jobs,
                             splits=lambda: _distilled_splits(config), teacher=teacher)
        combine_runs(runs, out)
        checkpoint = out / ENSEMBLE
    else:
        train_fusion(config, out, resume=args.resume, splits=_distilled_splits(config),
                     teacher=teacher)
        checkpoint = out / CHECKPOINT
    if args.export:
        from ..training.fusion.export import export_fusion

        meta = export_fusion(checkpoint, args.export)
        print(f"exported {args.export} ({meta['onnx_bytes']} bytes)")
    print(f"{checkpoint}")
    return 0
