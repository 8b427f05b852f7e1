"""Speed and footprint: emotion-estimator vs ``fer`` on the shared clips, and classifier latency.

Video: each run is a fresh subprocess (the two tools live in different venvs); per clip the
runs alternate ours, fer, fer, ours, ... (the pair's order flips every rep) so machine drift
hits both alike. A run loads its models, warms up once, then times the whole clip end to end
(decode, face detection, classification, per-frame results), by default after one untimed pass
over the same clip (``--no-warm-pass``: the first pass is timed); the headline is the ratio of
median frames per second. The video runs use the first ``--model`` (default: the shipped
default).

Classifier latency, per model (``--model``: shipped names or .onnx files; default: every shipped
model): one real face (``single_face.jpg`` through MediaPipe's landmarker in image mode), batch
1, one thread (ONNX Runtime and OpenCV), after warm-up: the feature building alone
(``features.build`` for the model's inputs, and each input on its own), the ONNX graph alone
on exactly the arrays the classifier feeds it, and the whole per-face step
``EmotionClassifier.predict_faces(faces, image)``.

    .venv/bin/python benchmarks/bench_speed.py                 # results/speed.{md,json,png}
    .venv/bin/python benchmarks/bench_speed.py --reps 5 --clips /work/shared/media/single_face.mp4
    .venv/bin/python benchmarks/bench_speed.py --model fusion runs/x/model.onnx --reps 1
    FER_VENV=/opt/fer-venv .venv/bin/python benchmarks/bench_speed.py   # or --fer-venv DIR

The report names the CPU model, the cores this process may use and the load average, and
gives CPU time per frame (and its fer / ours ratio) beside frames per second.
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

FER_VENV = benchlib.REPO / "benchmarks" / ".venv-fer"  # unless --fer-venv / $FER_VENV
FER_RUNNER = benchlib.REPO / "benchmarks" / "peers" / "fer_runner.py"
CLIPS = [benchlib.MEDIA / "single_face.mp4", benchlib.MEDIA / "face_noface.mov"]
FACE_IMAGE = benchlib.MEDIA / "single_face.jpg"  # the face of the latency figures


# ----------------------------------------------------------------------------- ours, in a child
def ours_video(clip: str, model: str | None, warm_pass: bool = True) -> dict:
    """One timed pass of ``EmotionEstimator.analyze_video`` (run in a fresh process), after
    one untimed pass over the same clip when ``warm_pass``."""
    import numpy as np

    from emotion_estimator import EmotionEstimator

    t0 = time.perf_counter()
    est = EmotionEstimator(model)
    # warm-up: graph + ONNX session (on a face, so a model's face path runs once too)
    est.analyze_image(FACE_IMAGE if FACE_IMAGE.is_file() else np.zeros((64, 64, 3), np.uint8))
    load_s = time.perf_counter() - t0
    if warm_pass:  # lazy imports (the table's), first-inference work: not billed to frames
        est.analyze_video(clip)
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


def ours_cmd(clip: Path, model: str | None, warm_pass: bool) -> list[str]:
    cmd = [sys.executable, __file__, "--child-video", str(clip)]
    cmd += [] if warm_pass else ["--no-warm-pass"]
    return cmd + (["--model", model] if model else [])


def fer_venv() -> Path:
    """The peer's venv: ``$FER_VENV`` (``--fer-venv`` sets it; ``peers/setup_fer.sh`` builds
    it there too), else ``benchmarks/.venv-fer``."""
    import os

    return Path(os.environ["FER_VENV"]) if os.environ.get("FER_VENV") else FER_VENV


def fer_cmd(*args: str) -> list[str]:
    python = fer_venv() / "bin" / "python"
    if not python.is_file():
        benchlib.fail(f"peer venv missing: no {python} (run benchmarks/peers/setup_fer.sh, "
                      "or point --fer-venv / FER_VENV at fer's venv)")
    return [str(python), str(FER_RUNNER), *args]


def video_runs(clips: list[Path], reps: int, model: str | None, fer_mode: str,
               warm_pass: bool = True) -> list[dict]:
    runs = []
    for rep in range(reps):
        for clip in clips:
            warm = ["--warm-pass"] if warm_pass else []
            pair = [("ours", ours_cmd(clip, model, warm_pass)),
                    ("fer", fer_cmd("video", str(clip), "--mode", fer_mode, *warm))]
            for tool, cmd in pair if rep % 2 == 0 else pair[::-1]:  # ABBA: no order bias
                result = run_json(cmd) | {"rep": rep}
                runs.append(result)
                print(f"rep {rep} {tool:4s} {clip.name:18s} {result['fps']:7.2f} fps  "
                      f"{result['cpu_ms_per_frame']:6.1f} CPU ms/frame  "
                      f"rss {result['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    return runs


def one_face(path: Path = FACE_IMAGE) -> tuple[list, np.ndarray]:
    """The largest face of a still (MediaPipe, image mode) and the image."""
    from emotion_estimator.blendshapes import FaceLandmarker
    from emotion_estimator.video import read_image

    image = read_image(path)
    with FaceLandmarker(mode="image") as landmarker:
        faces = landmarker.detect(image)
    if not faces:
        benchlib.fail(f"no face found in {path}")
    return faces[:1], image


def timed(fn, calls: int, warmup: int) -> dict:
    """``benchlib.latency_stats`` of ``calls`` calls of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return benchlib.latency_stats(times)


