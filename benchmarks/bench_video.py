"""The live path on video: throughput vs bare MediaPipe, label flicker, and filter lag.

    .venv/bin/python benchmarks/bench_video.py [--model fusion|blendshapes|lstm|M.onnx] \
        [--rounds 5] [--parts lag,flicker,speed,memory] [--memory-frames 5000]

1. Speed: ``emotion-estimator analyze`` in process (decode thread, landmarker, classifier,
   filter, CSV writer), the same with ``--annotate``, a bare MediaPipe VIDEO-mode loop (cv2
   decode + detect_for_video, nothing else) and the landmarker alone on frames decoded
   beforehand, over the same clip, ``--rounds`` rounds in shuffled order so machine drift
   hits all four alike; ratios of the medians and of the best rounds (the least disturbed
   by other load on a shared machine).
2. Flicker: label switches per minute of face time on the shared clips, per smoothing; the
   clips are clean (the raw labels barely flicker), so also on degraded copies of
   single_face.mp4: shrunk to x0.15 (face ~23 px wide) and to x0.2 plus sensor noise.
3. Memory: RSS of one ``EmotionEstimator.stream`` over a long stream (``--memory-frames``,
   default 5000: single_face.mp4's frames, decoded once and looped, at 30 fps), sampled every
   100 frames; start (after the first 100 frames), middle and end, and the growth. Frames and
   results are not kept, so a growth is the estimator's (tracker, filters, MediaPipe, ORT).
4. Lag: a clip spliced from real frames with a known expression change at each splice. The
   shared clips show one man, first neutral (frames 0-17), then smiling (20-68; mouthSmile
   > 0.6), in the same place. The spliced clip alternates a neutral segment (frames 0..17 then
   17..0, 1.2 s) and a smiling one (20..68, forwards or backwards, 1.6 s) at 30 fps: 6
   changes, each between two frames, the face staying where it is (same id, same filter).
   Lag = time from the splice to the first frame from which the label stays right about
   "happy or not" (smiling segment: happy; neutral segment: sad or unknown) to the end of
   the segment; the unfiltered labels are measured the same way. Measured on the spliced
   clip as is and degraded (x0.2 + noise).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    MEDIA,
    RUNS,
    cpu_seconds,
    guarded,
    machine,
    markdown_table,
    rss_mb,
    write_json,
)

from emotion_estimator.classifier import DEFAULT_MODEL, EmotionClassifier  # noqa: E402
from emotion_estimator.cli import quiet_native_logs  # noqa: E402
from emotion_estimator.video import Frame, FrameSource  # noqa: E402

SMOOTHINGS = ("none", "ema", "hmm")


def bare_loop(video: Path, model: str) -> int:
    """Plain MediaPipe Tasks VIDEO-mode loop: decode, convert, detect. Returns frames."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model),
        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
    cap = cv2.VideoCapture(str(video))
    n = 0
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                        int(cap.get(cv2.CAP_PROP_POS_MSEC)) + n)
            n += 1
    cap.release()
    return n


def bare_decoded(frames: list[np.ndarray], model: str, fps: float = 30.0) -> int:
    """The landmarker alone on frames decoded beforehand (the strictest baseline)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model),
        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for i, bgr in enumerate(frames):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                        int(i * 1000 / fps))
    return len(frames)


def analyze(video: Path, out: Path, model: str | None, *extra: str) -> None:
    """The product's command, in process (no interpreter start-up in the timing)."""
    from emotion_estimator.cli import cli

    args = ["analyze", str(video), "-o", str(out), "--no-progress", *extra]
    with contextlib.redirect_stderr(io.StringIO()) as err:  # the per-run summary
        code = cli(args + (["--model", model] if model else []))
    if code != 0:
        raise SystemExit(f"analyze failed: {args}: {err.getvalue()}")


