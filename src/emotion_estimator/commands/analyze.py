"""``emotion-estimator analyze``: emotion per face and frame of images, videos or a camera."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import resolve_output
from ..outputs import FORMATS
from ..temporal import SMOOTHING
from .recording_options import add_recording_options, open_ros_bag, recording_step
from .view_options import add_view_options, view_kwargs

VIDEO_OUT = frozenset({".mp4", ".mov", ".m4v", ".avi"})  # what --annotate can write
IMAGE_OUT = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})  # --annotate of a still
PLOT_OUT = frozenset({".png", ".svg", ".pdf"})  # what --plot can write
MAX_FACES = 100  # MediaPipe keeps a buffer per face; beyond this is a typo
MAX_CAMERA = 2**31 - 1  # OpenCV takes a C int
MAX_FACE_LINES = 5  # the summary names the faces seen longest, then sums up the rest


def camera_index(text: str) -> int:
    """``--camera N``: a non-negative integer (OpenCV crashes on some negative ones)."""
    value = int(text)
    if not 0 <= value <= MAX_CAMERA:
        raise argparse.ArgumentTypeError(f"camera index must be 0 to {MAX_CAMERA}, not {value}")
    return value


def finite(text: str) -> float:
    """A float that is neither nan nor infinite."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def model_help() -> str:
    """``--model``'s help, from the models the package ships (it cannot go stale)."""
    from ..classifier import DEFAULT_MODEL, shipped_models

    others = [m for m in shipped_models() if m != DEFAULT_MODEL]
    return (f"classifier: an .onnx file (its .json beside it) or a shipped model: "
            f"{DEFAULT_MODEL} (the default: aligned face crop + landmarks + blendshapes), "
            f"{', '.join(others)} (the paper's blendshape-only models)")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image or video files, or folders of them")
    p.add_argument("--camera", type=camera_index, metavar="N",
                   help="read camera N instead (runs until Ctrl-C, or q with --show)")
    p.add_argument("--realtime", action="store_true",
                   help="replay video files at their frame rate as if live (drops when behind)")
    p.add_argument("-o", "--output", default="-",
                   help="table of (frame, face) rows, or - for JSON lines on stdout (default)")
    p.add_argument("-f", "--format", choices=FORMATS,
                   help="output format (default: from the --output suffix; jsonl for -)")
    p.add_argument("--blendshapes", action="store_true",
                   help="add the 52 blendshape scores to every row")
    p.add_argument("--annotate", metavar="OUT.mp4|OUT.jpg",
                   help="write the video (or, for a photo, the image) with boxes, ids, labels "
                        "and class bars")
    p.add_argument("--show", action="store_true", help="show annotated frames live (q quits)")
    p.add_argument("--plot", metavar="PNG",
                   help="class probabilities per face: a timeline for video, bars for a photo")
    p.add_argument("--model", metavar="ONNX|NAME", help=model_help())
    add_view_options(p)
    add_recording_options(p)
    p.add_argument("--smoothing", choices=SMOOTHING, default="ema",
                   help="temporal filter per face on video (default: ema)")
    p.add_argument("--smoothing-param", action="append", default=[], metavar="NAME=VALUE",
                   help="filter parameter (times in s), repeatable: ema time_constant_s, margin, "
                        "hold_s; hmm dwell_s, evidence_s, margin, decide_s")
    p.add_argument("--forget-after", type=finite, default=1.0, metavar="S",
                   help="seconds a face may be missing before its id and filter reset (1.0)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N",
                   help="faces per frame, the largest (1; a photo with more says so)")
    p.add_argument("--landmarker", metavar="PATH",
                   help="face_landmarker.task to use (default: verified cached copy)")
    p.add_argument("--skip-bad", action="store_true",
                   help="with several inputs, analyse the readable ones and warn about the "
                        "others (default: any bad input stops the run before anything is "
                        "written)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--low-power", action="store_true",
                   help="for a single core: no second thread for MediaPipe, which sees frames "
                        "shrunk to 640 px on their long side (faces under ~40 px of that are "
                        "missed sooner)")


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
        """A few lines whatever the number of faces: the longest seen, then the rest summed."""
        if self.still:
            faces = ", ".join(f"#{i} {c.most_common(1)[0][0]}"
                              for i, c in list(self.labels.items())[:MAX_FACE_LINES])
            more = len(self.labels) - MAX_FACE_LINES
            faces += f", {more} more" if more > 0 else ""
            return [f"{self.name}: {len(self.labels)} face(s){': ' + faces if faces else ''}"]
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.name}: {self.frames} frames, {self.with_face} with a face, {fps:.1f} fps"]
        by_time = sorted(self.labels.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        shown = by_time if len(by_time) <= MAX_FACE_LINES else by_time[:MAX_FACE_LINES - 1]
        for face_id, counts in sorted(shown):
            out.append(f"  face {face_id}: {_shares(counts)}")
        if rest := by_time[len(shown):]:
            counts = sum((c for _, c in rest), Counter())
            out.append(f"  {len(rest)} more face ids (brief appearances): {_shares(counts)}")
        return out


def _shares(counts: Counter) -> str:
    total = sum(counts.values())
    shares = ", ".join(f"{label} {n / total:.0%}" for label, n in counts.most_common())
    return f"{shares} of {total} frames"


def _validate(args: argparse.Namespace) -> None:
    """Every option's value, before any file is read or written (exit 2 on a bad one)."""
    from ..errors import InputError
    from ..outputs import check_output, check_table_output

    if not 1 <= args.max_faces <= MAX_FACES:
        raise InputError(f"--max-faces must be between 1 and {MAX_FACES}")
    if not (math.isfinite(args.forget_after) and args.forget_after >= 0):
        raise InputError("--forget-after must be a finite number of seconds >= 0")
    smoothing_params(args)
    check_table_output(args.output, args.format)  # before any work: a folder, a pipe, ...
    if args.annotate is not None:
        if Path(args.annotate).suffix.lower() not in VIDEO_OUT | IMAGE_OUT:
            raise InputError(f"--annotate: write a video ({', '.join(sorted(VIDEO_OUT))}) "
                             f"or, for a photo, an image ({', '.join(sorted(IMAGE_OUT))}), "
                             f"not {args.annotate}")
        check_output(args.annotate, "--annotate")  # a link loop, a folder: named as such
        if args.annotate == "-" or resolve_output(args.annotate)[1]:
            raise InputError("--annotate: a video needs a regular file, not a device or pipe")
    if args.plot is not None:
        if Path(args.plot).suffix.lower() not in PLOT_OUT:
            raise InputError(f"--plot: write an image ({', '.join(sorted(PLOT_OUT))}), "
                             f"not {args.plot}")
        from ..timeline import require_matplotlib

        require_matplotlib()
    if args.show and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("--show needs a display (no DISPLAY set); use --annotate OUT.mp4")


def smoothing_params(args: argparse.Namespace) -> dict[str, float]:
    """``--smoothing-param NAME=VALUE`` as a dict: finite, >= 0, margins at most 1."""
    from ..errors import InputError
    from ..temporal import check_param

    params: dict[str, float] = {}
    for item in args.smoothing_param:
        name, _, value = (part.strip() for part in item.partition("="))
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--smoothing-param wants NAME=NUMBER, not {item!r}") from None
        if not name:
            raise InputError(f"--smoothing-param wants NAME=NUMBER, not {item!r}")
        try:  # the one check of these values, shared with the API (temporal.check_param)
            params[name] = check_param(name, number)
        except InputError as exc:
            raise InputError(f"--smoothing-param {exc}") from None
    return params


class Sinks:
    """Everything a frame result goes to: the table, the annotated video, the window.

    ``scale`` is the current source's frame pixels per original pixel (a downscaled still):
    table boxes are given in original pixels.
    """

    scale: float = 1.0

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
        self.still: Any = None  # the annotated photo, written on close
        if args.annotate and Path(args.annotate).suffix.lower() in VIDEO_OUT:
            from ..render import VideoWriter

            self.video = VideoWriter(args.annotate, fps or 30.0)
        self.timeline: list[dict[str, Any]] = []
        self._timeline_keys = ("timestamp_s", "face_id", "face_detected", "label", "decided",
                               *(f"p_{c}" for c in classes))
        self.quit = False
        self.source: Any = None  # the input being read
        self.rosbag = open_ros_bag(args)

    def __call__(self, result: Any, source_name: str | None) -> None:
        rows = result.rows(self.args.blendshapes)
        for row in rows:
            if source_name is not None:
                row["source"] = source_name
            if self.scale != 1.0:
                rescale_box(row, self.scale)
            self.writer.write(row)
        if self.rosbag is not None:
            self.rosbag(result, self.source)
        if self.args.plot:  # only what the timeline needs: constant-size rows
            self.timeline.extend({k: row.get(k) for k in self._timeline_keys} for row in rows)
        if self.video is not None or self.args.show or self.args.annotate:
            from ..render import annotate

            image = annotate(result.image, result, self.classes)
            if self.video is not None:
                self.video.write(image)
            elif self.args.annotate:
                self.still = image
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
        if self.rosbag is not None:
            self.rosbag.close()
        if self.video is not None:
            self.video.close()
        if self.still is not None:
            from ..render import write_image

            write_image(self.args.annotate, self.still)
        if self.args.show:
            import contextlib

            import cv2

            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()


def rescale_box(row: dict[str, Any], scale: float) -> None:
    """Box columns of a row from frame pixels back to the original image's pixels."""
    for key in ("x", "y", "w", "h"):
        if row.get(key) is not None:
            row[key] = round(row[key] / scale, 2)


def _check_annotate_kind(args: argparse.Namespace, items: list[Any]) -> None:
    """``--annotate OUT.jpg`` is for a photo, ``OUT.mp4`` for a video or camera (exit 2)."""
    from ..errors import InputError
    from ..video import looks_like_image

    if not args.annotate or not items:
        return
    photo = isinstance(items[0], Path) and looks_like_image(items[0])
    if Path(args.annotate).suffix.lower() in IMAGE_OUT and not photo:
        raise InputError(f"--annotate {args.annotate}: an image is written for a photo; "
                         f"for video give {', '.join(sorted(VIDEO_OUT))}")


def _estimator(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..estimator import EmotionEstimator

    params = smoothing_params(args)
    try:
        return EmotionEstimator(args.model, max_faces=args.max_faces, smoothing=args.smoothing,
                                smoothing_params=params, forget_s=args.forget_after,
                                landmarker=args.landmarker, **view_kwargs(args),
                                low_power=getattr(args, "low_power", False))  # batch: none
    except TypeError as exc:  # a parameter the chosen filter does not take
        raise InputError(f"--smoothing-param: {args.smoothing} filter: {exc}") from exc
    except (ValueError, OSError) as exc:
        raise InputError(str(exc)) from exc


@contextlib.contextmanager
def printed_warnings() -> Iterator[None]:
    """Stills with more faces than ``--max-faces`` (:class:`FacesLeftOut`): one ``warning:``
    line each on stderr once the block ends (not Python's warning format)."""
    from ..estimator import FacesLeftOut

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FacesLeftOut)
        yield
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)


