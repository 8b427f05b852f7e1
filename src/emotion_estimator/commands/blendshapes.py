"""``emotion-estimator blendshapes``: one row of 52 scores per (frame, face)."""

from __future__ import annotations

import argparse
import sys
import time

from ..outputs import FORMATS
from .analyze import MAX_FACES, camera_index, printed_warnings, rescale_box


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image or video files, or folders of them")
    p.add_argument("--camera", type=camera_index, metavar="N",
                   help="read camera N instead (Ctrl-C stops)")
    p.add_argument("-o", "--output", default="-",
                   help="output file, or - for JSON lines on stdout (default)")
    p.add_argument("-f", "--format", choices=FORMATS,
                   help="output format (default: from the --output suffix; jsonl for -)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--landmarker", metavar="PATH",
                   help="face_landmarker.task to use (default: verified cached copy)")
    p.add_argument("--skip-bad", action="store_true",
                   help="with several inputs, read the usable ones and warn about the others "
                        "(default: any bad input stops the run before anything is written)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..blendshapes import BLENDSHAPE_NAMES
    from ..errors import EXIT_RUNTIME, InputError, interrupted_status
    from ..estimator import EmotionEstimator
    from ..outputs import check_table_output, frame_columns, open_writer
    from ..preflight import checked_items
    from ..sources import open_source
    from ..video import SourceError

    if not 1 <= args.max_faces <= MAX_FACES:
        raise InputError(f"--max-faces must be between 1 and {MAX_FACES}")
    check_table_output(args.output, args.format)  # before any work: a folder, a pipe, ...
    sources, skipped = checked_items(args.inputs, args.camera, {"--output": args.output},
                                     args.landmarker, args.skip_bad)
    many = len(sources) + len(skipped) > 1
    columns = frame_columns((), BLENDSHAPE_NAMES)
    if many:
        columns = {"source": str, **columns}
    for problem in skipped:
        print(f"warning: skipped: {problem}", file=sys.stderr)
    # the same input loop as analyze (MediaPipe run ahead on video files), no classifier
    estimator = EmotionEstimator(classify=False, max_faces=args.max_faces,
                                 landmarker=args.landmarker)

    failures: list[str] = []
    frames = with_face = 0
    status = 0
    writer = None
    start = time.perf_counter()
    try:
        for item in sources:
            try:
                source = open_source(item)
            except SourceError as exc:
                if not many:  # an absent camera: nothing was written
                    raise InputError(str(exc)) from exc
                failures.append(f"{exc} (it changed after the check)")
                continue
            if writer is None:
                try:
                    writer = open_writer(args.output, args.format, columns)
                except (OSError, ValueError) as exc:
                    raise InputError(str(exc)) from exc
            scale = getattr(source, "scale", 1.0)
            with source, printed_warnings():
                bar = tqdm(total=source.frame_count, unit="frame", file=sys.stderr,
                           desc=source.name[-40:], disable=args.no_progress or None)
                for result in estimator.stream(source):
                    frames += 1
                    with_face += bool(result.faces)
                    for row in result.rows(blendshapes=True):
                        if many:
                            row["source"] = source.name
                        if scale != 1.0:
                            rescale_box(row, scale)
                        writer.write(row)
                    bar.update()
                bar.close()
            for warning in source.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the same path
        status = interrupted_status(exc, args.camera is not None, status)
    except SourceError as exc:  # a camera or file that stops delivering mid-run
        failures.append(f"{exc}; output so far is kept")
    finally:
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - start
    if frames or not failures:
        where = "stdout" if args.output == "-" else args.output
        print(f"{frames} frames, {with_face} with a face, {frames / max(elapsed, 1e-9):.1f} fps "
              f"-> {where}", file=sys.stderr)
    for failure in failures:
        print(f"emotion-estimator: error: {failure}", file=sys.stderr)
    return status or (EXIT_RUNTIME if failures else 0)