def speed(videos: list[Path], model: str | None, rounds: int) -> list[dict]:
    from emotion_estimator.assets import landmarker_path

    task = str(landmarker_path())
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out, ann = Path(tmp) / "rows.csv", Path(tmp) / "ann.mp4"
        for video in videos:
            n = bare_loop(video, task)
            frames = read_frames(video)
            analyze(video, out, model)  # warm-up: file cache, lazy imports
            runs = {"bare": lambda v=video: bare_loop(v, task),
                    "bare_decoded": lambda f=frames: bare_decoded(f, task),
                    "analyze": lambda v=video: analyze(v, out, model),
                    "annotate": lambda v=video: analyze(v, out, model, "--annotate", str(ann))}
            fps: dict[str, list[float]] = {k: [] for k in runs}
            cpu: dict[str, list[float]] = {k: [] for k in runs}  # ms per frame, all threads
            for _ in range(rounds):
                for key in rng.permutation(list(runs)):  # no order bias
                    t, c = time.perf_counter(), cpu_seconds()
                    runs[key]()
                    fps[key].append(n / (time.perf_counter() - t))
                    cpu[key].append(1000 * (cpu_seconds() - c) / n)
            med = {k: statistics.median(v) for k, v in fps.items()}
            cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
            best = {k: max(v) for k, v in fps.items()}
            h, w = frames[0].shape[:2]
            results.append({"video": video.name, "size": f"{w}x{h}", "frames": n,
                            "rounds": rounds, "fps": fps, "median_fps": med, "best_fps": best,
                            "cpu_ms": cpu, "median_cpu_ms": cpu_med,
                            "cpu_ratio_analyze": cpu_med["analyze"] / cpu_med["bare"],
                            "cpu_ratio_annotate": cpu_med["annotate"] / cpu_med["bare"],
                            "ratio_analyze": med["analyze"] / med["bare"],
                            "ratio_analyze_best": best["analyze"] / best["bare"],
                            "ratio_analyze_vs_decoded": med["analyze"] / med["bare_decoded"],
                            "ratio_annotate": med["annotate"] / med["bare"]})
    return results


