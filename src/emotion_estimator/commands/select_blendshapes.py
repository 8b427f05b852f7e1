"""``emotion-estimator select-blendshapes``: the paper's §4.1 threshold rule on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Writes OUT/selection.json (chosen names and MediaPipe indices, counts, overlap "
                "with the paper's 27), OUT/histogram.png (paper Fig. 2) and OUT/scatter.png "
                "(paper Fig. 5).")
    p.add_argument("dataset", type=Path, help="dataset.parquet from `prepare`, or its folder")
    p.add_argument("--threshold", type=float, default=0.4,
                   help="score threshold (default: %(default)s)")
    p.add_argument("--min-count", type=int, default=100,
                   help="keep a blendshape above the threshold in more than this many images "
                        "(default: %(default)s)")
    p.add_argument("--preprocess", help="variant to count (default: raw if present)")
    p.add_argument("--include-augmented", action="store_true",
                   help="count augmented copies too (default: original train images only)")
    p.add_argument("--image-id", type=int, help="image of the histogram (default: the first)")
    p.add_argument("--out", type=Path,
                   help="output folder (default: DATASET_FOLDER/selection)")


def run(args: argparse.Namespace) -> int:
    import json

    from ..atomic import atomic_path, write_text
    from ..errors import InputError
    from ..training.select import (
        PAPER_NAMES,
        load_train_rows,
        plot_histogram,
        plot_scatter,
        select,
    )

    if not 0 <= args.threshold <= 1:
        raise InputError("--threshold must be within 0..1")
    if args.min_count < 0:
        raise InputError("--min-count must be 0 or more")
    rows, variant = load_train_rows(args.dataset, preprocess=args.preprocess,
                                    include_augmented=args.include_augmented)
    selection = select(rows, args.threshold, args.min_count)
    folder = args.dataset if args.dataset.is_dir() else args.dataset.parent
    out = args.out or folder / "selection"
    out.mkdir(parents=True, exist_ok=True)

    overlap = selection.overlap()
    result = {
        "dataset": str(args.dataset), "preprocess": variant,
        "include_augmented": args.include_augmented, "rows": selection.rows,
        "threshold": selection.threshold, "min_count": selection.min_count,
        "names": list(selection.names), "indices": list(selection.indices),
        "counts": selection.counts, "paper_names": list(PAPER_NAMES), "overlap": overlap,
    }
    write_text(json.dumps(result, indent=2) + "\n", out / "selection.json")
    if args.image_id is None:
        row = rows.iloc[0]
    else:
        match = rows[rows["image_id"] == args.image_id] if "image_id" in rows else rows.iloc[:0]
        if match.empty:
            raise InputError(f"--image-id {args.image_id} is not among the rows counted")
        row = match.iloc[0]
    with atomic_path(out / "histogram.png") as tmp:
        plot_histogram(row, tmp, selection.threshold)
    with atomic_path(out / "scatter.png") as tmp:
        plot_scatter(rows, selection, tmp)

    print(f"{len(selection.names)} of 52 blendshapes kept (score > {selection.threshold} in more "
          f"than {selection.min_count} of {selection.rows} train images, preprocess "
          f"{variant or 'n/a'}):")
    print("  " + ", ".join(f"{i}:{n}" for i, n in zip(selection.indices, selection.names,
                                                      strict=True)))
    print(f"overlap with the paper's 27: {len(overlap['both'])} in both; only ours: "
          f"{', '.join(overlap['only_ours']) or '-'}; only the paper's: "
          f"{', '.join(overlap['only_paper']) or '-'}")
    print(f"written: {out}/selection.json, histogram.png, scatter.png")
    return 0