def ours_latency(model: str, faces: list, image: np.ndarray, calls: int, warmup: int) -> dict:
    """One face, batch 1, one thread: feature building (all inputs, and each alone), the ONNX
    graph alone on the arrays ``predict_faces`` feeds it, and ``predict_faces`` itself."""
    import cv2

    from emotion_estimator import EmotionClassifier, features

    cv2.setNumThreads(1)  # the face crop's resize and warp
    clf = EmotionClassifier.load(model, threads=1)  # ORT intra_op 1, inter_op 1
    session, fed = clf._session, []

    class Recorder:  # the exact feeds of one predict_faces call (selection, scaling, dtypes)
        def run(self, names, feeds):
            fed.append((names, feeds))
            return session.run(names, feeds)

    clf._session = Recorder()
    clf.predict_faces(faces, image)
    clf._session = session
    names, feeds = fed[0]
    out = {"inputs": [s["kind"] for s in clf.inputs],
           "features": timed(lambda: features.build(clf.inputs, faces, image), calls, warmup)}
    if len(clf.inputs) > 1:
        out["per_input"] = {s["kind"]: timed(lambda s=s: features.build([s], faces, image),
                                             calls, warmup) for s in clf.inputs}
    out["onnx"] = timed(lambda: session.run(names, feeds), calls, warmup)
    out["predict_faces"] = timed(lambda: clf.predict_faces(faces, image), calls, warmup)
    return out


