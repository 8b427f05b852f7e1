"""Growth with resolution and faces (product vs a bare MediaPipe loop), and a per-stage profile.

    .venv/bin/python benchmarks/bench_growth.py                     # results/growth.{md,json}
    .venv/bin/python benchmarks/bench_growth.py --rounds 3 --parts growth
    .venv/bin/python benchmarks/bench_growth.py --cores 0           # pinned to core 0 (1 core)
    emotion-estimator bench growth --rounds 3                       # the same, via the CLI

1. Growth (``growth``): ``single_face.mp4`` upscaled to 360p (as is), 720p and 1080p, and four
   copies of it tiled 2x2 into a 720p frame (4 faces); frames decoded and scaled beforehand,
   so decoding is in neither side. Per case, ``--rounds`` rounds in shuffled order of:
   *bare* (MediaPipe Tasks VIDEO loop: BGR->RGB + ``detect_for_video``, ``num_faces`` = the
   faces), *bare-c* (the same landmarker through ``FaceLandmarker``, which reads MediaPipe's C
   result directly as the product does), *product* (``EmotionEstimator(max_faces=...)
   .stream`` with its overlap thread, each result's rows written to a CSV file, as ``analyze``
   does) and *low-power* (the same with
   ``low_power=True``: one thread, MediaPipe on frames shrunk to 640 px). The clock starts
   after the first frame's result on every side (model loading is not timed; the product's
   source waits for the clock before handing out frame 1, so its thread gets no head start).
   Reported: frames per second and CPU ms per frame (user + system, all threads of the
   process), medians of the rounds, and product / bare ratios of both.
2. Profile (``profile``): one thread (ONNX Runtime and OpenCV), the default model, one face
   (``single_face.mp4`` decoded from the file) and four (its 720p 2x2 tiles, from memory):
   CPU ms per frame of each stage of the per-frame step -- decode (OpenCV), landmarker
   (MediaPipe incl. its own threads and reading its result), features (``features.build``),
   graph (the ONNX Runtime session run), filter (tracking, operating point, temporal filters,
   result objects: the rest of ``FrameAnalyzer``), writer (rows + CSV); and the classifier
   step (features + graph) per face.

Every report names the CPU model, the cores this process may use and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import MEDIA, RESULTS, markdown_table  # noqa: E402

from emotion_estimator.cli import quiet_native_logs  # noqa: E402
from emotion_estimator.video import Frame, FrameSource  # noqa: E402

CLIP = MEDIA / "single_face.mp4"
CASES = [("360p", (640, 360), 1), ("720p", (1280, 720), 1), ("1080p", (1920, 1080), 1),
         ("720p, 4 faces", (1280, 720), 4)]
SIDES = ("bare", "bare-c", "product", "low-power")


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    cap.release()
    return frames


def case_frames(clip: list[np.ndarray], size: tuple[int, int], faces: int) -> list[np.ndarray]:
    """The clip scaled to ``size``, or 4 copies tiled 2x2 into it."""
    if faces == 1:
        if (clip[0].shape[1], clip[0].shape[0]) == size:
            return clip
        return [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in clip]
    if faces != 4:
        raise ValueError("tiles of 4 faces only")
    half = (size[0] // 2, size[1] // 2)
    out = []
    for f in clip:
        tile = cv2.resize(f, half, interpolation=cv2.INTER_AREA)
        out.append(np.vstack([np.hstack([tile, tile[:, ::-1]]), np.hstack([tile[:, ::-1], tile])]))
    return out


class GatedSource(FrameSource):
    """Frames from memory at 30 fps; frame 1 waits until ``gate`` is set (the clock runs)."""

    def __init__(self, images: list[np.ndarray], gate: threading.Event) -> None:
        super().__init__()
        self.images, self.gate, self.fps = images, gate, 30.0
        self.frame_count, self.name = len(images), "memory"

    def __iter__(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            if i == 1:
                self.gate.wait()
            yield Frame(i, i / 30.0, image)


def bare(frames: list[np.ndarray], faces: int) -> tuple[float, float]:
    """MediaPipe alone: seconds and CPU seconds of frames 1.. (frame 0 starts the clock)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from emotion_estimator.assets import landmarker_path

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(landmarker_path())),
        running_mode=vision.RunningMode.VIDEO, num_faces=faces, output_face_blendshapes=True)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for i, bgr in enumerate(frames):
            if i == 1:
                t0, c0 = time.perf_counter(), benchlib.cpu_seconds()
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                        int(i * 1000 / 30))
        return time.perf_counter() - t0, benchlib.cpu_seconds() - c0


