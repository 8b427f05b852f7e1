"""``emotion-estimator analyze``: emotion per face and frame of images, videos or a camera."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..outputs import FORMATS
from ..temporal import SMOOTHING

VIDEO_OUT = frozenset({".mp4", ".mov", ".m4v", ".avi"})  # what --annotate can write


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image or video files, or folders of them")
    p.add_argument("--camera", type=int, metavar="N",
                   help="read camera N instead (runs until Ctrl-C, or q with --show)")
    p.add_argument("-o", "--output", default="-",
                   help="table of (frame, face) rows, or - for JSON lines on stdout (default)")
    p.add_argument("-f", "--format", choices=FORMATS,
                   help="output format (default: from the --output suffix; jsonl for -)")
    p.add_argument("--blendshapes", action="store_true",
                   help="add the 52 blendshape scores to every row")
    p.add_argument("--annotate", metavar="OUT.mp4",
                   help="write the video with boxes, ids, labels and class bars")
    p.add_argument("--show", action="store_true", help="show annotated frames live (q quits)")
    p.add_argument("--plot", metavar="PNG", help="timeline of class probabilities per face")
    p.add_argument("--model", metavar="ONNX|NAME",
                   help="classifier: an .onnx file (its .json beside it) or a shipped model "
                        "name: default (dense), lstm (the paper's architecture)")
    p.add_argument("--smoothing", choices=SMOOTHING, default="ema",
                   help="temporal filter per face on video (default: ema)")
    p.add_argument("--smoothing-param", action="append", default=[], metavar="NAME=VALUE",
                   help="filter parameter (times in s), repeatable: ema time_constant_s, margin, "
                        "hold_s; hmm dwell_s, evidence_s, margin")
    p.add_argument("--forget-after", type=float, default=1.0, metavar="S",
                   help="seconds a face may be missing before its id and filter reset (1.0)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--landmarker", metavar="PATH",
                   help="face_landmarker.task to use (default: verified cached copy)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@dataclass
class SourceStats:
    """What the summary reports for one input."""

    name: str
    frames: int = 0
    with_face: int = 0
    seconds: float = 0.0
    still: bool = False
    labels: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def lines(self) -> list[str]:
        if self.still:
            faces = ", ".join(f"#{i} {c.most_common(1)[0][0]}" for i, c in self.labels.items())
            return [f"{self.name}: {len(self.labels)} face(s){': ' + faces if faces else ''}"]
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.name}: {self.frames} frames, {self.with_face} with a face, {fps:.1f} fps"]
        for face_id, counts in sorted(self.labels.items()):
            total = sum(counts.values())
            shares = ", ".join(f"{label} {n / total:.0%}" for label, n in counts.most_common())
            out.append(f"  face {face_id}: {shares} of {total} frames")
        return out


def _check_folder(option: str, path: str | None) -> None:
    from ..errors import InputError

    if path and path != "-" and not Path(path).resolve().parent.is_dir():
        raise InputError(f"{option}: folder does not exist: {Path(path).parent}")


def _validate(args: argparse.Namespace) -> None:
    from ..errors import InputError

    if (args.camera is None) == (not args.inputs):
        raise InputError("give INPUT files or --camera N (one of the two)")
    if args.max_faces < 1:
        raise InputError("--max-faces must be at least 1")
    if args.forget_after < 0:
        raise InputError("--forget-after must be >= 0 seconds")
    from ..outputs import format_for

    try:
        fmt = format_for(args.output, args.format)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if fmt == "parquet" and args.output == "-":
        raise InputError("parquet cannot stream to stdout; give --output FILE")
    for option in ("output", "annotate", "plot"):
        _check_folder(f"--{option}", getattr(args, option))
    if args.annotate and Path(args.annotate).suffix.lower() not in VIDEO_OUT:
        raise InputError(f"--annotate: write a video ({', '.join(sorted(VIDEO_OUT))}), "
                         f"not {args.annotate}")
    if args.plot:
        from ..timeline import require_matplotlib

        require_matplotlib()
    if args.show and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("--show needs a display (no DISPLAY set); use --annotate OUT.mp4")


class Sinks:
    """Everything a frame result goes to: the table, the annotated video, the window."""

    def __init__(self, args: argparse.Namespace, columns: dict[str, type], fps: float | None,
                 classes: tuple[str, ...]) -> None:
        from ..errors import InputError
        from ..outputs import open_writer

        self.args, self.classes = args, classes
        try:
            self.writer = open_writer(args.output, args.format, columns)
        except (OSError, ValueError) as exc:
            raise InputError(str(exc)) from exc
        self.video = None
        if args.annotate:
            from ..render import VideoWriter

            self.video = VideoWriter(args.annotate, fps or 30.0)
        self.timeline: list[dict[str, Any]] = []
        self._timeline_keys = ("timestamp_s", "face_id", "face_detected",
                               *(f"p_{c}" for c in classes))
        self.quit = False

    def __call__(self, result: Any, source_name: str | None) -> None:
        rows = result.rows(self.args.blendshapes)
        for row in rows:
            if source_name is not None:
                row["source"] = source_name
            self.writer.write(row)
        if self.args.plot:  # only what the timeline needs: constant-size rows
            self.timeline.extend({k: row.get(k) for k in self._timeline_keys} for row in rows)
        if self.video is not None or self.args.show:
            from ..render import annotate

            image = annotate(result.image, result, self.classes)
            if self.video is not None:
                self.video.write(image)
            if self.args.show:
                self._show(image)

    def _show(self, image: Any) -> None:
        import cv2

        try:
            cv2.imshow("emotion-estimator", image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise RuntimeError("cannot open a window (OpenCV without GUI support?)") from exc
        self.quit = key in (ord("q"), 27)

    def close(self) -> None:
        self.writer.close()
        if self.video is not None:
            self.video.close()
        if self.args.show:
            import contextlib

            import cv2

            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()


def _estimator(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..estimator import EmotionEstimator

    params = {}
    for item in args.smoothing_param:
        name, _, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--smoothing-param wants NAME=NUMBER, not {item!r}") from None
    try:
        return EmotionEstimator(args.model, max_faces=args.max_faces, smoothing=args.smoothing,
                                smoothing_params=params, forget_s=args.forget_after,
                                landmarker=args.landmarker)
    except TypeError as exc:  # a parameter the chosen filter does not take
        raise InputError(f"--smoothing-param: {args.smoothing} filter: {exc}") from exc
    except (ValueError, OSError) as exc:
        raise InputError(str(exc)) from exc


def _analyze(estimator: Any, source: Any, sinks: Sinks, stat: SourceStats,
             source_name: str | None, no_progress: bool) -> None:
    """All frames of one source into the sinks (stops early on q in the window)."""
    from tqdm import tqdm

    bar = tqdm(total=source.frame_count, unit="frame", file=sys.stderr, leave=False,
               desc=Path(source.name).name[-40:],
               disable=no_progress or source.is_live or None)
    start = time.perf_counter()
    try:
        for result in estimator.stream(source):
            sinks(result, source_name)
            stat.frames += 1
            stat.with_face += bool(result.faces)
            for face in result.faces:
                stat.labels[face.face_id][face.label] += 1
            bar.update()
            if sinks.quit:
                break
    finally:
        stat.seconds = time.perf_counter() - start
        bar.close()


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_INPUT, EXIT_RUNTIME, InputError
    from ..video import ImageSource, SourceError, expand_inputs, open_source

    _validate(args)
    try:
        items: list = [args.camera] if args.camera is not None else expand_inputs(args.inputs)
    except SourceError as exc:
        raise InputError(str(exc)) from exc
    if (args.annotate or args.plot) and len(items) > 1:
        raise InputError("--annotate and --plot take a single input")
    estimator = _estimator(args)
    many = len(items) > 1
    columns = estimator.columns(args.blendshapes)
    if many:
        columns = {"source": str, **columns}

    failures: list[str] = []
    stats: list[SourceStats] = []
    status = 0
    sinks: Sinks | None = None
    try:
        with estimator:
            for item in items:
                try:
                    source = open_source(item)
                except SourceError as exc:
                    if not many:
                        raise InputError(str(exc)) from exc
                    failures.append(str(exc))
                    continue
                if sinks is None:
                    sinks = Sinks(args, columns, source.fps, estimator.classes)
                stats.append(SourceStats(source.name, still=isinstance(source, ImageSource)))
                with source:
                    _analyze(estimator, source, sinks, stats[-1], source.name if many else None,
                             args.no_progress)
                for warning in source.warnings:
                    print(f"warning: {warning}", file=sys.stderr)
                if sinks.quit:
                    break
    except KeyboardInterrupt:
        print("interrupted; output so far is kept", file=sys.stderr)
        status = 0 if args.camera is not None else 130
    except SourceError as exc:  # a camera or file that stops delivering mid-run
        failures.append(f"{exc}; output so far is kept")
        status = EXIT_RUNTIME
    finally:
        if sinks is not None:
            sinks.close()

    _summary(stats)
    if sinks is not None and args.plot and sinks.timeline:
        from ..estimator import to_frame
        from ..timeline import plot_timeline

        plot_timeline(to_frame(sinks.timeline, estimator.columns()), estimator.classes,
                      args.plot, title=Path(stats[0].name).name if stats else "")
    if not getattr(estimator.classifier, "trained", True):
        print("warning: the classifier is an untrained placeholder; labels are meaningless",
              file=sys.stderr)
    for failure in failures:
        print(f"emotion-estimator: error: {failure}", file=sys.stderr)
    return status or (EXIT_INPUT if failures else 0)


def _summary(stats: list[SourceStats]) -> None:
    """Frames, share of frames per label per face, and fps, on stderr."""
    for stat in stats:
        for line in stat.lines():
            print(line, file=sys.stderr)
    if len(stats) > 1:
        frames, seconds = sum(s.frames for s in stats), sum(s.seconds for s in stats)
        print(f"total: {frames} frames from {len(stats)} inputs, "
              f"{frames / max(seconds, 1e-9):.1f} fps", file=sys.stderr)