class ListSource(FrameSource):
    """Frames from memory at a fixed rate."""

    def __init__(self, images: list[np.ndarray], fps: float = 30.0) -> None:
        super().__init__()
        self.images, self.fps, self.frame_count, self.name = images, fps, len(images), "memory"

    def __iter__(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            yield Frame(i, i / self.fps, image)


def read_frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    return frames


def label_runs(results: list) -> dict[int, list[tuple[float, str]]]:
    """Per face id: (time, label) of every frame it is seen in."""
    runs: dict[int, list[tuple[float, str]]] = {}
    for r in results:
        for f in r.faces:
            runs.setdefault(f.face_id, []).append((r.timestamp_s, f.label))
    return runs


def degraded(frames: list[np.ndarray], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Harder views of the same frames: the face far from the camera (x0.15: ~23 px wide)
    and small plus sensor noise (x0.2, Gaussian sigma 15, seeded)."""
    rng = np.random.default_rng(seed)

    def shrink(f: np.ndarray, s: float) -> np.ndarray:
        return cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)

    def noisy(f: np.ndarray) -> np.ndarray:
        return np.clip(shrink(f, 0.2) + rng.normal(0, 15, shrink(f, 0.2).shape), 0, 255
                       ).astype(np.uint8)

    return {"x0.15": [shrink(f, 0.15) for f in frames], "x0.2+noise": [noisy(f) for f in frames]}


def flicker(videos: list[Path], model: str | None) -> list[dict]:
    """Label switches per minute of face time, per clip (as is, and degraded) and smoothing."""
    from emotion_estimator import EmotionEstimator

    inputs: list[tuple[str, Path | list[np.ndarray]]] = [(v.name, v) for v in videos]
    inputs += [(f"{videos[0].name} {k}", v)
               for k, v in degraded(read_frames(videos[0])).items()]
    rows = []
    for name, video in inputs:
        for smoothing in SMOOTHINGS:
            est = EmotionEstimator(model, smoothing=smoothing)
            source = ListSource(video) if isinstance(video, list) else video
            results = list(est.stream(source))
            switches = face_s = 0.0
            labels: list[str] = []
            for seq in label_runs(results).values():
                switches += sum(a[1] != b[1] for a, b in zip(seq, seq[1:], strict=False))
                face_s += (seq[-1][0] - seq[0][0]) + 1 / 30
                labels += [lab for _, lab in seq]
            counts = {lab: labels.count(lab) for lab in sorted(set(labels))}
            rows.append({"video": name, "smoothing": smoothing, "switches": int(switches),
                         "face_seconds": round(face_s, 2),
                         "switches_per_min": switches / face_s * 60 if face_s else 0.0,
                         "labels": counts})
    return rows


def memory(model: str | None, n_frames: int, every: int = 100) -> dict:
    """RSS (MiB) every ``every`` frames of one stream of ``n_frames`` looped frames."""
    import gc

    from emotion_estimator import EmotionEstimator

    clip = read_frames(MEDIA / "single_face.mp4")
    images = [clip[i % len(clip)] for i in range(n_frames)]  # references: no copies
    est = EmotionEstimator(model)
    samples, faces = [], 0
    gc.collect()
    before = rss_mb()
    for result in est.stream(ListSource(images)):
        faces += len(result.faces)
        if (result.frame + 1) % every == 0:
            samples.append((result.frame + 1, round(rss_mb(), 1)))
    start, middle, end = samples[0][1], samples[len(samples) // 2][1], samples[-1][1]
    return {"frames": n_frames, "frames_with_face": faces, "rss_mb_before": round(before, 1),
            "rss_mb_start": start, "rss_mb_middle": middle, "rss_mb_end": end,
            "rss_mb_max": max(m for _, m in samples), "growth_mb": round(end - start, 1),
            "growth_second_half_mb": round(end - middle, 1), "samples": samples}


def spliced_clip() -> tuple[list[np.ndarray], list[int], list[bool]]:
    """Frames alternating neutral and smiling segments, the index of each splice, and
    whether each segment smiles."""
    frames = read_frames(MEDIA / "single_face.mp4")
    neutral = frames[0:18] + frames[17::-1]
    smile = frames[20:69]
    segments = [neutral, smile, neutral, smile[::-1], neutral, smile, neutral]
    images, splices = [], []
    for seg in segments:
        if images:
            splices.append(len(images))
        images += seg
    return images, splices, [seg is not neutral for seg in segments]


def lag(model: str | None, fps: float = 30.0) -> dict:
    """Lag per real change on the spliced clip, as is and degraded (x0.2 + noise)."""
    images, splices, smiling = spliced_clip()
    small = degraded(images)["x0.2+noise"]
    return {"frames": len(images), "fps": fps, "splices": splices, "smiling": smiling,
            "clips": {"as is": splice_lag(images, splices, smiling, model, fps),
                      "x0.2+noise": splice_lag(small, splices, smiling, model, fps)}}


def splice_lag(images: list[np.ndarray], splices: list[int], smiling: list[bool],
               model: str | None, fps: float) -> dict:
    """Per smoothing: ms from each splice until "happy or not" matches the segment (a smile
    or a neutral face) for the rest of it; ``None`` if it never does."""
    from emotion_estimator import EmotionEstimator

    bounds = [0, *splices, len(images)]
    out: dict = {"per_smoothing": {}}
    for smoothing in SMOOTHINGS:
        est = EmotionEstimator(model, smoothing=smoothing)
        results = list(est.stream(ListSource(images, fps)))
        labels = [r.faces[0].label if r.faces else None for r in results]
        lags = []
        for i, s in enumerate(splices):
            end, happy = bounds[i + 2], smiling[i + 1]
            wrong = [k for k in range(s, end) if (labels[k] == "happy") != happy]
            settle = (wrong[-1] + 1) if wrong else s
            lags.append(None if settle >= end else (settle - s) / fps * 1000)
        counts = {lab: labels.count(lab) for lab in sorted(set(labels), key=str)}
        out["per_smoothing"][smoothing] = {
            "lag_ms": lags, "face_ids": sorted({f.face_id for r in results for f in r.faces}),
            "switches": sum(a != b for a, b in zip(labels, labels[1:], strict=False)),
            "labels": counts}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="classifier: a shipped name (fusion, blendshapes, lstm) "
                                    "or an .onnx file (default: the shipped default)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--parts", default="lag,flicker,speed,memory",
                    help="comma-separated subset of lag, flicker, speed, memory")
    ap.add_argument("--memory-frames", type=int, default=5000,
                    help="length of the long stream of the memory part")
    ap.add_argument("--out", type=Path, default=RUNS / "video.json")
    args = ap.parse_args()
    quiet_native_logs()
    videos = [MEDIA / "single_face.mp4", MEDIA / "face_noface.mov"]
    report: dict = {"model": args.model or DEFAULT_MODEL, "machine": machine()}
    print(f"machine: {report['machine']}")

    parts = set(args.parts.split(","))
    unknown = parts - {"lag", "flicker", "speed", "memory"}
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if args.memory_frames < 200:
        ap.error("--memory-frames must be at least 200")
    EmotionClassifier.load(args.model)  # a bad --model fails now, in one line
    lag_report: dict = {"clips": {}}
    if "lag" in parts:
        report["lag"] = lag_report = lag(args.model)
    for clip, res in lag_report["clips"].items():
        print(f"lag: spliced clip ({clip}), {lag_report['frames']} frames at 30 fps, 6 changes "
              "neutral <-> smile")
        print(markdown_table(
            ["smoothing", "lag per change (ms)", "median ms", "max ms", "switches", "face ids",
             "labels"],
            [[k, ", ".join("never" if v is None else f"{v:.0f}" for v in d["lag_ms"]),
              float(np.median([v for v in d["lag_ms"] if v is not None] or [np.nan])),
              max((v for v in d["lag_ms"] if v is not None), default=None),
              d["switches"], str(d["face_ids"]), str(d["labels"])]
             for k, d in res["per_smoothing"].items()]))

    if "flicker" in parts:
        report["flicker"] = rows = flicker(videos, args.model)
        print(markdown_table(["video", "smoothing", "switches", "face s", "switches/min",
                              "labels"],
                             [[r["video"], r["smoothing"], r["switches"], r["face_seconds"],
                               r["switches_per_min"], str(r["labels"])] for r in rows]))

    if "speed" in parts:
        report["speed"] = timings = speed(videos, args.model, args.rounds)
        print("fps: median of the rounds (best round in brackets)")
        print(markdown_table(
            ["video", "size", "frames", "bare", "bare, pre-decoded", "analyze", "ratio",
             "ratio (best)", "ratio vs pre-decoded", "annotate", "ratio"],
            [[r["video"], r["size"], r["frames"],
              *(f"{r['median_fps'][k]:.1f} ({r['best_fps'][k]:.1f})"
                for k in ("bare", "bare_decoded", "analyze")),
              r["ratio_analyze"], r["ratio_analyze_best"], r["ratio_analyze_vs_decoded"],
              f"{r['median_fps']['annotate']:.1f} ({r['best_fps']['annotate']:.1f})",
              r["ratio_annotate"]]
             for r in timings], align="lrrrrrrrrrr"))
        print("CPU ms per frame (user + system, all threads), median of the rounds")
        print(markdown_table(
            ["video", "bare", "bare, pre-decoded", "analyze", "CPU ratio", "annotate",
             "CPU ratio"],
            [[r["video"], *(f"{r['median_cpu_ms'][k]:.2f}"
                            for k in ("bare", "bare_decoded", "analyze")),
              r["cpu_ratio_analyze"], f"{r['median_cpu_ms']['annotate']:.2f}",
              r["cpu_ratio_annotate"]] for r in timings], align="lrrrrrr"))

    if "memory" in parts:
        report["memory"] = mem = memory(args.model, args.memory_frames)
        print(f"memory: one stream of {mem['frames']} frames (single_face.mp4 looped, "
              f"{mem['frames_with_face']} faces): RSS MiB before {mem['rss_mb_before']}, after "
              f"100 frames {mem['rss_mb_start']}, middle {mem['rss_mb_middle']}, end "
              f"{mem['rss_mb_end']} (max {mem['rss_mb_max']}); growth {mem['growth_mb']:+.1f} "
              f"MiB, second half {mem['growth_second_half_mb']:+.1f} MiB")
    write_json(args.out, report)
    print(f"-> {args.out}")


if __name__ == "__main__":
    guarded(main)