def bare_c(frames: list[np.ndarray], faces: int) -> tuple[float, float]:
    """MediaPipe with its C result read directly (``FaceLandmarker``, ``mpresult.py``), as the
    product reads it, and nothing else: seconds and CPU seconds of frames 1.."""
    from emotion_estimator.blendshapes import FaceLandmarker

    with FaceLandmarker(mode="video", max_faces=faces) as landmarker:
        for i, bgr in enumerate(frames):
            if i == 1:
                t0, c0 = time.perf_counter(), benchlib.cpu_seconds()
            landmarker.detect(bgr, i / 30)
        return time.perf_counter() - t0, benchlib.cpu_seconds() - c0


def product(estimator, frames: list[np.ndarray], out: Path) -> tuple[float, float]:
    """``estimator.stream`` + CSV rows: seconds and CPU seconds of frames 1.."""
    from emotion_estimator.outputs import open_writer

    gate = threading.Event()
    writer = open_writer(str(out), "csv", estimator.columns())
    try:
        for result in estimator.stream(GatedSource(frames, gate)):
            for row in result.rows():
                writer.write(row)
            if result.frame == 0:
                t0, c0 = time.perf_counter(), benchlib.cpu_seconds()
                gate.set()
    finally:
        writer.close()
    return time.perf_counter() - t0, benchlib.cpu_seconds() - c0


def growth(model: str | None, rounds: int, limit: int | None = None) -> list[dict]:
    from emotion_estimator import EmotionEstimator

    clip = read_frames(CLIP)[:limit]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.csv"
        for name, size, faces in CASES:
            frames = case_frames(clip, size, faces)
            full = EmotionEstimator(model, max_faces=faces)
            low = EmotionEstimator(model, max_faces=faces, low_power=True)
            runs: dict[str, Callable[[], tuple[float, float]]] = {
                "bare": lambda f=frames, n=faces: bare(f, n),
                "bare-c": lambda f=frames, n=faces: bare_c(f, n),
                "product": lambda f=frames, e=full: product(e, f, out),
                "low-power": lambda f=frames, e=low: product(e, f, out)}
            for run in runs.values():  # warm-up: lazy imports, file cache, ORT's first run
                run()
            wall: dict[str, list[float]] = {k: [] for k in runs}
            cpu: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(rounds):
                for key in rng.permutation(list(runs)):
                    seconds, cpu_s = runs[key]()
                    wall[key].append((len(frames) - 1) / seconds)
                    cpu[key].append(1000 * cpu_s / (len(frames) - 1))
            fps = {k: statistics.median(v) for k, v in wall.items()}
            ms = {k: statistics.median(v) for k, v in cpu.items()}
            row = {"case": name, "size": f"{size[0]}x{size[1]}", "faces": faces,
                   "frames": len(frames), "rounds": rounds, "fps": fps, "cpu_ms": ms,
                   "fps_all": wall, "cpu_ms_all": cpu,
                   "wall_ratio": fps["product"] / fps["bare"],
                   "cpu_ratio": ms["product"] / ms["bare"],
                   "cpu_ratio_c": ms["product"] / ms["bare-c"],
                   "wall_ratio_c": fps["product"] / fps["bare-c"],
                   "wall_ratio_low_power": fps["low-power"] / fps["bare"],
                   "cpu_ratio_low_power": ms["low-power"] / ms["bare"],
                   "cpu_ratio_per_round": [round(p / b, 3) for p, b in
                                           zip(cpu["product"], cpu["bare"], strict=True)]}
            rows.append(row)
            print(f"{name:14s} fps bare {fps['bare']:.1f} bare-c {fps['bare-c']:.1f} product "
                  f"{fps['product']:.1f} low-power {fps['low-power']:.1f} | CPU ms/frame "
                  f"{' / '.join(f'{ms[k]:.2f}' for k in SIDES)} | product/bare wall "
                  f"{row['wall_ratio']:.3f} CPU {row['cpu_ratio']:.3f}; product/bare-c CPU "
                  f"{row['cpu_ratio_c']:.3f}", file=sys.stderr)
    return rows


