"""``emotion-estimator summarize``: a result table per face, as label episodes, or as events."""

from __future__ import annotations

import argparse

VIEWS = ("faces", "episodes", "events")


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = ("faces: frames, seconds, the label shown most, share of frames per label "
                "(and undecided), mean probabilities, episodes and events per face; "
                "episodes: each run of one label on one face; events: each label change "
                "(never a face's first decision), as serve sends them.")
    p.add_argument("table", help="rows from analyze (.csv, .jsonl, .parquet) or a batch "
                                 "rows folder (OUT/rows)")
    p.add_argument("--by", choices=VIEWS, default="faces",
                   help="one row per face (default), per label episode, or per event")
    p.add_argument("-o", "--output", default="-",
                   help="file (.csv, .jsonl, .parquet) or - for CSV on stdout (default)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..atomic import atomic_path
    from ..errors import InputError
    from ..outputs import check_output, format_for
    from ..summary import episodes, events, read_table, summarize

    source = Path(args.table)
    if not source.exists():
        raise InputError(f"no such file or folder: {source}")
    try:
        fmt = "csv" if args.output == "-" else format_for(args.output, None)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    check_output(args.output)
    try:
        table = read_table(source)
        result = {"faces": summarize, "episodes": episodes, "events": events}[args.by](table)
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"{source}: {exc}") from exc
    if args.output == "-":
        result.to_csv(sys.stdout, index=False)
        return 0
    with atomic_path(args.output) as tmp:
        if fmt == "csv":
            result.to_csv(tmp, index=False)
        elif fmt == "jsonl":
            result.to_json(tmp, orient="records", lines=True)
        else:
            result.to_parquet(tmp, index=False)
    return 0
