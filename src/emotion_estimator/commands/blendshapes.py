"""``emotion-estimator blendshapes``: one row of 52 scores per (frame, face)."""

from __future__ import annotations

import argparse
import sys
import time

from ..outputs import FORMATS


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image or video files, or folders of them")
    p.add_argument("--camera", type=int, metavar="N", help="read camera N instead (Ctrl-C stops)")
    p.add_argument("-o", "--output", default="-",
                   help="output file, or - for JSON lines on stdout (default)")
    p.add_argument("-f", "--format", choices=FORMATS,
                   help="output format (default: from the --output suffix; jsonl for -)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--landmarker", metavar="PATH",
                   help="face_landmarker.task to use (default: verified cached copy)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..blendshapes import BLENDSHAPE_NAMES, FaceLandmarker
    from ..errors import EXIT_INPUT, InputError
    from ..estimator import FrameAnalyzer
    from ..outputs import frame_columns, open_writer
    from ..video import ImageSource, SourceError, expand_inputs, open_source

    if (args.camera is None) == (not args.inputs):
        raise InputError("give INPUT files or --camera N (one of the two)")
    if args.max_faces < 1:
        raise InputError("--max-faces must be at least 1")
    try:
        sources: list = [args.camera] if args.camera is not None else expand_inputs(args.inputs)
    except SourceError as exc:
        raise InputError(str(exc)) from exc
    columns = frame_columns((), BLENDSHAPE_NAMES)
    if len(sources) > 1:
        columns = {"source": str, **columns}
    try:
        writer = open_writer(args.output, args.format, columns)
    except (OSError, ValueError) as exc:
        raise InputError(str(exc)) from exc

    failures: list[str] = []
    frames = with_face = 0
    start = time.perf_counter()
    with writer:
        for item in sources:
            try:
                source = open_source(item)
            except SourceError as exc:
                if args.camera is not None:
                    raise InputError(str(exc)) from exc
                failures.append(str(exc))
                continue
            mode = "image" if isinstance(source, ImageSource) else "video"
            track = FrameAnalyzer(None)  # persistent face ids, no classifier
            with source, FaceLandmarker(args.landmarker, mode=mode,
                                        max_faces=args.max_faces) as landmarker:
                bar = tqdm(source, total=source.frame_count, unit="frame", file=sys.stderr,
                           desc=source.name[-40:], disable=args.no_progress or None)
                for frame in bar:
                    result = track(frame, landmarker.detect(frame.image, frame.timestamp_s))
                    frames += 1
                    with_face += bool(result.faces)
                    for row in result.rows(blendshapes=True):
                        if len(sources) > 1:
                            row["source"] = source.name
                        writer.write(row)
                bar.close()
            for warning in source.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    if frames or not failures:
        where = "stdout" if args.output == "-" else args.output
        print(f"{frames} frames, {with_face} with a face, {frames / max(elapsed, 1e-9):.1f} fps "
              f"-> {where}", file=sys.stderr)
    for failure in failures:
        print(f"emotion-estimator: error: {failure}", file=sys.stderr)
    if failures:
        return EXIT_INPUT
    return 0
