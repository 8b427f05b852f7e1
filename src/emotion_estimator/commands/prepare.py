"""``emotion-estimator prepare``: FER2013 or a labelled folder -> blendshape dataset
(paper §3.1-3.2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    import os

    p.epilog = ("Writes OUT/dataset.parquet (image_id, split, source_label, label, augmented, "
                "aug_params, preprocess, 52 blendshapes, landmarks, face; with --labels ferplus "
                "also the ferplus_* vote counts), OUT/undetected.parquet, OUT/samples.parquet, "
                "OUT/report.md and OUT/report.json. A killed run resumes from OUT/.work when "
                "started again with the same options.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fer2013", type=Path, metavar="PATH",
                        help="Kaggle fer2013.csv[.gz] (emotion,pixels,Usage) or a folder "
                             "<split>/<class>/*.png|jpg")
    source.add_argument("--folder", type=Path, metavar="DIR",
                        help="a labelled folder of photos: DIR/labels.csv (path,label) or "
                             "DIR/<label>/*.jpg|png; images used as they are (preprocess raw; "
                             "stills over 2048 px reduced as `analyze` does)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="use only the first N rows / images (quick trials)")
    fer = p.add_argument_group("FER2013 source (--fer2013)")
    fer.add_argument("--classes",
                     help="3 (happy/sad/unknown), 7 (FER classes) or a JSON mapping file "
                          "{\"angry\": \"unknown\", ...} (default: 3)")
    fer.add_argument("--caps",
                     help="train caps per FER class: paper (Table 2: happy, sad 4000; angry, "
                          "fear, surprise, neutral 1500; disgust all), none, or CLASS=N,... "
                          "(default: paper)")
    fer.add_argument("--labels", choices=["fer", "ferplus"], default="fer",
                     help="fer: FER2013's own labels; ferplus: the FER+ majority vote (needs "
                          "--ferplus), folded to happy/sad/unknown; images mostly voted "
                          "unknown / not a face, and ties between classes, are left out; the "
                          "vote counts are kept as ferplus_* columns for soft targets "
                          "(default: %(default)s)")
    fer.add_argument("--ferplus", type=Path, metavar="VOTES_CSV",
                     help="FER+ fer2013new.csv (one row per FER2013 row, same order)")
    folder = p.add_argument_group("labelled folder source (--folder)")
    folder.add_argument("--class-map", metavar="JSON",
                        help="JSON object {\"source label\": \"happy|sad|unknown\", ...}; the key "
                             "\"*\" covers every other label, else such labels are bad (default: "
                             "happiness/happy -> happy, sadness/sad -> sad, the rest -> unknown)")
    folder.add_argument("--holdout", type=_fraction, metavar="FRACTION",
                        help="the folder's fixed held-out part, split 'test': chosen by a hash "
                             "of each image's path (same images every run, whatever --val or "
                             "--seed); the rows the folder is scored on when it is used for "
                             "training, as `bench` scores it (default: 0.3)")
    folder.add_argument("--val", type=_fraction, metavar="FRACTION",
                        help="share of the other images in split 'val' (a second, fixed hash); "
                             "the rest is 'train' (default: 0.15)")
    folder.add_argument("--on-bad-image", choices=["skip", "stop"],
                        help="an unreadable image or a label the class map does not cover: "
                             "'skip' leaves it out and lists it in the report, 'stop' ends the "
                             "run with exit code 2 naming the path (default: skip)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the caps and the augmentation (default: %(default)s)")
    p.add_argument("--preprocess",
                   help="comma list of variants, one dataset row each: raw (as is), "
                        "upscale (resize to --size), pad (--pad px border replication, "
                        "then resize to --size); e.g. raw,pad (default: pad for --fer2013; "
                        "--folder takes only raw)")
    p.add_argument("--pad", type=int, default=12,
                   help="border of the pad variant, pixels (default: %(default)s)")
    p.add_argument("--size", type=_positive, default=144,
                   help="side of upscale/pad variants (default: %(default)s)")
    p.add_argument("--augment-copies", type=int,
                   help="augmented copies per kept train image: random horizontal flip + rotation "
                        "(default: 1 for --fer2013, 0 for --folder)")
    p.add_argument("--max-angle", type=float, default=36.0,
                   help="rotation range, ± degrees (default: %(default)s = the paper's 0.2*180)")
    p.add_argument("--min-detection-confidence", type=float, default=0.5,
                   help="MediaPipe face detection threshold (default: %(default)s)")
    p.add_argument("--retry-stills", action="store_true",
                   help="an image with no face is looked at again as analyze looks at a "
                        "still (a replicated border, then a lower threshold), so training "
                        "sees the faces only that retry finds")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="worker processes, each with its own MediaPipe landmarker "
                        "(default: all cores, %(default)s)")
    p.add_argument("--chunk-size", type=_positive, default=256,
                   help="images per resumable chunk (default: %(default)s)")
    fer.add_argument("--on-bad-row", choices=["stop", "skip"],
                   help="a malformed row (not 2304 pixels, a value outside 0..255, an unknown "
                        "emotion or Usage): 'stop' ends the run with exit code 2 and the row's "
                        "line number, 'skip' drops it, lists it in the report and continues "
                        "(other image ids unchanged). A wrong header always stops. "
                        "(default: stop)")
    fer.add_argument("--table3-full", action="store_true",
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

    variants = None
    if args.preprocess is not None:
        variants = tuple(v.strip() for v in args.preprocess.split(",") if v.strip())
        if not variants:
            raise InputError("--preprocess needs at least one variant")
    if args.pad < 0:
        raise InputError("--pad must be 0 or more")
    opts = PrepareOptions(
        fer2013=args.fer2013, folder=args.folder, out=args.out, limit=args.limit,
        classes=args.classes, caps=args.caps, labels=args.labels, ferplus=args.ferplus,
        class_map=args.class_map, holdout=args.holdout, val=args.val,
        on_bad_image=args.on_bad_image, seed=args.seed, preprocess=variants, pad=args.pad,
        size=args.size, augment_copies=args.augment_copies, max_angle=args.max_angle,
        min_detection_confidence=args.min_detection_confidence,
        retry_stills=args.retry_stills, workers=args.workers,
        chunk_size=args.chunk_size, on_bad_row=args.on_bad_row, force=args.force,
        progress=not args.no_progress, table3_full=args.table3_full)
    opts.resolved()  # a wrong combination of options: exit 2 before --out is touched
    with folder_lock(args.out):  # a second run into the same --out: exit 2 at once
        report = prepare(opts)
    rows = report["rows"]
    rates = "; ".join(f"{name}: {100 * det['rate_all']:.1f}% detected"
                      for name, det in report["counts"]["detection"].items()
                      if det["rate_all"] is not None)
    splits = ", ".join(f"{s} {n}" for s, n in rows["dataset_by_split"].items())
    bad = (f"; {len(report['bad_images'])} bad images skipped"
           if report.get("bad_images") else "")
    print(f"{args.out}/dataset.parquet: {rows['dataset']} rows ({splits}; {rows['undetected']} "
          f"calls without a face; {rates}{bad}) in {report['timings']['extract']:.0f} s")
    return 0
