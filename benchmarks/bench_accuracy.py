"""Accuracy on FER2013 PrivateTest, 3 classes: our classifier vs ``fer`` vs plain baselines.

Every one of the 3589 PrivateTest images counts; where MediaPipe finds no face our pipeline
answers ``unknown``. ``fer`` classifies each whole 48x48 crop (``face_rectangles=[(0, 0, 48,
48)]``, its own padding and resizing) and its 7 classes are folded to 3 (argmax over 7, then
happy / sad / other; the "summed" row instead adds the five other probabilities).

    .venv/bin/python benchmarks/bench_accuracy.py                  # all, results/accuracy.*
    .venv/bin/python benchmarks/bench_accuracy.py --features data/dev/raw.parquet --skip-fer

Features: a Parquet table with ``image_id`` and the 52 blendshape columns (NaN or absent row =
no face), optionally ``split``, ``preprocess`` and ``augmented`` (the dataset of
``emotion-estimator prepare``). The peer's predictions are cached in ``runs/bench/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import CLASSES3, RESULTS, RUNS  # noqa: E402

from emotion_estimator import BLENDSHAPE_NAMES  # noqa: E402

DATASET = benchlib.REPO / "data" / "fer2013-bs" / "dataset.parquet"
FER_PYTHON = benchlib.REPO / "benchmarks" / ".venv-fer" / "bin" / "python"
FER_RUNNER = benchlib.REPO / "benchmarks" / "peers" / "fer_runner.py"


def private_test_labels(csv: Path) -> pd.DataFrame:
    """``image_id, y`` (index into CLASSES3) of the PrivateTest rows, in file order."""
    frame = pd.read_csv(csv, usecols=["emotion", "Usage"])
    frame["image_id"] = np.arange(len(frame))
    frame = frame[frame["Usage"] == "PrivateTest"].reset_index(drop=True)
    return pd.DataFrame({"image_id": frame["image_id"], "y": benchlib.fold7(frame["emotion"])})


def read_features(path: Path) -> pd.DataFrame:
    """The blendshape table, un-augmented rows only for evaluation, with a ``preprocess``."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        benchlib.fail(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})")
    missing = [c for c in ("image_id", *BLENDSHAPE_NAMES) if c not in table.columns]
    if missing:
        benchlib.fail(f"{path}: not a blendshape table (missing {missing[:3]})")
    if "preprocess" not in table.columns:
        table["preprocess"] = "raw"
    if "augmented" not in table.columns:
        table["augmented"] = False
    return table


def test_matrix(table: pd.DataFrame, ids: np.ndarray, preprocess: str) -> np.ndarray:
    """(len(ids), 52) scores of the un-augmented rows of ``ids``; NaN where no face."""
    rows = table[(table["preprocess"] == preprocess) & ~table["augmented"].astype(bool)]
    rows = rows.drop_duplicates("image_id").set_index("image_id")
    return rows.reindex(ids)[list(BLENDSHAPE_NAMES)].to_numpy(np.float32)


def predict_or_unknown(proba_fn, x: np.ndarray) -> np.ndarray:
    """Class index per row; rows without a face (NaN) are ``unknown``."""
    found = np.isfinite(x).all(axis=1)
    pred = np.full(len(x), CLASSES3.index("unknown"), dtype=np.int64)
    if found.any():
        pred[found] = proba_fn(x[found]).argmax(axis=1)
    return pred


