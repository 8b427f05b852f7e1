"""``emotion-estimator export RUN --out model.onnx``: ONNX + metadata JSON of a trained run."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="training run folder (or its model.pt)")
    p.add_argument("--out", required=True, help="output .onnx (the .json is written beside it)")
    p.add_argument("--note", help="free text stored in the metadata")


def run(args: argparse.Namespace) -> int:
    from ..training.export import export

    extra = {"note": args.note} if args.note else {}
    meta = export(args.run, args.out, **extra)
    print(f"{args.out}: {meta['onnx_bytes']} bytes, classes {meta['classes']}, "
          f"{len(meta['blendshapes'])} blendshapes, ONNX-torch max diff "
          f"{meta['onnx_torch_max_abs_diff']:.1e}")
    return 0
