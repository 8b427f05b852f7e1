"""``emotion-estimator export RUN --out model.onnx``: ONNX + metadata JSON of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="training run folder (or its model.pt, fusion.pt or ensemble.pt)")
    p.add_argument("--out", required=True, help="output .onnx (the .json is written beside it)")
    p.add_argument("--note", help="free text stored in the metadata")
    p.add_argument("--evaluation", action="append", metavar="DIR",
                   help="an 'evaluate --out' folder whose metrics.json is stored in the metadata "
                        "(repeatable: e.g. test raw and test pad)")
    p.add_argument("--compress", action="store_true",
                   help="one fusion run: keep --stem-channels of the stem's first convolution "
                        "and --landmark-coordinates of the 1,434, refitting the next layer by "
                        "least squares on the run's training rows (they must be here)")
    p.add_argument("--stem-channels", type=int, default=16, metavar="N",
                   help="with --compress (default: %(default)s)")
    p.add_argument("--landmark-coordinates", type=int, default=200, metavar="N",
                   help="with --compress (default: %(default)s)")
    p.add_argument("--calibration-rows", type=int, default=6000, metavar="N",
                   help="with --compress: training rows sampled for the fit (default: "
                        "%(default)s)")


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import InputError
    from ..training.checkpoint import CHECKPOINT
    from ..training.export import export
    from ..training.fusion.ensemble import ENSEMBLE
    from ..training.fusion.train import CHECKPOINT as FUSION_CHECKPOINT
    from .train import _command

    extra = {"export_command": _command(), **({"note": args.note} if args.note else {})}
    evaluations = []
    for folder in args.evaluation or []:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise InputError(f"no metrics.json in {folder} (run 'evaluate --out {folder}')")
        report = json.loads(path.read_text())
        report.pop("files", None)
        evaluations.append(report)
    if evaluations:
        extra["evaluation"] = evaluations
    run_path = Path(args.run)
    fusion = fusion_checkpoint(run_path)
    if fusion is None and run_path.is_dir() and not (run_path / CHECKPOINT).is_file():
        raise InputError(f"no checkpoint in {run_path}: a training run folder holds "
                         f"{CHECKPOINT}, {FUSION_CHECKPOINT} or {ENSEMBLE}")
    if args.compress and fusion is None:
        raise InputError("--compress takes one fusion run (a folder with fusion.pt)")
    if fusion is not None:
        from ..training.fusion.compress import Compression
        from ..training.fusion.export import export_fusion

        how = None
        if args.compress:
            if min(args.stem_channels, args.landmark_coordinates, args.calibration_rows) < 1:
                raise InputError("--stem-channels, --landmark-coordinates and "
                                 "--calibration-rows must be at least 1")
            how = Compression(args.stem_channels, args.landmark_coordinates,
                              args.calibration_rows)
        meta = export_fusion(fusion, args.out, compression=how, **extra)
        print(f"{args.out}: {meta['onnx_bytes']} bytes, classes {meta['classes']}, inputs "
              f"{[i['name'] for i in meta['inputs']]}, {meta['model']['members']} member(s), "
              f"ONNX-torch max diff {meta['onnx_torch_max_abs_diff']:.1e}")
        if how:
            done, val = meta["model"]["compressed"], meta["model"]["compressed"]["validation"]
            print(f"compressed on {done['rows']} training rows: "
                  + "; ".join(f"{k} {v[0]} -> {v[1]}" for k, v in done.items()
                              if k in ("stem_channels", "landmark_coordinates"))
                  + (f"; same class on {val['same_class']:.2%} of {val['rows']} validation "
                     "rows" if val["rows"] else "; no validation rows to compare on"))
        return 0
    meta = export(args.run, args.out, **extra)
    print(f"{args.out}: {meta['onnx_bytes']} bytes, classes {meta['classes']}, "
          f"{len(meta['blendshapes'])} blendshapes, ONNX-torch max diff "
          f"{meta['onnx_torch_max_abs_diff']:.1e}")
    return 0


def fusion_checkpoint(run: Path) -> Path | None:
    """A fusion run's or ensemble's checkpoint named by ``run`` (its folder or the file)."""
    from ..training.fusion.ensemble import ENSEMBLE, folder_checkpoint
    from ..training.fusion.train import CHECKPOINT

    if run.is_dir():
        return folder_checkpoint(run)
    return run if run.name in (ENSEMBLE, CHECKPOINT) and run.is_file() else None
