"""``emotion-estimator evaluate MODEL DATASET``: metrics, confusion matrix, misclassified images."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an exported .onnx (with its .json) or a training run folder")
    p.add_argument("dataset", help="blendshape dataset: dataset.parquet or the folder holding it")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--preprocess", default="raw", help="which preprocess variant (default: raw)")
    p.add_argument("--out", help="folder for metrics.json, confusion CSV/PNG, misclassified.*")
    p.add_argument("--fer2013", help="FER2013 CSV(.gz) for the contact sheet of misclassified "
                                     "images (pixels read by image id)")


def _line(name: str, m: dict) -> str:
    per = "  ".join(f"{c} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f}"
                    for c, v in m["per_class"].items())
    cce = f"  CCE {m['cce']:.4f}" if "cce" in m else ""
    return (f"{name:16s} n {m['n']:5d}  accuracy {m['accuracy']:.4f}  macro F1 "
            f"{m['macro_f1']:.4f}{cce}\n{'':16s} {per}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..training.evaluate import evaluate

    if args.fer2013 and not Path(args.fer2013).is_file():
        raise InputError(f"FER2013 CSV not found: {args.fer2013}")
    report = evaluate(args.model, args.dataset, args.split, args.preprocess, args.out,
                      args.fer2013)
    print(_line("detected", report["detected"]))
    if "with_undetected" in report:
        print(_line(f"+{report['undetected']} undetected", report["with_undetected"]))
    if "sad_called_happy" in report:
        print(f"sad faces called happy: {report['sad_called_happy']:.2%}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