def _analyze(estimator: Any, source: Any, sinks: Sinks, stat: SourceStats,
             source_name: str | None, no_progress: bool) -> None:
    """All frames of one source into the sinks (stops early on q in the window)."""
    from tqdm import tqdm

    bar = tqdm(total=source.frame_count, unit="frame", file=sys.stderr, leave=False,
               desc=Path(source.name).name[-40:],
               disable=no_progress or source.is_live or None)
    start = time.perf_counter()
    try:
        with printed_warnings():
            _frames(estimator, source, sinks, stat, source_name, bar)
    finally:
        stat.seconds = time.perf_counter() - start
        bar.close()


def _frames(estimator: Any, source: Any, sinks: Sinks, stat: SourceStats,
            source_name: str | None, bar: Any) -> None:
    """The loop of :func:`_analyze`."""
    for result in estimator.stream(source):
        sinks(result, source_name)
        stat.frames += 1
        stat.with_face += bool(result.faces)
        for face in result.faces:
            stat.labels[face.face_id][face.label if face.decided else "undecided"] += 1
        bar.update()
        if sinks.quit:
            break


def run(args: argparse.Namespace) -> int:
    from ..errors import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_RUNTIME, InputError, interrupted_status
    from ..preflight import checked_items
    from ..sources import open_source
    from ..video import ImageSource, SourceError

    _validate(args)
    if (listed := recording_step(args)) is not None:
        return listed
    items, skipped = checked_items(
        args.inputs, args.camera,
        {"--output": args.output, "--annotate": args.annotate, "--plot": args.plot},
        args.landmarker, args.skip_bad)
    if (args.annotate or args.plot) and len(items) > 1:
        raise InputError("--annotate and --plot take a single input")
    _check_annotate_kind(args, items)
    estimator = _estimator(args)
    many = len(items) + len(skipped) > 1
    columns = estimator.columns(args.blendshapes)
    if many:
        columns = {"source": str, **columns}
    for problem in skipped:
        print(f"warning: skipped: {problem}", file=sys.stderr)

    failures: list[str] = []
    stats: list[SourceStats] = []
    status = 0
    sinks: Sinks | None = None
    try:
        with estimator:
            for item in items:
                try:
                    source = open_source(item, realtime=getattr(args, "realtime", False),
                                         topic=args.topic)
                except SourceError as exc:
                    if not many:  # an absent camera or stream: nothing was written
                        raise InputError(str(exc)) from exc
                    failures.append(f"{exc} (it changed after the check)")  # runtime: exit 1
                    continue
                if sinks is None:
                    sinks = Sinks(args, columns, source.fps, estimator.classes)
                sinks.scale = getattr(source, "scale", 1.0)
                sinks.source = source
                stats.append(SourceStats(source.name, still=isinstance(source, ImageSource)))
                with source:
                    _analyze(estimator, source, sinks, stats[-1], source.name if many else None,
                             args.no_progress)
                for warning in source.warnings:
                    print(f"warning: {warning}", file=sys.stderr)
                if sinks.quit:
                    break
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the same path
        status = interrupted_status(exc, args.camera is not None, status)
    except SourceError as exc:  # a camera or file that stops delivering mid-run
        failures.append(f"{exc}; output so far is kept")
    finally:
        if sinks is not None:
            sinks.close()

    _summary(stats)
    if sinks is not None and args.plot and sinks.timeline:
        from ..estimator import to_frame
        from ..timeline import plot_still, plot_timeline

        plot = plot_still if stats and stats[0].still else plot_timeline
        plot(to_frame(sinks.timeline, estimator.columns()), estimator.classes, args.plot,
             title=Path(stats[0].name).name if stats else "")
    if not getattr(estimator.classifier, "trained", True):
        print("warning: the classifier is an untrained placeholder; labels are meaningless",
              file=sys.stderr)
    for failure in failures:
        print(f"emotion-estimator: error: {failure}", file=sys.stderr)
    return status or (EXIT_RUNTIME if failures else 0)


def _summary(stats: list[SourceStats]) -> None:
    """Frames, share of frames per label per face, and fps, on stderr."""
    for stat in stats:
        for line in stat.lines():
            print(line, file=sys.stderr)
    if len(stats) > 1:
        frames, seconds = sum(s.frames for s in stats), sum(s.seconds for s in stats)
        print(f"total: {frames} frames from {len(stats)} inputs, "
              f"{frames / max(seconds, 1e-9):.1f} fps", file=sys.stderr)