def ours_info(models: list[str]) -> dict:
    """Per model: file sizes, parameters, kind; the landmarker's size; the installed size."""
    import onnx

    from emotion_estimator import EmotionClassifier
    from emotion_estimator.assets import landmarker_path
    from emotion_estimator.classifier import default_model_path

    info = {}
    for model in models:
        clf = EmotionClassifier.load(model)
        graph = onnx.load(str(clf.path)).graph
        info[model] = {
            "model": str(clf.path), "onnx_bytes": clf.path.stat().st_size,
            "json_bytes": clf.path.with_suffix(".json").stat().st_size,
            "parameters": sum(int(np.prod(t.dims)) for t in graph.initializer),
            "kind": str(clf.metadata.get("model", {}).get("kind", "?")),
            "inputs": [s["kind"] for s in clf.inputs], "trained": clf.trained}
    shipped = default_model_path().parent
    return {"models": info, "landmarker_bytes": landmarker_path().stat().st_size,
            "shipped_bytes": sum(f.stat().st_size for f in shipped.iterdir() if f.is_file()),
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

    def ms(stats: dict) -> str:
        return f"{stats['median_ms']:.3f} ({stats['p90_ms']:.3f})"

    models = ours["models"]
    model_rows = [[Path(m).name, models[m]["kind"], " + ".join(lat["inputs"]),
                   f"{models[m]['parameters']:,}", f"{models[m]['onnx_bytes'] / 1024:.0f} KiB",
                   ms(lat["features"]), ms(lat["onnx"]), ms(lat["predict_faces"])]
                  for m, lat in lat_o.items()]
    per_input = "; ".join(
        f"{Path(m).name}: " + ", ".join(f"{k} {v['median_ms']:.3f}" for k, v in lat["per_input"]
                                        .items())
        for m, lat in lat_o.items() if "per_input" in lat)
    face = report["latency"]["face"]
    fer_rows = [
        ["fer (default)", "emotion_model_quantized.tflite", f"{fer['parameters']:,}",
         f"{fer['file_bytes']['emotion_model_quantized.tflite'] / 1024:.0f} KiB",
         f"{lat_f['tflite']['median_ms']:.3f} (p90 {lat_f['tflite']['p90_ms']:.3f})"],
        ["fer (Keras)", "emotion_model.hdf5", f"{fer['parameters']:,}",
         f"{fer['file_bytes']['emotion_model.hdf5'] / 1024:.0f} KiB",
         f"{lat_f['keras_eager']['median_ms']:.3f} eager, as fer calls it; "
         f"{lat_f['keras_graph']['median_ms']:.3f} as tf.function"],
    ]
    text = [
        "# Speed and footprint: emotion-estimator vs fer\n\n",
        f"Generated {report['created']} by `{report['command']}` on {report['machine']}. "
        f"{report['reps']} alternating runs per clip (ours, fer, fer, ours, ...), each a fresh "
        f"process; ours with the classifier `{Path(report['video_model']).name}`; fer runs its "
        f"fastest pipeline (`FER.detect_emotions` per frame, Haar cascade, default TFLite "
        f"model; mode `{report['fer_mode']}`). "
        + ("Each run first processes the clip once untimed (both tools), then times a second "
           "pass: imports and lazy first-use work are not billed to the frames.\n\n"
           if report.get("warm_pass") else "The timed pass is the run's first over the clip.\n\n"),
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
        "## Our classifiers per face: one face, batch 1, 1 thread\n\n",
        f"The face of `{face['image']}` ({face['image_size']}, face box {face['face_px']} px "
        f"wide) found by MediaPipe's landmarker (image mode, not timed here: it is in the "
        f"video numbers; {ours['landmarker_bytes'] / 1024:.0f} KiB). ONNX Runtime with one "
        f"intra-op thread, OpenCV with one thread; {face['calls']} calls after "
        f"{face['warmup']} warm-up calls; ms median (p90).\n\n",
        benchlib.markdown_table(
            ["model", "kind", "inputs", "parameters", "size", "features ms",
             "ONNX graph ms", "whole step ms"], model_rows, align="lllrrrrr"),
        "\nfeatures = `features.build` for the model's inputs (blendshape models: stacking the "
        "scores; their column selection and standardisation are in the whole step); ONNX "
        "graph = `InferenceSession.run` on exactly the arrays the classifier feeds it; whole "
        "step = `EmotionClassifier.predict_faces(faces, image)`, what the per-frame loop calls "
        "(issue 9: at most 1 ms per face on one core). The whole step can exceed features + "
        "graph timed apart: each alone in a loop keeps its data in the caches; timed back to "
        "back in one loop they cost what `predict_faces` costs."
        + (f" Feature building per input, ms median: {per_input}." if per_input else "")
        + f" The package's model folder (every shipped .onnx + .json): "
        f"{ours['shipped_bytes'] / 1e6:.2f} MB (issue 9: at most 2 MB in the wheel).\n\n",
        "## fer's classifier alone: one face, batch 1, 1 thread\n\n",
        benchlib.markdown_table(
            ["tool", "classifier", "parameters", "size", "latency ms median"],
            fer_rows, align="llrrr"),
        "\nfer's input is a 64x64 grey crop (random values), its face detector a Haar cascade "
        f"({fer['file_bytes']['haarcascade_frontalface_default.xml'] / 1024:.0f} KiB).\n",
        "\n## Installed size (the package and its runtime dependencies, no extras)\n\n",
        benchlib.markdown_table(
            ["tool", "MiB on disk", "packages", "largest"],
            [[name, f"{i['total_mb']:.0f}", str(i["packages"]),
              ", ".join(f"{k} {v:.0f}" for k, v in i["largest"][:3])]
             for name, i in (("emotion-estimator", ours["installed"]),
                             ("fer (tensorflow-cpu)", fer["installed"]))], align="lrrl"),
    ]
    untrained = [Path(m).name for m, i in models.items() if not i["trained"]]
    if untrained:
        text.append(f"\n**Untrained placeholder(s): {', '.join(untrained)}** (same graph and "
                    "size as a trained one, so the speed figures stand).\n")
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
    names, vals, colors = [], [], []
    for m, d in lat["ours"].items():
        for key, what in (("onnx", "graph"), ("predict_faces", "whole step")):
            names.append(f"ours {Path(m).name}, {what}")
            vals.append(d[key]["median_ms"])
            colors.append("C0")
    for key, what in (("tflite", "TFLite (default)"), ("keras_graph", "Keras tf.function"),
                      ("keras_eager", "Keras eager")):
        names.append(f"fer {what}")
        vals.append(lat["fer"][key]["median_ms"])
        colors.append("C1")
    bars = b.barh(names, vals, color=colors)
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
    return f"{benchlib.machine()} at start, shared machine"


def shipped_first() -> list[str]:
    """The shipped models, the default first."""
    from emotion_estimator.classifier import DEFAULT_MODEL, shipped_models

    return sorted(shipped_models(), key=lambda m: m != DEFAULT_MODEL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child-video", help=argparse.SUPPRESS)  # one timed run of ours
    p.add_argument("--clips", nargs="*", type=Path, default=CLIPS, help="video files")
    p.add_argument("--reps", type=int, default=5, help="alternating runs per tool and clip")
    p.add_argument("--model", nargs="+",
                   help="classifiers: shipped names (fusion, blendshapes, lstm) or .onnx files "
                        "(default: every shipped one, the default first); the video runs use "
                        "the first")
    p.add_argument("--fer-mode", choices=["loop", "video"], default="loop",
                   help="fer per-frame loop (fastest) or its fer.Video.analyze pipeline")
    p.add_argument("--warm-pass", action=argparse.BooleanOptionalAction, default=True,
                   help="each tool processes the clip once untimed before the timed pass "
                        "(imports and lazy first-use work are not billed to the frames)")
    p.add_argument("--calls", type=int, default=2000, help="latency calls per measurement")
    p.add_argument("--warmup", type=int, default=100, help="latency warm-up calls")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument("--fer-venv", type=Path, metavar="DIR",
                   help="fer's venv (default: $FER_VENV, else benchmarks/.venv-fer)")
    args = p.parse_args(argv)
    if args.fer_venv is not None:
        import os

        os.environ["FER_VENV"] = str(args.fer_venv.resolve())
    if args.child_video:
        print(json.dumps(ours_video(args.child_video, args.model[0] if args.model else None,
                                    args.warm_pass)))
        return 0
    missing = [str(c) for c in [*args.clips, FACE_IMAGE] if not c.is_file()]
    if missing:
        benchlib.fail(f"file not found: {missing[0]}")
    if args.calls < 1 or args.reps < 1:
        benchlib.fail("--calls and --reps must be at least 1")
    models = args.model or shipped_first()
    from emotion_estimator import EmotionClassifier

    for model in models:  # a bad name fails here, not after the video runs
        EmotionClassifier.load(model)
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": benchlib.command_line(), "machine": machine(), "reps": args.reps,
              "fer_mode": args.fer_mode, "warm_pass": args.warm_pass,
              "video_model": models[0], "models": models}
    runs = video_runs(args.clips, args.reps, models[0], args.fer_mode, args.warm_pass)
    report["video"] = summarise(runs)
    report["runs"] = runs
    faces, image = one_face()
    report["latency"] = {
        "face": {"image": FACE_IMAGE.name, "image_size": f"{image.shape[1]}x{image.shape[0]}",
                 "face_px": round(faces[0].box[2]), "calls": args.calls, "warmup": args.warmup},
        "ours": {m: ours_latency(m, faces, image, args.calls, args.warmup) for m in models},
        "fer": run_json(fer_cmd("latency", "--calls", str(args.calls), "--threads", "1")),
    }
    for m, lat in report["latency"]["ours"].items():
        print(f"{Path(m).name:12s} features {lat['features']['median_ms']:.3f}  onnx "
              f"{lat['onnx']['median_ms']:.3f}  whole step {lat['predict_faces']['median_ms']:.3f}"
              " ms median", file=sys.stderr)
    report["info"] = {"ours": ours_info(models), "fer": run_json(fer_cmd("info"))}
    write_report(report, args.out)
    print(json.dumps({c: round(r["ratio_median_fps"], 2) for c, r in report["video"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