def profile(model: str | None, faces: int = 1, repeats: int = 3) -> dict:
    """CPU ms per frame of each stage, one thread (ONNX Runtime and OpenCV): one face from
    ``single_face.mp4`` decoded from the file, or four faces in its 720p 2x2 tiles from
    memory (no decode)."""
    import emotion_estimator.features as features
    from emotion_estimator import EmotionEstimator
    from emotion_estimator.outputs import open_writer

    tiles = case_frames(read_frames(CLIP), (1280, 720), 4) if faces == 4 else None
    est = EmotionEstimator(model, max_faces=faces)
    clf = est.classifier
    spent = dict.fromkeys(("decode", "landmarker", "features", "graph", "filter", "writer"), 0.0)
    build, session, cv_threads = features.build, clf._session, cv2.getNumThreads()

    def timed_build(*args, **kwargs):
        t = time.thread_time()
        try:
            return build(*args, **kwargs)
        finally:
            spent["features"] += time.thread_time() - t

    class TimedSession:  # the graph alone: ONNX Runtime's run (one intra-op thread)
        def run(self, *args, **kwargs):
            t = time.thread_time()
            try:
                return session.run(*args, **kwargs)
            finally:
                spent["graph"] += time.thread_time() - t

        def __getattr__(self, name):
            return getattr(session, name)

    def images() -> Iterator[np.ndarray]:
        if tiles is not None:
            yield from tiles
            return
        cap = cv2.VideoCapture(str(CLIP))
        while True:
            c = benchlib.cpu_seconds()
            ok, image = cap.read()
            spent["decode"] += benchlib.cpu_seconds() - c
            if not ok:
                break
            yield image
        cap.release()

    features.build, clf._session = timed_build, TimedSession()
    cv2.setNumThreads(1)
    frames = seen = 0
    try:
        with tempfile.TemporaryDirectory() as tmp, est.landmarker("video") as landmarker:
            writer = open_writer(str(Path(tmp) / "rows.csv"), "csv", est.columns())
            for rep in range(repeats + 1):  # the first pass warms up and is not counted
                if rep == 1:
                    spent = dict.fromkeys(spent, 0.0)
                    frames = seen = 0
                analyze = est.analyzer()
                for index, image in enumerate(images()):
                    ts = rep * 100 + index / 30
                    c = benchlib.cpu_seconds()
                    found = landmarker.detect(image, ts)
                    spent["landmarker"] += benchlib.cpu_seconds() - c
                    before = spent["features"] + spent["graph"]
                    t = time.thread_time()
                    result = analyze(Frame(index, ts, image), found)
                    spent["filter"] += time.thread_time() - t - (
                        spent["features"] + spent["graph"] - before)
                    t = time.thread_time()
                    for row in result.rows():
                        writer.write(row)
                    spent["writer"] += time.thread_time() - t
                    frames += 1
                    seen += len(found)
            writer.close()
    finally:
        features.build, clf._session = build, session
        cv2.setNumThreads(cv_threads)
    ms = {k: 1000 * v / frames for k, v in spent.items()}
    return {"input": CLIP.name if tiles is None else f"{CLIP.name}, 720p 2x2 tiles",
            "faces": faces, "frames": frames, "faces_seen": seen, "ms_per_frame": ms,
            "total_ms": sum(ms.values()),
            "step_ms_per_face": (ms["features"] + ms["graph"]) * frames / max(seen, 1)}


