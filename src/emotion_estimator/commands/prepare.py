"""``emotion-estimator prepare``: FER2013 -> blendshape dataset (paper §3.1-3.2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    import os

    p.epilog = ("Writes OUT/dataset.parquet (image_id, split, source_label, label, augmented, "
                "aug_params, preprocess, 52 blendshapes), OUT/undetected.parquet, "
                "OUT/samples.parquet, OUT/report.md and OUT/report.json. A killed run resumes "
                "from OUT/.work when started again with the same options.")
    p.add_argument("--fer2013", type=Path, required=True, metavar="PATH",
                   help="Kaggle fer2013.csv[.gz] (emotion,pixels,Usage) or a folder "
                        "<split>/<class>/*.png|jpg")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="use only the first N rows (quick trials)")
    p.add_argument("--classes", default="3",
                   help="3 (happy/sad/unknown), 7 (FER classes) or a JSON mapping file "
                        "{\"angry\": \"unknown\", ...} (default: %(default)s)")
    p.add_argument("--caps", default="paper",
                   help="train caps per FER class: paper (Table 2: happy, sad 4000; angry, fear, "
                        "surprise, neutral 1500; disgust all), none, or CLASS=N,... "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the caps and the augmentation (default: %(default)s)")
    p.add_argument("--preprocess", default="pad",
                   help="comma list of variants, one dataset row each: raw (48x48 as is), "
                        "upscale (resize to --size), pad (--pad px border replication, "
                        "then resize to --size); e.g. raw,pad (default: %(default)s)")
    p.add_argument("--pad", type=int, default=12,
                   help="border of the pad variant, pixels (default: %(default)s)")
    p.add_argument("--size", type=_positive, default=144,
                   help="side of upscale/pad variants (default: %(default)s)")
    p.add_argument("--augment-copies", type=int, default=1,
                   help="augmented copies per kept train image: random horizontal flip + rotation "
                        "(default: %(default)s)")
    p.add_argument("--max-angle", type=float, default=36.0,
                   help="rotation range, ± degrees (default: %(default)s = the paper's 0.2*180)")
    p.add_argument("--min-detection-confidence", type=float, default=0.5,
                   help="MediaPipe face detection threshold (default: %(default)s)")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="worker processes, each with its own MediaPipe landmarker "
                        "(default: all cores, %(default)s)")
    p.add_argument("--chunk-size", type=_positive, default=256,
                   help="images per resumable chunk (default: %(default)s)")
    p.add_argument("--on-bad-row", choices=["stop", "skip"], default="stop",
                   help="a malformed row (not 2304 pixels, a value outside 0..255, an unknown "
                        "emotion or Usage): 'stop' ends the run with exit code 2 and the row's "
                        "line number, 'skip' drops it, lists it in the report and continues "
                        "(other image ids unchanged). A wrong header always stops. "
                        "(default: %(default)s)")
    p.add_argument("--table3-full", action="store_true",
                   help="also run MediaPipe on the train images the caps dropped, only to "
                        "report Table 3 (undetectable per class) over the whole train split as "
                        "the paper did, in report.md/json; the Parquet files stay the same")
    p.add_argument("--force", action="store_true",
                   help="rebuild a finished OUT (without it, an existing dataset is never "
                        "overwritten)")
    p.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                   help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..lock import folder_lock
    from ..training.prepare import PrepareOptions, prepare

    variants = tuple(v.strip() for v in args.preprocess.split(",") if v.strip())
    if not variants:
        raise InputError("--preprocess needs at least one variant")
    if args.pad < 0:
        raise InputError("--pad must be 0 or more")
    opts = PrepareOptions(
        fer2013=args.fer2013, out=args.out, limit=args.limit, classes=args.classes,
        caps=args.caps, seed=args.seed, preprocess=variants, pad=args.pad, size=args.size,
        augment_copies=args.augment_copies, max_angle=args.max_angle,
        min_detection_confidence=args.min_detection_confidence, workers=args.workers,
        chunk_size=args.chunk_size, on_bad_row=args.on_bad_row, force=args.force,
        progress=not args.no_progress, table3_full=args.table3_full)
    with folder_lock(args.out):  # a second run into the same --out: exit 2 at once
        report = prepare(opts)
    rows = report["rows"]
    rates = "; ".join(f"{name}: {100 * det['rate_all']:.1f}% detected"
                      for name, det in report["counts"]["detection"].items()
                      if det["rate_all"] is not None)
    print(f"{args.out}/dataset.parquet: {rows['dataset']} rows ({rows['undetected']} calls "
          f"without a face; {rates}) in {report['timings']['extract']:.0f} s")
    return 0