def train_baselines(table: pd.DataFrame, preprocess: list[str], augmented: bool,
                    columns: list[int], csv: Path) -> dict:
    """Logistic regression and gradient boosting (scikit-learn defaults) on the rows the
    classifier was trained on: train split, its preprocess variants, augmented copies if it
    used them. Returns ``{name: (model, n_train, fit_seconds)}``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if "split" not in table.columns:
        return {}
    rows = table[(table["split"] == "train") & table["preprocess"].isin(preprocess)]
    if not augmented:
        rows = rows[~rows["augmented"].astype(bool)]
    x = rows[list(BLENDSHAPE_NAMES)].to_numpy(np.float32)
    keep = np.isfinite(x).all(axis=1)
    rows, x = rows[keep], x[keep][:, columns]
    if "label" in rows.columns:
        y = rows["label"].map({c: i for i, c in enumerate(CLASSES3)}).to_numpy()
    else:
        emotion = pd.read_csv(csv, usecols=["emotion"])["emotion"].to_numpy()
        y = benchlib.fold7(emotion[rows["image_id"].to_numpy()])
    if len(y) == 0:
        return {}
    models = {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "gradient boosting": HistGradientBoostingClassifier(random_state=0),
    }
    out = {}
    for name, model in models.items():
        t = time.perf_counter()
        model.fit(x, y)
        out[name] = (model, len(y), time.perf_counter() - t)
    return out


FER_LABELS = {
    "tflite:api": "fer default (TFLite int8, detect_emotions on the crop)",
    "tflite:tight": "fer CNN on the tight crop (TFLite int8)",
    "keras:api": "fer Keras float (detect_emotions on the crop)",
    "keras:tight": "fer CNN on the tight crop (Keras float)",
}


def fer_predictions(variant: str, csv: Path, rerun: bool) -> pd.DataFrame:
    """The peer's (n, 7) probabilities on PrivateTest, from cache or a fresh subprocess run."""
    backend, crop = variant.split(":")
    cache = RUNS / f"fer_{backend}_{crop}_privatetest.csv"
    if rerun or not cache.is_file():
        if not FER_PYTHON.is_file():
            benchlib.fail("peer venv missing: run benchmarks/peers/setup_fer.sh first")
        cmd = [str(FER_PYTHON), str(FER_RUNNER), "accuracy", "--backend", backend,
               "--crop", crop, "--csv", str(csv), "--out", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            benchlib.fail(f"fer run failed: {benchlib.last_line(done.stderr)}", 1)
        print(done.stdout.strip().splitlines()[-1], file=sys.stderr)
    return pd.read_csv(cache)


def evaluate(args: argparse.Namespace) -> dict:
    from emotion_estimator import EmotionClassifier

    labels = private_test_labels(args.csv)
    ids, y = labels["image_id"].to_numpy(), labels["y"].to_numpy()
    results: list[dict] = []

    def add(name: str, pred: np.ndarray, **extra) -> None:
        results.append({"method": name, **benchlib.metrics(y, pred), **extra})
        print(f"{name:44s} acc {results[-1]['accuracy']:.4f}  "
              f"F1 {results[-1]['macro_f1']:.4f}", file=sys.stderr)

    clf = EmotionClassifier.load(args.model)
    if tuple(clf.classes) != CLASSES3:
        benchlib.fail(f"model classes {clf.classes} are not {CLASSES3}")
    columns = [BLENDSHAPE_NAMES.index(n) for n in clf.blendshapes]
    tag = "" if clf.trained else " [UNTRAINED placeholder]"
    kind = str(clf.metadata.get("model", {}).get("kind", "model"))
    kind = kind.upper() if kind in ("lstm", "gru") else kind
    features = args.features if args.features else DATASET
    table = read_features(features)
    available = sorted(table["preprocess"].unique(), key=lambda p: (p != "raw", p))  # raw first
    trained_on = clf.metadata.get("training", {}).get("preprocess") or available
    augmented = bool(clf.metadata.get("training", {}).get("augmented", True))
    baselines = {} if args.skip_baselines else train_baselines(
        table, [p for p in trained_on if p in available], augmented, columns, args.csv)
    for pre in args.preprocess or available:
        x = test_matrix(table, ids, pre)
        found = np.isfinite(x).all(axis=1)
        face = {"face_found": float(found.mean()), "preprocess": pre}
        pred = predict_or_unknown(clf.predict_proba, x)
        add(f"emotion-estimator {kind} ({pre}){tag}", pred, kind="ours", **face,
            detected_only=benchlib.metrics(y[found], pred[found]))
        for path in args.extra_models:
            other = EmotionClassifier.load(path)
            pred = predict_or_unknown(other.predict_proba, x)
            name = other.metadata.get("model", {}).get("kind", "model")
            add(f"emotion-estimator {path.name}, {name} ({pre})", pred, kind="ours-extra",
                **face, detected_only=benchlib.metrics(y[found], pred[found]))
        for name, (model, n_train, fit_s) in baselines.items():
            pred = predict_or_unknown(lambda v, m=model: m.predict_proba(v[:, columns]), x)
            add(f"{name} on blendshapes ({pre})", pred, kind="baseline", n_train=n_train,
                fit_s=fit_s, **face, detected_only=benchlib.metrics(y[found], pred[found]))
    if not args.skip_fer:
        for variant in args.fer:
            fer = fer_predictions(variant, args.csv, args.rerun_fer)
            if not np.array_equal(fer["image_id"].to_numpy(), ids):
                benchlib.fail("fer predictions do not cover PrivateTest in order; --rerun-fer")
            p7 = fer[list(benchlib.FER7)].to_numpy()
            seven = float((p7.argmax(axis=1) == fer["emotion"].to_numpy()).mean())
            add(FER_LABELS[variant], benchlib.fold7(p7.argmax(axis=1)), kind="fer",
                face_found=1.0, variant=variant, accuracy_7class=seven)
            if variant == args.fer[0]:
                add(FER_LABELS[variant] + ", summed fold", benchlib.fold_proba(p7).argmax(axis=1),
                    kind="fer", face_found=1.0, variant=variant)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": benchlib.command_line(), "features": str(features),
            "model": str(clf.path), "model_trained": clf.trained,
            "model_sha256": hashlib.sha256(clf.path.read_bytes()).hexdigest(), "n": int(len(y)),
            "class_counts": np.bincount(y, minlength=3).tolist(), "results": results,
            "paper": benchlib.PAPER, "reproduction": benchlib.REPRODUCTION}