def write_report(report: dict, out: Path) -> None:
    text = ["# Growth with resolution and faces; where a frame's CPU goes\n\n",
            f"Generated {report['created']} by `{report['command']}` on {report['machine']}.\n"]
    if "growth" in report:
        rows = [[r["case"], r["size"], r["faces"],
                 *(f"{r['fps'][k]:.1f}" for k in SIDES),
                 f"{r['wall_ratio']:.3f}", f"{r['wall_ratio_low_power']:.3f}",
                 *(f"{r['cpu_ms'][k]:.2f}" for k in SIDES),
                 f"{r['cpu_ratio']:.3f}", f"{r['cpu_ratio_c']:.3f}",
                 f"{r['cpu_ratio_low_power']:.3f}"]
                for r in report["growth"]]
        text += ["\n## Product vs bare MediaPipe, frames decoded beforehand\n\n",
                 markdown_table(["case", "size", "faces", "fps bare", "fps bare-c",
                                 "fps product", "fps low-power", "wall product/bare",
                                 "wall low-power/bare", "CPU ms bare", "CPU ms bare-c",
                                 "CPU ms product", "CPU ms low-power", "CPU product/bare",
                                 "CPU product/bare-c", "CPU low-power/bare"], rows,
                                align="llrrrrrrrrrrrrrr"),
                 f"\nMedians of {report['growth'][0]['rounds']} rounds in shuffled order; "
                 "wall ratio = product fps / bare fps (>= 1 is as fast as MediaPipe alone), "
                 "CPU ratio = product CPU ms per frame / bare (user + system, all threads); "
                 "bare-c = MediaPipe with its C result read directly as the product reads it "
                 "(no Python object per landmark), so product/bare-c is what the classifier, "
                 "filter, overlap and writer add. "
                 "Per-round CPU ratios: " + "; ".join(
                     f"{r['case']}: {r['cpu_ratio_per_round']}" for r in report["growth"])
                 + "\n"]
    if "profile" in report:
        profiles = report["profile"]
        stages = list(profiles[0]["ms_per_frame"])
        rows = [[k, *(f"{p['ms_per_frame'][k]:.3f} ({p['ms_per_frame'][k] / p['total_ms']:.1%})"
                      for p in profiles)] for k in stages]
        rows.append(["total", *(f"{p['total_ms']:.3f}" for p in profiles)])
        rows.append(["classifier step per face (features + graph)",
                     *(f"{p['step_ms_per_face']:.3f}" for p in profiles)])
        text += ["\n## Per-frame CPU by stage, one thread (CPU ms per frame, share)\n\n",
                 markdown_table(["stage", *(f"{p['faces']} face(s): {p['input']}, "
                                            f"{p['frames']} frames" for p in profiles)],
                                rows, align="l" + "r" * len(profiles)),
                 "\nOne thread: ONNX Runtime with one intra-op thread, OpenCV limited to one; "
                 "landmarker = MediaPipe's CPU in all its threads, result read from its C "
                 "structs; filter = the rest of the per-frame step (tracking, operating point, "
                 "temporal filters, result objects); writer = rows + CSV. The tiles come from "
                 "memory, so they have no decode.\n"]
    benchlib.write_atomic(out / "growth.md", "".join(text))
    benchlib.write_json(out / "growth.json", report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="classifier: a shipped name or an .onnx file (default: the "
                                   "shipped default)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per case (default 5)")
    p.add_argument("--parts", default="growth,profile", help="growth, profile or both")
    p.add_argument("--cores", help="pin this process to these CPUs first, e.g. 0 or 0,1")
    p.add_argument("--frames", type=int, help="growth: the clip's first N frames (a quick check)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts or parts - {"growth", "profile"}:
        benchlib.fail(f"--parts: growth and/or profile, not {args.parts}")
    if args.rounds < 1 or (args.frames is not None and args.frames < 3):
        benchlib.fail("--rounds must be at least 1, --frames at least 3")
    if not CLIP.is_file():
        benchlib.fail(f"file not found: {CLIP}")
    if args.cores:
        try:
            os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
        except (ValueError, OSError) as exc:
            benchlib.fail(f"--cores {args.cores}: {exc}")
    quiet_native_logs()
    from emotion_estimator.classifier import EmotionClassifier

    EmotionClassifier.load(args.model)  # a bad --model fails now, in one line
    report: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "command": benchlib.command_line(), "machine": benchlib.machine(),
                    "model": args.model or "default"}
    print(report["machine"], file=sys.stderr)
    if "profile" in parts:
        report["profile"] = [profile(args.model, faces) for faces in (1, 4)]
        for prof in report["profile"]:
            print(f"profile, {prof['faces']} face(s), CPU ms/frame: " + ", ".join(
                f"{k} {v:.3f}" for k, v in prof["ms_per_frame"].items())
                + f"; step per face {prof['step_ms_per_face']:.3f}", file=sys.stderr)
    if "growth" in parts:
        report["growth"] = growth(args.model, args.rounds, args.frames)
    suffix = "" if not args.cores else f".cores-{args.cores.replace(',', '-')}"
    out = args.out if not suffix else args.out / f"growth{suffix}"
    write_report(report, out)
    print((out / "growth.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
