"""Throughput of `emotion-estimator blendshapes` vs a bare MediaPipe VIDEO loop, and memory.

    .venv/bin/python benchmarks/bench_blendshapes.py [--video ../shared/media/single_face.mp4]

1. Speed: the CLI's frame loop (decode thread, landmarker, rows, CSV writer) and a bare loop
   (cv2 decode + FaceLandmarker.detect_for_video, nothing written) over the same clip, run
   alternately ``--rounds`` times in this process so machine drift hits both; the ratio of the
   medians is the headline (target >= 0.9).
2. Memory: the CLI in a subprocess on the clip and on the clip looped ``--loops`` times; peak
   RSS must not grow with length.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_video import bare_loop  # noqa: E402 - the same bare MediaPipe loop as bench_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "media" / "single_face.mp4"


def cli_loop(video: Path, out: Path) -> int:
    """The product's command, in process (no subprocess start-up in the timing)."""
    from emotion_estimator.cli import cli

    code = cli(["blendshapes", str(video), "-o", str(out), "--no-progress"])
    if code != 0:
        raise SystemExit(f"blendshapes failed with exit code {code}")
    return sum(1 for _ in open(out)) - 1


def loop_video(video: Path, times: int, dest: Path) -> int:
    """Write ``video`` repeated ``times`` times (MJPG AVI); returns the frame count."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"),
                             cap.get(cv2.CAP_PROP_FPS) or 30.0, (w, h))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return len(frames) * times


def peak_rss_mb(video: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of the CLI in a fresh process."""
    code = (
        "import resource, sys, time; from emotion_estimator.cli import cli; t=time.perf_counter();"
        f"c=cli(['blendshapes', {str(video)!r}, '-o', {str(out)!r}, '--no-progress']);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter()-t);"
        "sys.exit(c)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    rss, wall = proc.stdout.split()
    return float(rss), float(wall)


def main() -> None:
    from emotion_estimator.assets import landmarker_path
    from emotion_estimator.cli import quiet_native_logs

    quiet_native_logs()

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--loops", type=int, default=10)
    args = ap.parse_args()
    model = str(landmarker_path())
    bare_fps, cli_fps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.csv"
        cli_loop(args.video, out)  # warm-up: file cache, lazy imports
        for _ in range(args.rounds):
            t = time.perf_counter()
            n = bare_loop(args.video, model)
            bare_fps.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            n = cli_loop(args.video, out)
            cli_fps.append(n / (time.perf_counter() - t))
        bare, ours = statistics.median(bare_fps), statistics.median(cli_fps)
        print(f"video: {args.video.name}, {n} frames, {args.rounds} alternating rounds")
        print(f"bare MediaPipe VIDEO loop : {bare:6.1f} fps (median)")
        print(f"emotion-estimator blendshapes: {ours:6.1f} fps (median)")
        print(f"ratio: {ours / bare:.3f}")

        long_video = Path(tmp) / "long.avi"
        short_video = Path(tmp) / "short.avi"
        n_short = loop_video(args.video, 1, short_video)
        n_long = loop_video(args.video, args.loops, long_video)
        rss_short, wall_short = peak_rss_mb(short_video, out)
        rss_long, wall_long = peak_rss_mb(long_video, out)
        print(f"peak RSS: {rss_short:.0f} MB for {n_short} frames ({wall_short:.1f} s), "
              f"{rss_long:.0f} MB for {n_long} frames ({wall_long:.1f} s); "
              f"growth {rss_long - rss_short:+.0f} MB")
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB")


if __name__ == "__main__":
    main()
