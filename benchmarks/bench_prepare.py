"""Extraction throughput of `prepare` with N workers vs a bare single-process MediaPipe loop.

    .venv/bin/python benchmarks/bench_prepare.py [--images 512] [--workers 1,2] [--rounds 2]

Both sides see the same FER2013 images (the first ``--images`` rows, preprocessed the same way,
no augmentation) in the same process run, alternating ``--rounds`` times so machine drift hits
both. The bare loop is MediaPipe Tasks IMAGE mode and nothing else; ``prepare``'s side is
:func:`emotion_estimator.training.extract.extract` end to end: spawning the workers (each
loading its own landmarker), chunking, writing Parquet shards and reading them back. The
headline is images/s and the ratio to the bare loop (with 2 workers on 2 free cores it should
approach 2). On a shared machine wall time depends on the neighbours, so CPU ms per image is
printed too (this process plus its reaped worker processes): the ratio it allows,
``workers x bare CPU / ours CPU``, is what the same code reaches on idle cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"


def _cpu() -> float:
    """CPU seconds of this process and of its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bare_loop(images: np.ndarray, model: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one landmarker (IMAGE mode) over the images, nothing kept."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model), running_mode=vision.RunningMode.IMAGE,
        num_faces=1, output_face_blendshapes=True)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        start, cpu = time.perf_counter(), _cpu()
        for image in images:
            rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
            landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        return time.perf_counter() - start, _cpu() - cpu


def ours(images: np.ndarray, variant, model: str, workers: int,
         chunk_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds of extract() with ``workers`` processes, pool start to table."""
    from emotion_estimator.training.extract import ExtractConfig, extract, make_chunks

    ids = np.arange(len(images), dtype=np.int64)
    chunks = make_chunks(ids, np.zeros(len(images), dtype=np.int64), images, chunk_size)
    config = ExtractConfig(variants=(variant,), model_path=model)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), _cpu()
        table = extract(chunks, config, Path(tmp), workers=workers)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    assert len(table) == len(images)
    return seconds, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer2013", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--preprocess", default="raw", choices=["raw", "upscale", "pad"])
    args = parser.parse_args()

    from emotion_estimator.assets import landmarker_path
    from emotion_estimator.training.augment import Preprocess
    from emotion_estimator.training.fer2013 import load

    if not args.fer2013.is_file():
        print(f"FER2013 not found at {args.fer2013}", file=sys.stderr)
        return 2
    model = str(landmarker_path())
    variant = Preprocess(args.preprocess)
    raw = load(args.fer2013, limit=args.images).pixels
    shown = np.stack([variant(img) for img in raw])  # what the bare loop sees
    workers = [int(w) for w in args.workers.split(",")]
    load_before = os.getloadavg()[0]
    times: dict[str, list[tuple[float, float]]] = {"bare": []} | {f"workers={w}": []
                                                                   for w in workers}
    for r in range(args.rounds):
        times["bare"].append(bare_loop(shown, model))
        for w in workers:
            times[f"workers={w}"].append(ours(raw, variant, model, w, args.chunk_size))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v[-1][0]:.1f}s" for k, v in times.items()), file=sys.stderr)
    n = len(raw)
    wall = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) / n * 1000 for k, v in times.items()}
    print(f"{len(raw)} images, preprocess={args.preprocess}, median of {args.rounds} rounds; "
          f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other processes share the cores)")
    print(f"{'run':<12} {'seconds':>8} {'img/s':>8} {'vs bare':>8} {'CPU ms/img':>11} "
          f"{'idle-core bound':>16}")
    for name in times:
        w = 1 if name == "bare" else int(name.split("=")[1])
        print(f"{name:<12} {wall[name]:8.2f} {n / wall[name]:8.1f} "
              f"{wall['bare'] / wall[name]:8.2f} {cpu[name]:11.2f} "
              f"{w * cpu['bare'] / cpu[name]:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
