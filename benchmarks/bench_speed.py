"""Speed and footprint: emotion-estimator vs ``fer`` on the shared clips, and classifier latency.

Video: each run is a fresh subprocess (the two tools live in different venvs); per clip the
runs alternate ours, fer, fer, ours, ... (the pair's order flips every rep) so machine drift
hits both alike. A run loads its models, warms up once, then times the whole clip end to end
(decode, face detection, classification, per-frame results); the headline is the ratio of
median frames per second. Classifier latency: one face, batch 1, one thread, after warm-up.

    .venv/bin/python benchmarks/bench_speed.py                 # results/speed.{md,json,png}
    .venv/bin/python benchmarks/bench_speed.py --reps 5 --clips /work/shared/media/single_face.mp4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import RESULTS  # noqa: E402

FER_PYTHON = benchlib.REPO / "benchmarks" / ".venv-fer" / "bin" / "python"
FER_RUNNER = benchlib.REPO / "benchmarks" / "peers" / "fer_runner.py"
CLIPS = [benchlib.MEDIA / "single_face.mp4", benchlib.MEDIA / "face_noface.mov"]


# ----------------------------------------------------------------------------- ours, in a child
def ours_video(clip: str, model: str | None) -> dict:
    """One timed pass of ``EmotionEstimator.analyze_video`` (run in a fresh process)."""
    import numpy as np

    from emotion_estimator import EmotionEstimator

    t0 = time.perf_counter()
    est = EmotionEstimator(model)
    est.analyze_image(np.zeros((64, 64, 3), np.uint8))  # warm-up: graph + ONNX session
    load_s = time.perf_counter() - t0
    start, cpu0 = time.perf_counter(), benchlib.cpu_seconds()
    table = est.analyze_video(clip)
    loop_s, cpu_s = time.perf_counter() - start, benchlib.cpu_seconds() - cpu0
    frames = int(table["frame"].nunique())
    with_face = int(table.loc[table["face_detected"], "frame"].nunique())
    return {"tool": "emotion-estimator", "clip": clip, "frames": frames,
            "frames_with_face": with_face, "load_s": load_s, "loop_s": loop_s,
            "fps": frames / loop_s, "cpu_ms_per_frame": 1000 * cpu_s / frames,
            "peak_rss_mb": benchlib.peak_rss_mb()}


# ----------------------------------------------------------------------------- orchestration
def run_json(cmd: list[str]) -> dict:
    """Run a child that prints one JSON object on its last stdout line."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        benchlib.fail(f"{Path(cmd[1]).name} {cmd[2]} failed: {benchlib.last_line(done.stderr)}", 1)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours_cmd(clip: Path, model: str | None) -> list[str]:
    cmd = [sys.executable, __file__, "--child-video", str(clip)]
    return cmd + (["--model", model] if model else [])


def fer_cmd(*args: str) -> list[str]:
    if not FER_PYTHON.is_file():
        benchlib.fail("peer venv missing: run benchmarks/peers/setup_fer.sh first")
    return [str(FER_PYTHON), str(FER_RUNNER), *args]


