"""One headline table from ``results/accuracy.json`` and ``results/speed.json``.

    .venv/bin/python benchmarks/headline.py          # -> results/headline.md (also printed)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def pick(results: list[dict], kind: str, variant: str | None = None,
         preprocess: str | None = None) -> dict | None:
    """The first accuracy row of ``kind`` (fer ``variant``, our ``preprocess`` if given),
    skipping the summed fold."""
    for r in results:
        if (r.get("kind") == kind and "summed" not in r["method"]
                and (variant is None or r.get("variant") == variant)
                and (preprocess is None or r.get("preprocess") == preprocess)):
            return r
    return None


def headline(acc: dict, speed: dict) -> str:
    res = acc["results"]
    # raw: the image as it comes, what the runtime feeds MediaPipe (pad is FER2013-specific)
    ours = pick(res, "ours", preprocess="raw") or pick(res, "ours")
    fer = pick(res, "fer", "tflite:api")
    tight = pick(res, "fer", "tflite:tight")

    def score(r: dict | None, key: str, extra: dict | None = None) -> str:
        if r is None:
            return "–"
        return f"{r[key]:.3f}" + ("" if extra is None else f" ({extra[key]:.3f} tight crop)")

    rows = [
        ["FER2013 PrivateTest accuracy, 3 classes", score(ours, "accuracy"),
         score(fer, "accuracy", tight)],
        ["FER2013 PrivateTest macro F1", score(ours, "macro_f1"), score(fer, "macro_f1", tight)],
    ]
    for clip, v in speed["video"].items():
        o, f = v["emotion-estimator"], v["fer"]
        rows.append([f"video fps, {clip} (median of {speed['reps']})",
                     f"{o['fps_median']:.1f} ({v['ratio_median_fps']:.1f}x)",
                     f"{f['fps_median']:.1f}"])
        rows.append([f"CPU ms per frame, {clip}",
                     f"{o['cpu_ms_per_frame_median']:.1f} ({v['ratio_cpu']:.1f}x less)",
                     f"{f['cpu_ms_per_frame_median']:.1f}"])
    lat, info = speed["latency"], speed["info"]

    def rss(tool: str) -> str:
        return f"{max(v[tool]['peak_rss_mb'] for v in speed['video'].values()):.0f} MiB"

    model = speed["video_model"]  # the classifier of the video runs
    ours_lat, ours_info = lat["ours"][model], info["ours"]["models"][model]
    rows += [
        ["classifier latency, 1 face, 1 thread (graph alone)",
         f"{ours_lat['onnx']['median_ms']:.3f} ms ({ours_lat['predict_faces']['median_ms']:.3f}"
         " with its features)", f"{lat['fer']['tflite']['median_ms']:.3f} ms"],
        ["classifier parameters", f"{ours_info['parameters']:,}",
         f"{info['fer']['parameters']:,}"],
        ["peak RSS on video", rss("emotion-estimator"), rss("fer")],
        ["installed size with runtime dependencies",
         f"{info['ours']['installed']['total_mb']:.0f} MiB",
         f"{info['fer']['installed']['total_mb']:.0f} MiB"],
    ]
    header = ["", "emotion-estimator", "fer 25.10.3"]
    notes = [
        f"Ours: {Path(acc['model']).name} end to end (MediaPipe, then the classifier) on the crops "
        f"({ours['preprocess']}); no face found = unknown ({1 - ours['face_found']:.1%} of the "
        "images). " if ours else "",
        "fer: its documented call on the whole crop, default TFLite model, 7 classes folded to "
        "3; in brackets its CNN fed the tight crop, the way it was trained (its best case). "
        f"The paper reports {benchlib.PAPER['accuracy']:.3f} / {benchlib.PAPER['macro_f1']:.3f}"
        " on its own 1646-image test subset. Details: accuracy.md, speed.md.",
    ]
    if not acc.get("model_trained", True):
        notes.append(" **Our accuracy here is an untrained placeholder.**")
    return (f"Machine: {speed['machine']}. Accuracy: `{acc['command']}` ({acc['created']}); "
            f"speed: `{speed['command']}` ({speed['created']}).\n\n"
            + benchlib.markdown_table(header, rows, align="lrr") + "\n" + "".join(notes) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=benchlib.RESULTS)
    args = p.parse_args(argv)
    try:
        acc = json.loads((args.results / "accuracy.json").read_text())
        speed = json.loads((args.results / "speed.json").read_text())
    except FileNotFoundError as exc:
        benchlib.fail(f"{exc.filename} missing: run bench_accuracy.py and bench_speed.py first")
    text = "# Headline: emotion-estimator vs fer\n\n" + headline(acc, speed)
    benchlib.write_atomic(args.results / "headline.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