def write_report(report: dict, out: Path) -> None:
    """accuracy.json, accuracy.md and the two PNGs."""
    benchlib.write_json(out / "accuracy.json", report)
    rows = [[r["method"], r["accuracy"], r["macro_f1"], *r["f1"], r.get("face_found")]
            for r in report["results"]]
    rows.append(["paper (Attrah), its own test subset", benchlib.PAPER["accuracy"],
                 benchlib.PAPER["macro_f1"], None, None, None, None])
    rows.append(["public reproduction", benchlib.REPRODUCTION["accuracy"],
                 benchlib.REPRODUCTION["macro_f1"], None, None, None, None])
    header = ["method", "accuracy", "macro F1", "F1 happy", "F1 sad", "F1 unknown",
              "face found"]
    counts = dict(zip(CLASSES3, report["class_counts"], strict=True))
    text = [
        "# Accuracy on FER2013 PrivateTest (3 classes)\n\n",
        f"{report['n']} images ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
        "no face found = `unknown`. Generated "
        f"{report['created']} by `{report['command']}`. Our model: "
        f"`{shown_path(report['model'])}` (sha256 {report['model_sha256'][:12]}…); "
        f"blendshapes: `{shown_path(report['features'])}`.\n\n",
        benchlib.markdown_table(header, rows, align="lrrrrrr"),
        "\nThe paper's figures are on its own, smaller test subset (1646 images in its Table 4, "
        "undetectable images removed), not on all 3589 PrivateTest images. fer is given the "
        "face box (the whole crop), so it never misses a face; ours must find it first.\n",
        *[f"\nfer's own 7-class accuracy, {r['method']}: {r['accuracy_7class']:.4f}.\n"
          for r in report["results"] if "accuracy_7class" in r],
        "\n## Our rows on the images where MediaPipe found a face\n\n",
        benchlib.markdown_table(
            ["method", "images", "accuracy", "macro F1"],
            [[r["method"], r["detected_only"]["n"], r["detected_only"]["accuracy"],
              r["detected_only"]["macro_f1"]] for r in report["results"] if "detected_only" in r],
            align="lrrr"),
        "\n## Confusion matrices (rows = truth happy, sad, unknown; columns = predicted)\n",
    ]
    for r in report["results"]:
        cm = r["confusion"]
        text.append(f"\n**{r['method']}**\n\n" + benchlib.markdown_table(
            ["truth \\ predicted", *CLASSES3], [[c, *cm[i]] for i, c in enumerate(CLASSES3)],
            align="lrrr"))
    benchlib.write_atomic(out / "accuracy.md", "".join(text))
    plot_accuracy(report, out)