def video_runs(clips: list[Path], reps: int, model: str | None, fer_mode: str) -> list[dict]:
    runs = []
    for rep in range(reps):
        for clip in clips:
            pair = [("ours", ours_cmd(clip, model)),
                    ("fer", fer_cmd("video", str(clip), "--mode", fer_mode))]
            for tool, cmd in pair if rep % 2 == 0 else pair[::-1]:  # ABBA: no order bias
                result = run_json(cmd) | {"rep": rep}
                runs.append(result)
                print(f"rep {rep} {tool:4s} {clip.name:18s} {result['fps']:7.2f} fps  "
                      f"{result['cpu_ms_per_frame']:6.1f} CPU ms/frame  "
                      f"rss {result['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    return runs


def ours_latency(model: str | None, calls: int, warmup: int) -> dict:
    """ONNX graph alone (ORT, 1 thread) and ``EmotionClassifier.predict_proba`` on one face."""
    import onnxruntime as ort

    from emotion_estimator import EmotionClassifier

    clf = EmotionClassifier.load(model, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(clf.path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    x52 = rng.uniform(0, 1, size=(calls + warmup, 1, 52)).astype(np.float32)
    xk = np.ascontiguousarray(x52[:, :, : len(clf.blendshapes)])
    out = {}
    for label, fn, data in (("onnx", lambda v: session.run(None, {name: v}), xk),
                            ("predict_proba", clf.predict_proba, x52)):
        times = []
        for i, v in enumerate(data):
            t = time.perf_counter()
            fn(v)
            if i >= warmup:
                times.append(time.perf_counter() - t)
        out[label] = benchlib.latency_stats(times)
    return out


def ours_info(model: str | None) -> dict:
    import onnx

    from emotion_estimator import EmotionClassifier
    from emotion_estimator.assets import landmarker_path

    clf = EmotionClassifier.load(model)
    graph = onnx.load(str(clf.path)).graph
    params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    return {"file_bytes": {clf.path.name: clf.path.stat().st_size,
                           "face_landmarker.task": landmarker_path().stat().st_size},
            "parameters": params, "inputs": len(clf.blendshapes), "trained": clf.trained,
            "model": str(clf.path), "kind": str(clf.metadata.get("model", {}).get("kind", "?")),
            "installed": benchlib.installed_mb("emotion-estimator")}


def summarise(runs: list[dict]) -> dict:
    """Median fps per (tool, clip), the ours / fer ratio, max peak RSS."""
    out: dict = {}
    for clip in dict.fromkeys(r["clip"] for r in runs):
        row: dict = {"clip": Path(clip).name}
        for tool in ("emotion-estimator", "fer"):
            mine = [r for r in runs if r["clip"] == clip and r["tool"] == tool]
            row[tool] = {"fps_median": float(np.median([r["fps"] for r in mine])),
                         "cpu_ms_per_frame_median": float(
                             np.median([r["cpu_ms_per_frame"] for r in mine])),
                         "fps_all": [round(r["fps"], 2) for r in mine],
                         "load_s_median": float(np.median([r["load_s"] for r in mine])),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                         "frames": mine[0]["frames"],
                         "frames_with_face": mine[0]["frames_with_face"]}
        pairs = [o["fps"] / f["fps"] for o, f in zip(
            [r for r in runs if r["clip"] == clip and r["tool"] == "emotion-estimator"],
            [r for r in runs if r["clip"] == clip and r["tool"] == "fer"], strict=True)]
        row["ratio_median_fps"] = row["emotion-estimator"]["fps_median"] / row["fer"]["fps_median"]
        row["ratio_per_pair"] = [round(p, 2) for p in pairs]
        row["ratio_cpu"] = (row["fer"]["cpu_ms_per_frame_median"]
                            / row["emotion-estimator"]["cpu_ms_per_frame_median"])
        out[row["clip"]] = row
    return out


def write_report(report: dict, out: Path) -> None:
    benchlib.write_json(out / "speed.json", report)
    ours, fer = report["info"]["ours"], report["info"]["fer"]
    video = report["video"]
    rows = []
    for clip, row in video.items():
        o, f = row["emotion-estimator"], row["fer"]
        rows.append([clip, f"{o['frames']}", f"{o['fps_median']:.1f}", f"{f['fps_median']:.1f}",
                     f"{row['ratio_median_fps']:.2f}x",
                     f"{o['cpu_ms_per_frame_median']:.1f} / {f['cpu_ms_per_frame_median']:.1f}",
                     f"{row['ratio_cpu']:.2f}x",
                     f"{o['frames_with_face']} / {f['frames_with_face']}",
                     f"{o['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f}",
                     f"{o['load_s_median']:.1f} / {f['load_s_median']:.1f}"])
    lat_o, lat_f = report["latency"]["ours"], report["latency"]["fer"]
    ours_model = Path(ours["model"]).name
    size_rows = [
        ["emotion-estimator", f"{ours_model} ({ours.get('kind', '?')})", f"{ours['parameters']:,}",
         f"{ours['file_bytes'][ours_model] / 1024:.0f} KiB",
         f"{ours['file_bytes']['face_landmarker.task'] / 1024:.0f} KiB (MediaPipe landmarker)",
         f"{lat_o['onnx']['median_ms']:.3f} (p90 {lat_o['onnx']['p90_ms']:.3f})"],
        ["fer (default)", "emotion_model_quantized.tflite", f"{fer['parameters']:,}",
         f"{fer['file_bytes']['emotion_model_quantized.tflite'] / 1024:.0f} KiB",
         f"{fer['file_bytes']['haarcascade_frontalface_default.xml'] / 1024:.0f} KiB (Haar)",
         f"{lat_f['tflite']['median_ms']:.3f} (p90 {lat_f['tflite']['p90_ms']:.3f})"],
        ["fer (Keras)", "emotion_model.hdf5", f"{fer['parameters']:,}",
         f"{fer['file_bytes']['emotion_model.hdf5'] / 1024:.0f} KiB",
         f"{fer['file_bytes']['haarcascade_frontalface_default.xml'] / 1024:.0f} KiB (Haar)",
         f"{lat_f['keras_eager']['median_ms']:.3f} eager, as fer calls it; "
         f"{lat_f['keras_graph']['median_ms']:.3f} as tf.function"],
    ]
    text = [
        "# Speed and footprint: emotion-estimator vs fer\n\n",
        f"Generated {report['created']} by `{report['command']}` on {report['machine']}. "
        f"{report['reps']} alternating runs per clip (ours, fer, fer, ours, ...), each a fresh "
        f"process; fer runs its fastest pipeline (`FER.detect_emotions` per frame, Haar cascade, "
        f"default TFLite model; mode `{report['fer_mode']}`).\n\n",
        "## Video, end to end (decode + face detection + classification)\n\n",
        benchlib.markdown_table(
            ["clip", "frames", "ours fps", "fer fps", "speed-up", "CPU ms / frame (ours / fer)",
             "CPU saving", "frames with a face (ours / fer)", "peak RSS MiB (ours / fer)",
             "load s (ours / fer)"], rows, align="lrrrrrrrrr"),
        "\nfps = frames / wall-clock seconds of the whole clip (medians); speed-up = ours fps / "
        "fer fps. CPU ms / frame = user + system CPU time of all the run's threads per frame, "
        "which a busy shared machine disturbs far less than wall time; CPU saving = fer's / "
        "ours.\n",
        "\nPer-pair ratios: " + "; ".join(
            f"{c}: {r['ratio_per_pair']}" for c, r in video.items()) + "\n\n",
        "## Classifier alone: one face, batch 1, 1 thread\n\n",
        benchlib.markdown_table(
            ["tool", "classifier", "parameters", "size", "face model", "latency ms median"],
            size_rows, align="llrrlr"),
        f"\n`EmotionClassifier.predict_proba` (column selection + standardisation + ONNX): "
        f"{lat_o['predict_proba']['median_ms']:.3f} ms median. fer's input is a 64x64 grey "
        f"crop, ours {ours['inputs']} blendshape scores (MediaPipe's landmarker, which yields "
        f"them, is in the video numbers).\n",
        "\n## Installed size (the package and its runtime dependencies, no extras)\n\n",
        benchlib.markdown_table(
            ["tool", "MiB on disk", "packages", "largest"],
            [[name, f"{i['total_mb']:.0f}", str(i["packages"]),
              ", ".join(f"{k} {v:.0f}" for k, v in i["largest"][:3])]
             for name, i in (("emotion-estimator", ours["installed"]),
                             ("fer (tensorflow-cpu)", fer["installed"]))], align="lrrl"),
    ]
    if not ours["trained"]:
        text.append("\n**Our model here is the untrained placeholder** (same graph and size as "
                    "a trained one, so the speed figures stand).\n")
    benchlib.write_atomic(out / "speed.md", "".join(text))
    plot_speed(report, out)


def plot_speed(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video = report["video"]
    fig, (a, c, b) = plt.subplots(1, 3, figsize=(14, 3.8))
    pos = np.arange(len(video))
    for ax, key, ylabel, title in (
            (a, "fps_median", "frames per second (median)", "video, end to end (higher is better)"),
            (c, "cpu_ms_per_frame_median", "CPU ms per frame (median)",
             "CPU time per frame (lower is better)")):
        for k, tool in enumerate(("emotion-estimator", "fer")):
            vals = [row[tool][key] for row in video.values()]
            bars = ax.bar(pos + (k - 0.5) * 0.38, vals, 0.38, label=tool)
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks(pos, list(video), fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    lat = report["latency"]
    names = ["ours ONNX", "fer TFLite (default)", "fer Keras tf.function", "fer Keras eager"]
    vals = [lat["ours"]["onnx"]["median_ms"], lat["fer"]["tflite"]["median_ms"],
            lat["fer"]["keras_graph"]["median_ms"], lat["fer"]["keras_eager"]["median_ms"]]
    bars = b.barh(names, vals, color=["C0", "C1", "C1", "C1"])
    b.bar_label(bars, fmt="%.3f ms", fontsize=8)
    b.set_xscale("log")
    b.set_xlim(min(vals) / 2, max(vals) * 20)  # room for the labels
    b.set_xlabel("ms per face, batch 1, 1 thread (log)")
    b.set_title("classifier alone", fontsize=9)
    b.invert_yaxis()
    fig.suptitle(f"{report['machine']}", fontsize=8)
    fig.tight_layout()
    benchlib.save_png(fig, out / "speed.png")


def machine() -> str:
    import os
    import platform

    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()}-core {cpu}, {platform.system()}, shared machine "
            f"(load average {load:.1f} at start)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child-video", help=argparse.SUPPRESS)  # one timed run of ours
    p.add_argument("--clips", nargs="*", type=Path, default=CLIPS, help="video files")
    p.add_argument("--reps", type=int, default=5, help="alternating runs per tool and clip")
    p.add_argument("--model", help="classifier .onnx (default: the shipped one)")
    p.add_argument("--fer-mode", choices=["loop", "video"], default="loop",
                   help="fer per-frame loop (fastest) or its fer.Video.analyze pipeline")
    p.add_argument("--calls", type=int, default=2000, help="latency calls per classifier")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = p.parse_args(argv)
    if args.child_video:
        print(json.dumps(ours_video(args.child_video, args.model)))
        return 0
    missing = [str(c) for c in args.clips if not c.is_file()]
    if missing:
        benchlib.fail(f"clip not found: {missing[0]}")
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": benchlib.command_line(), "machine": machine(), "reps": args.reps,
              "fer_mode": args.fer_mode}
    runs = video_runs(args.clips, args.reps, args.model, args.fer_mode)
    report["video"] = summarise(runs)
    report["runs"] = runs
    report["latency"] = {
        "ours": ours_latency(args.model, args.calls, 100),
        "fer": run_json(fer_cmd("latency", "--calls", str(args.calls), "--threads", "1")),
    }
    report["info"] = {"ours": ours_info(args.model), "fer": run_json(fer_cmd("info"))}
    write_report(report, args.out)
    print(json.dumps({c: round(r["ratio_median_fps"], 2) for c, r in report["video"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
