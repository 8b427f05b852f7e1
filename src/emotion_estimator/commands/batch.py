"""``emotion-estimator batch``: a corpus into Hive-partitioned Parquet rows + a manifest."""

from __future__ import annotations

import argparse
import sys

from ..temporal import SMOOTHING

EXIT_FAILED = 3  # some inputs failed; the others are done


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video or image files, folders of them, or CSV lists (a path column, "
                        "optionally an id column)")
    p.add_argument("--recursive", action="store_true",
                   help="also take the files in subfolders of INPUT folders")
    p.add_argument("--out", required=True, metavar="DIR|URL",
                   help="dataset folder (or URL such as s3://bucket/prefix): rows/ + manifest")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (default: the CPU cores; on Ray, the cluster's CPUs)")
    p.add_argument("--ray-address", metavar="auto|ray://HOST:PORT",
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="reruns of an input whose worker process died (2)")
    p.add_argument("--force", action="store_true",
                   help="discard earlier results in --out made with other options, redo all")
    from .analyze import model_help
    from .view_options import add_view_options

    p.add_argument("--model", metavar="ONNX|NAME", help=model_help())
    add_view_options(p)
    p.add_argument("--smoothing", choices=SMOOTHING, default="ema",
                   help="temporal filter per face (default: ema)")
    p.add_argument("--smoothing-param", action="append", default=[], metavar="NAME=VALUE",
                   help="filter parameter (times in s), repeatable, as for analyze")
    p.add_argument("--forget-after", type=float, default=1.0, metavar="S",
                   help="seconds a face may be missing before its id and filter reset (1.0)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--blendshapes", action="store_true", help="add the 52 blendshape scores")
    p.add_argument("--landmarker", metavar="PATH", help="face_landmarker.task to use")
    p.add_argument("--topic", metavar="TOPIC",
                   help="the image topic of bag inputs (default: each bag's only image topic)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _options(args: argparse.Namespace):
    from ..batch import BatchOptions
    from ..errors import InputError
    from .analyze import _estimator

    if args.max_faces < 1:
        raise InputError("--max-faces must be at least 1")
    if args.forget_after < 0:
        raise InputError("--forget-after must be >= 0 seconds")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.retries < 0:
        raise InputError("--retries must be >= 0")
    estimator = _estimator(args)  # validates model, filter and its parameters as analyze does
    estimator.close()
    return BatchOptions(model=args.model, max_faces=args.max_faces, smoothing=args.smoothing,
                        smoothing_params=tuple(sorted(estimator.smoothing_params.items())),
                        forget_s=args.forget_after, blendshapes=args.blendshapes,
                        landmarker=args.landmarker, operating_point=args.operating_point,
                        expressions=args.expressions, topic=args.topic)


def run(args: argparse.Namespace) -> int:
    from ..batch import run_batch
    from ..errors import EXIT_TERMINATED, Terminated, sigterm_as_interrupt

    options = _options(args)
    try:
        with sigterm_as_interrupt():  # a scheduler's SIGTERM: the manifest is saved first
            result = run_batch(args.inputs, args.out, options, engine=args.engine,
                               workers=args.workers, retries=args.retries, force=args.force,
                               ray_address=args.ray_address, progress=not args.no_progress,
                               recursive=args.recursive,
                               log=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt as exc:
        print("interrupted; finished inputs are kept, a rerun resumes", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else 130
    _summary(result, args.out)
    return EXIT_FAILED if result.failed else 0


def _summary(result, out: str) -> None:
    """Counts per status, this run's throughput, and one line per failed input (stderr)."""
    counts = result.counts
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    print(f"batch: {len(result.records)} inputs: {counts['done']} done, "
          f"{counts['skipped']} skipped (done before), {counts['failed']} failed; "
          f"{result.frames} frames in {result.seconds:.1f} s ({rate:.1f} frames/s) -> {out}",
          file=sys.stderr)
    for rec in result.failed:
        print(f"failed: {rec.id}: {rec.path}: {rec.error}", file=sys.stderr)