def shown_path(path: str) -> str:
    """A path relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(benchlib.REPO)) if p.is_relative_to(benchlib.REPO) else str(p)


def plot_accuracy(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    names = [r["method"] for r in res]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(res) + 1.6))
    pos = np.arange(len(res))
    ax.barh(pos - 0.2, [r["accuracy"] for r in res], 0.4, label="accuracy")
    ax.barh(pos + 0.2, [r["macro_f1"] for r in res], 0.4, label="macro F1")
    ax.axvline(benchlib.PAPER["accuracy"], color="k", ls="--", lw=1, label="paper accuracy")
    ax.axvline(benchlib.PAPER["macro_f1"], color="grey", ls=":", lw=1, label="paper macro F1")
    ax.set_yticks(pos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(f"FER2013 PrivateTest, 3 classes (n={report['n']})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    benchlib.save_png(fig, out / "accuracy.png")

    cols = min(3, len(res))
    rows = -(-len(res) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, res, strict=False):
        cm = np.asarray(r["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(3), CLASSES3, fontsize=7)
        ax.set_yticks(range(3), CLASSES3, fontsize=7)
        ax.set_title(r["method"], fontsize=7)
    for ax in list(axes.flat)[len(res):]:
        ax.axis("off")
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("truth", fontsize=8)
    fig.tight_layout()
    benchlib.save_png(fig, out / "confusion.png")


def default_extra_models() -> list[Path]:
    from emotion_estimator.classifier import default_model_path

    lstm = default_model_path().with_name("lstm.onnx")
    return [lstm] if lstm.is_file() else []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, default=benchlib.FER2013_CSV, help="FER2013 csv(.gz)")
    p.add_argument("--features", type=Path, help=f"blendshape Parquet (default {DATASET})")
    p.add_argument("--model", type=Path, help="classifier .onnx (default: the shipped one)")
    p.add_argument("--extra-models", nargs="*", type=Path, default=default_extra_models(),
                   help="more .onnx classifiers to score beside --model (default: the shipped "
                        "lstm.onnx, the paper's architecture, when present)")
    p.add_argument("--preprocess", nargs="*", help="preprocess variants to score (default all)")
    p.add_argument("--fer", nargs="*", default=["tflite:api", "tflite:tight", "keras:api"],
                   choices=list(FER_LABELS), help="peer variants, backend:crop (first = default)")
    p.add_argument("--skip-fer", action="store_true")
    p.add_argument("--rerun-fer", action="store_true", help="ignore the cached fer predictions")
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.csv.is_file():
        benchlib.fail(f"FER2013 not found: {args.csv}")
    features = args.features or DATASET
    if not features.is_file():
        benchlib.fail(f"blendshape dataset not found: {features} (run 'emotion-estimator "
                      "prepare' or pass --features)")
    report = evaluate(args)
    write_report(report, args.out)
    print(json.dumps({r["method"]: round(r["accuracy"], 4) for r in report["results"]}))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
