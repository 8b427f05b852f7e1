"""Accuracy end to end: our runtime vs ``fer`` on FER2013 and on real photos.

Sets: FER2013 PrivateTest with its original labels and with FER+ majority labels (all images,
no face = ``unknown``, and the faces MediaPipe found), and a labelled folder of real photos
(``../shared/data/muxspace``: all images end to end, and the faces both tools found).
Three classes for every model at each of its operating points (``fusion``,
``fusion@sad-sensitive``: the stored offsets applied to the cached probabilities, no second
MediaPipe pass); the failure slices of issue 16 (sad faces MediaPipe reads as smiling, angry +
disgusted faces called happy: :mod:`emotion_estimator.training.expression_eval`); and the seven
expressions (issue 19) for models with that view and for fer, whose CNN gives them natively.

Our predictions go through the public runtime, whatever inputs a model declares:
``EmotionEstimator(model=..., max_faces=1).analyze_image(...)``, the largest face; FER2013's
48x48 crops get the dataset's ``pad`` preprocessing first. ``fer`` runs in its own venv: the
whole crop on FER2013 (``detect_emotions`` on the crop, and its CNN on the tight crop), its
own Haar detection on the photos. Predictions are cached in ``runs/bench/`` by model (sha256
of the .onnx and its .json) and data; a rerun only computes what is missing.

    .venv/bin/python benchmarks/bench_accuracy.py --model default lstm   # results/accuracy.*
    .venv/bin/python benchmarks/bench_accuracy.py --limit 200            # quick, runs/bench/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import CLASSES3, RESULTS, RUNS  # noqa: E402

from emotion_estimator.expressions import EXPRESSIONS  # noqa: E402
from emotion_estimator.training import expression_eval as ev  # noqa: E402

SHARED_DATA = benchlib.REPO.parent / "shared" / "data"
FERPLUS_CSV = SHARED_DATA / "ferplus" / "fer2013new.csv"
FOLDER = SHARED_DATA / "muxspace"
FER_PYTHON = Path(os.environ.get("FER_VENV") or benchlib.REPO / "benchmarks" / ".venv-fer") \
    / "bin" / "python"  # the peer's venv: $FER_VENV, as peers/setup_fer.sh builds it
FER_RUNNER = benchlib.REPO / "benchmarks" / "peers" / "fer_runner.py"
FER_LABELS = {"tflite:api": "fer (detect_emotions on the crop)",
              "tflite:tight": "fer CNN on the tight crop",
              "keras:api": "fer Keras (detect_emotions on the crop)",
              "keras:tight": "fer Keras CNN on the tight crop"}
PRED_COLUMNS = ["image_id", "faces", "x", "y", "w", "h", "label", *[f"p_{c}" for c in CLASSES3],
                *[f"expr_{e}" for e in EXPRESSIONS], *ev.SMILE]
CACHE_VERSION = "v2"  # v2: + the expression view and the mouthSmile scores of the face
UNKNOWN = CLASSES3.index("unknown")
PREDICTIONS = {"computed": 0, "from_cache": 0}  # counted by cached(), shown in the report


# ---------------------------------------------------------------- data


@dataclass
class ImageSet:
    """Images of one source: ids, 3-class labels (index into CLASSES3), a BGR loader, and the
    source labels as expressions (index into EXPRESSIONS; -1: none, e.g. contempt)."""

    name: str
    key: str  # names the cache files: data + preprocessing
    ids: np.ndarray
    y: np.ndarray
    load: Callable[[int], np.ndarray]  # position -> BGR image
    paths: list[str] | None = None
    info: dict = field(default_factory=dict)
    y7: np.ndarray | None = None
    sources: np.ndarray | None = None  # the source label of each image, as the data names it


def subsample(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Positions of a seeded random subset of ``limit`` of ``n`` items (all when no limit),
    in their original order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fer2013_set(csv: Path, limit: int | None, preprocess: str) -> ImageSet:
    """FER2013 PrivateTest, original labels, crops preprocessed as the dataset does."""
    import cv2

    from emotion_estimator.training.augment import Preprocess

    meta, pixels = benchlib.load_fer2013(csv, usage="PrivateTest")
    keep = subsample(len(meta), limit)
    meta, pixels = meta.iloc[keep].reset_index(drop=True), pixels[keep]
    pre = Preprocess(preprocess)
    desc = "-".join(str(v) for v in pre.describe().values())

    def load(i: int) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(pre(pixels[i])), cv2.COLOR_GRAY2BGR)

    return ImageSet("FER2013 PrivateTest", f"fer2013-{file_sha256(csv)[:12]}-{desc}",
                    meta["image_id"].to_numpy(np.int64), benchlib.fold7(meta["emotion"]), load,
                    info={"preprocess": pre.describe(), "csv": str(csv)},
                    y7=ev.expression_labels(meta["emotion"].to_numpy(np.int64)))


def ferplus_labels(path: Path, ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """FER+ majority labels of FER2013 ``ids`` (row numbers), by the project's one rule
    (``emotion_estimator.training.ferplus``): the votes folded to 3 classes (happiness ->
    happy, sadness -> sad, the six other emotions -> unknown), the class with most votes. -1
    where dropped: ``unknown``/``NF`` (not a face) votes as many as the top emotion, or a tie
    between two classes. Returns labels and the drop counts."""
    from emotion_estimator.errors import InputError
    from emotion_estimator.training import ferplus

    try:
        votes = ferplus.read_votes(path)
    except InputError as exc:
        benchlib.fail(str(exc))
    if ids.size and ids.max() >= len(votes):
        benchlib.fail(f"{path}: {len(votes)} rows, fewer than FER2013's")
    return ferplus.majority(votes.iloc[ids], CLASSES3)


def ferplus_expressions(path: Path, ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """FER+ majority labels over the seven expressions of FER2013 ``ids`` (index into
    EXPRESSIONS; -1 where dropped: not a face, ties, contempt), by
    ``ferplus.majority_expressions``, and the drop counts."""
    from emotion_estimator.training import ferplus

    return ferplus.majority_expressions(ferplus.read_votes(path).iloc[ids])


def folder_set(root: Path, limit: int | None, class_map: Path | None,
               on_bad_image: str = "skip", holdout: float | None = None) -> ImageSet:
    """A labelled folder of photos (see ``emotion_estimator.training.folders``); with
    ``holdout``, only its fixed held-out part of that fraction."""
    from emotion_estimator.training.folders import holdout_mask, read_labelled_folder
    from emotion_estimator.video import read_image

    folder = read_labelled_folder(root, class_map, on_bad_image=on_bad_image)
    whole = folder.samples  # the cache key covers the whole folder: --limit reuses it
    sizes = [Path(p).stat().st_size for p in whole["path"]]
    stamp = hashlib.sha256(json.dumps([whole["image_id"].tolist(), whole["label"].tolist(),
                                       sizes]).encode()).hexdigest()[:12]
    part = whole[holdout_mask(whole["image_id"], holdout)] if holdout else whole
    samples = part.iloc[subsample(len(part), limit)].reset_index(drop=True)
    paths = samples["path"].tolist()
    y = samples["label"].map(CLASSES3.index).to_numpy(np.int64)
    title = f"{root.name} photos" + (f" (held-out {holdout:g})" if holdout else "")
    return ImageSet(title, f"{root.name}-{stamp}",
                    samples["image_id"].to_numpy(np.int64), y,
                    lambda i: read_image(Path(paths[i])), paths,
                    info={"root": str(root), "bad_images": folder.bad.to_dict("records"),
                          "source_labels": folder.summary()["source_labels"]},
                    y7=ev.expression_labels(samples["source_label"].tolist()),
                    sources=samples["source_label"].astype(str).to_numpy())


# ---------------------------------------------------------------- predictions


@dataclass
class Method:
    """One row of the tables: 3-class predictions (index into CLASSES3), where the tool found
    a face, the seven-expression predictions (index into EXPRESSIONS, ``ev.NO_FACE``; None
    without the view); ``family`` joins a method's rows across sets (the combined slice)."""

    name: str
    kind: str  # ours | fer
    pred: np.ndarray
    found: np.ndarray
    pred7: np.ndarray | None = None
    family: str = ""
    point: str | None = None
    variant: str | None = None


def cached(cache: Path, ids: np.ndarray, columns: list[str], compute, rerun: bool
           ) -> pd.DataFrame:
    """Rows of ``ids`` from a CSV cache; ``compute(missing_ids)`` fills the gaps (all of
    ``ids`` with ``rerun``), which go into the cache (atomically) so a rerun or a larger
    ``--limit`` reuses them."""
    have = pd.read_csv(cache) if cache.is_file() else pd.DataFrame(columns=columns)
    missing = np.unique(ids) if rerun else np.setdiff1d(ids, have["image_id"].to_numpy(np.int64))
    PREDICTIONS["computed"] += int(missing.size)
    PREDICTIONS["from_cache"] += int(len(ids) - missing.size)
    if missing.size:
        new = compute(missing)
        have = pd.concat([have, new], ignore_index=True) if len(have) else new
        have = have.drop_duplicates("image_id", keep="last").sort_values("image_id")
        benchlib.write_atomic(cache, have.to_csv(index=False))
    return have.set_index("image_id").loc[ids].reset_index()


def model_identity(name: str | None) -> dict:
    """Path, sha256 (of the .onnx and its .json: both decide the output), kind, its
    operating points (``{name: {class: offset}}``, balanced first) and expression view."""
    from emotion_estimator import EmotionClassifier

    clf = EmotionClassifier.load(name)
    if set(clf.classes) != set(CLASSES3):
        benchlib.fail(f"model {clf.path}: classes {list(clf.classes)} are not {list(CLASSES3)}")
    json_path = clf.path.with_suffix(".json")
    files = [clf.path, json_path] if json_path.is_file() else [clf.path]
    meta = clf.metadata
    kind = meta.get("model", {}).get("kind") or "+".join(
        str(i.get("kind")) for i in meta.get("inputs", [])) or "model"
    return {"name": name or "default", "path": str(clf.path), "sha256": file_sha256(*files),
            "onnx_sha256": file_sha256(clf.path), "kind": str(kind),
            "trained": bool(getattr(clf, "trained", True)),
            "operating_points": dict(clf.operating_points), "expressions": list(clf.expressions)}


FACES_VERSION = "v2"  # v2: stills with no face are retried (emotion_estimator.stills)
FACES_DONE: set[Path] = set()  # face caches already (re)computed in this run


def faces_of(images: ImageSet, ids: np.ndarray, rerun: bool) -> dict[int, object | None]:
    """The largest face MediaPipe finds in each image (a ``Face``, None: no face), from one
    landmarker pass shared by every model and cached in ``runs/bench/faces-*.npz`` (keyed by
    the data and the mediapipe version): a new model costs only its classifier."""
    import io

    import mediapipe

    from emotion_estimator import EmotionEstimator
    from emotion_estimator.blendshapes import Face

    path = RUNS / f"faces-{FACES_VERSION}_{images.key}_mp{mediapipe.__version__}.npz"
    have: dict[int, Face | None] = {}
    if path.is_file() and not (rerun and path not in FACES_DONE):
        with np.load(path) as z:  # each z[name] decompresses the whole array: once each
            got = {name: z[name] for name in z.files}
        for k, i in enumerate(got["image_id"].tolist()):
            have[i] = (Face(got["scores"][k], tuple(got["box"][k].tolist()),
                            got["landmarks"][k]) if got["found"][k] else None)
    missing = [int(i) for i in ids if int(i) not in have]
    PREDICTIONS["faces_computed"] = PREDICTIONS.get("faces_computed", 0) + len(missing)
    if missing:
        position = {int(i): k for k, i in enumerate(images.ids)}
        t = time.perf_counter()
        with EmotionEstimator(model=None, max_faces=1) as est, \
                est.landmarker("image") as landmarker:
            for n, image_id in enumerate(missing, 1):
                faces = landmarker.detect(images.load(position[image_id]))
                have[image_id] = max(faces, key=lambda f: f.box[2] * f.box[3]) if faces \
                    else None
                if n % 500 == 0 or n == len(missing):
                    print(f"  MediaPipe on {images.name}: {n}/{len(missing)} "
                          f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        keys = sorted(have)
        faces = [have[i] for i in keys]
        blank = Face(np.full(52, np.nan, np.float32), (0.0,) * 4,
                     np.zeros((478, 3), np.float32))
        buf = io.BytesIO()
        np.savez_compressed(
            buf, image_id=np.asarray(keys, np.int64),
            found=np.array([f is not None for f in faces]),
            scores=np.stack([(f or blank).scores for f in faces]).astype(np.float32),
            box=np.array([(f or blank).box for f in faces], np.float64),
            landmarks=np.stack([(f or blank).landmarks for f in faces]).astype(np.float32))
        benchlib.write_atomic(path, buf.getvalue())
    FACES_DONE.add(path)
    return {int(i): have[int(i)] for i in ids}


def predict_ours(model: dict, images: ImageSet, rerun: bool) -> pd.DataFrame:
    """Our raw probabilities per image (largest face; balanced point), end to end, with the
    expression view (NaN without one) and the face's mouthSmile scores (NaN: no face).

    The same step as ``EmotionEstimator(model=..., max_faces=1).analyze_image``: the faces of
    the still (:func:`faces_of`), then a fresh analyzer without smoothing on the image."""
    from emotion_estimator import BLENDSHAPE_NAMES, EmotionEstimator
    from emotion_estimator.video import Frame

    smile = [BLENDSHAPE_NAMES.index(n) for n in ev.SMILE]
    position = {int(i): k for k, i in enumerate(images.ids)}

    def compute(missing: np.ndarray) -> pd.DataFrame:
        faces = faces_of(images, missing, rerun)
        rows, t = [], time.perf_counter()
        est = EmotionEstimator(model=model["path"], max_faces=1)
        for n, image_id in enumerate(missing, 1):
            face = faces[int(image_id)]
            row: dict = {"image_id": int(image_id), "faces": int(face is not None)}
            if face is not None:
                image = images.load(position[int(image_id)])
                result = est.analyzer("none")(Frame(0, 0.0, image), [face]).faces[0]
                row.update(zip("xywh", result.box, strict=True), label=result.label,
                           **{f"p_{c}": result.raw_probabilities[c] for c in CLASSES3},
                           **{f"expr_{e}": p for e, p in
                              result.expression_probabilities.items()},
                           **dict(zip(ev.SMILE, result.scores[smile].tolist(), strict=True)))
            rows.append(row)
            if n % 1000 == 0 or n == len(missing):
                print(f"  {model['name']} on {images.name}: {n}/{len(missing)} "
                      f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        return pd.DataFrame(rows, columns=PRED_COLUMNS)

    key = f"{CACHE_VERSION}-faces{FACES_VERSION}_{images.key}_{model['sha256'][:16]}"
    cache = RUNS / f"ours-{key}.csv"
    return cached(cache, images.ids, PRED_COLUMNS, compute, rerun)


def point_name(model: dict, point: str) -> str:
    """``fusion`` for the balanced point, ``fusion@sad-sensitive`` for another."""
    return model["name"] if point == "balanced" else f"{model['name']}@{point}"


def ours_methods(models: list[dict], tables: dict[str, pd.DataFrame]) -> list[Method]:
    """One method per model and operating point, from the cached probabilities: the point's
    offsets applied (``apply_operating_point``), argmax; no face = ``unknown``. The balanced
    rows carry the expression view where the model has one."""
    from emotion_estimator.classifier import apply_operating_point

    out = []
    for m in models:
        table = tables[m["name"]]
        found = table["faces"].to_numpy() > 0
        p = table[[f"p_{c}" for c in CLASSES3]].to_numpy(np.float64)
        for point, offsets in m["operating_points"].items():
            shift = np.array([offsets[c] for c in CLASSES3], np.float64)
            pred = np.full(len(table), UNKNOWN, np.int64)
            if found.any():
                pred[found] = apply_operating_point(p[found], shift if shift.any() else None
                                                    ).argmax(axis=1)
            pred7 = None
            if point == "balanced" and m["expressions"]:
                pred7 = ev.predictions(table[[f"expr_{e}" for e in EXPRESSIONS]].to_numpy(),
                                       found)
            name = point_name(m, point)
            out.append(Method(f"ours: {name} ({m['kind']})", "ours", pred, found, pred7,
                              family=name, point=point))
    return out


def run_fer(args: list[str]) -> None:
    if not FER_PYTHON.is_file():
        benchlib.fail("peer venv missing: run benchmarks/peers/setup_fer.sh first "
                      "(or pass --skip-fer)")
    done = subprocess.run([str(FER_PYTHON), str(FER_RUNNER), *args], capture_output=True,
                          text=True)
    if done.returncode != 0:
        benchlib.fail(f"fer run failed: {benchlib.last_line(done.stderr)}", 1)
    print("  fer: " + done.stdout.strip().splitlines()[-1], file=sys.stderr)


def fer_method(name: str, p7: np.ndarray, found: np.ndarray, family: str,
               variant: str | None = None) -> Method:
    """fer's 7 probabilities (FER7 order) -> its method: top class folded to 3 (no face =
    unknown), and the top class as an expression (no face = ``ev.NO_FACE``)."""
    pred = np.full(len(p7), UNKNOWN, dtype=np.int64)
    pred[found] = benchlib.fold7(p7[found].argmax(axis=1))
    pred7 = ev.predictions(ev.reorder(p7, benchlib.FER7), found)
    return Method(name, "fer", pred, found, pred7, family=family, variant=variant)


def fer_crops(variant: str, images: ImageSet, rerun: bool) -> np.ndarray:
    """fer on FER2013 whole crops (all PrivateTest once, cached) -> its 7 probabilities."""
    backend, crop = variant.split(":")
    cache = RUNS / f"fer_{backend}_{crop}_privatetest.csv"
    if rerun or not cache.is_file():
        run_fer(["accuracy", "--backend", backend, "--crop", crop, "--csv",
                 images.info["csv"], "--out", str(cache)])
    table = pd.read_csv(cache).set_index("image_id")
    if not np.isin(images.ids, table.index).all():
        benchlib.fail(f"{cache} does not cover PrivateTest: pass --rerun")
    return table.loc[images.ids, list(benchlib.FER7)].to_numpy(np.float64)


def fer_photos(images: ImageSet, rerun: bool) -> pd.DataFrame:
    """fer with its own Haar detection on photos: ``faces`` and the 7 probabilities."""
    columns = ["image_id", "faces", *"xywh", *benchlib.FER7]
    position = {int(i): k for k, i in enumerate(images.ids)}

    def compute(missing: np.ndarray) -> pd.DataFrame:
        with tempfile.TemporaryDirectory() as tmp:
            todo = Path(tmp) / "list.csv"
            pd.DataFrame({"image_id": missing, "path": [images.paths[position[int(i)]]
                                                        for i in missing]}).to_csv(todo,
                                                                                   index=False)
            run_fer(["folder", str(todo), "--out", str(Path(tmp) / "out.csv")])
            return pd.read_csv(Path(tmp) / "out.csv")

    return cached(RUNS / f"fer_tflite_folder_{images.key}.csv", images.ids, columns, compute,
                  rerun)


# ---------------------------------------------------------------- report


def view(title: str, y: np.ndarray, methods: list[Method], mask: np.ndarray,
         note: str) -> dict | None:
    """One 3-class table: every method on ``y[mask]`` (``None`` when the mask is empty)."""
    if not mask.any():
        return None
    rows = []
    for m in methods:
        row = {"method": m.name, "kind": m.kind, "face_found": float(m.found[mask].mean()),
               **benchlib.metrics(y[mask], m.pred[mask])}
        row.update({k: v for k, v in (("point", m.point), ("variant", m.variant)) if v})
        rows.append(row)
    return {"title": title, "n": int(mask.sum()), "note": note,
            "class_counts": np.bincount(y[mask], minlength=3).tolist(), "rows": rows}


def view7(title: str, y7: np.ndarray, methods: list[Method], mask: np.ndarray,
          note: str) -> dict | None:
    """One seven-expression table: the methods with the view on the images of ``mask`` that
    have an expression label; a face a tool did not find counts as wrong."""
    mask = mask & (y7 >= 0)
    scored = [m for m in methods if m.pred7 is not None]
    if not mask.any() or not scored:
        return None
    rows = [{"method": m.name, "kind": m.kind, "face_found": float(m.found[mask].mean()),
             **ev.expression_metrics(y7[mask], m.pred7[mask])} for m in scored]
    return {"title": title, "n": int(mask.sum()), "note": note,
            "class_counts": np.bincount(y7[mask], minlength=7).tolist(), "rows": rows}


def slice_rows(title: str, images: ImageSet, methods: list[Method], smile: np.ndarray
               ) -> dict:
    """The failure slices of every method on one set (``smile``: our MediaPipe reading)."""
    rows = [{"method": m.name, "kind": m.kind, "family": m.family,
             **ev.slices(CLASSES3, images.y, m.pred, images.y7, smile)} for m in methods]
    return {"title": title, "n": len(images.y), "rows": rows}


def combined_slices(parts: list[tuple[ImageSet, list[Method], np.ndarray]]) -> dict | None:
    """The slices over the sets together, for each method family present in all of them."""
    if len(parts) < 2:
        return None
    families = [list(dict.fromkeys(m.family for m in ms)) for _, ms, _ in parts]
    common = [f for f in families[0] if all(f in fs for fs in families[1:])]
    rows = []
    for fam in common:
        picked = [next(m for m in ms if m.family == fam) for _, ms, _ in parts]
        cat = {k: np.concatenate(v) for k, v in (
            ("y", [im.y for im, _, _ in parts]), ("y7", [im.y7 for im, _, _ in parts]),
            ("smile", [s for *_, s in parts]), ("pred", [m.pred for m in picked]))}
        rows.append({"method": fam, "kind": picked[0].kind, "family": fam,
                     "parts": [m.name for m in picked],
                     **ev.slices(CLASSES3, cat["y"], cat["pred"], cat["y7"], cat["smile"])})
    return {"title": " + ".join(im.name for im, _, _ in parts),
            "n": int(sum(len(im.y) for im, _, _ in parts)), "rows": rows}


def smile_of(tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Mean mouthSmileLeft/Right of the face our MediaPipe pass found (the same for every
    model: one landmarker), NaN where none."""
    first = next(iter(tables.values()))
    return ev.smile(first[list(ev.SMILE)].to_numpy(np.float64))


def without_view(models: list[dict]) -> str:
    names = [m["name"] for m in models if not m["expressions"]]
    return (f"; {', '.join(names)}: no expression view" if names else "")


def evaluate(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    models = [model_identity(None if m == "default" else m) for m in args.model]
    sets: dict[str, dict | None] = {}
    sets7: dict[str, dict | None] = {}
    slices: dict[str, dict | None] = {}
    slice_parts = []
    info: dict = {}
    no_view = without_view(models)

    fer_set = fer2013_set(args.csv, args.limit, args.preprocess)
    tables = {m["name"]: predict_ours(m, fer_set, args.rerun) for m in models}
    methods = ours_methods(models, tables)
    if not args.skip_fer:
        everywhere = np.ones(len(fer_set.ids), dtype=bool)
        methods += [fer_method(FER_LABELS[v], fer_crops(v, fer_set, args.rerun), everywhere,
                               "fer (end to end)" if v.endswith(":api") else FER_LABELS[v], v)
                    for v in args.fer]
    detected = np.logical_and.reduce([m.found for m in methods if m.kind == "ours"])
    every = np.ones_like(detected)
    plus_y, dropped = (ferplus_labels(args.ferplus, fer_set.ids) if args.ferplus.is_file()
                       else (None, {}))
    sets["fer2013"] = view("FER2013 PrivateTest, original labels, all images", fer_set.y,
                           methods, every, "no face = unknown; fer classifies the whole crop")
    sets["fer2013_detected"] = view(
        "FER2013 PrivateTest, original labels, faces MediaPipe found", fer_set.y, methods,
        detected, "fer on the same images")
    sets7["fer2013"] = view7("FER2013 PrivateTest, 7 expressions, all images", fer_set.y7,
                             methods, every, "no face = wrong" + no_view)
    sets7["fer2013_detected"] = view7(
        "FER2013 PrivateTest, 7 expressions, faces MediaPipe found", fer_set.y7, methods,
        detected, "fer on the same images")
    smile = smile_of(tables)
    slices["fer2013"] = slice_rows("FER2013 PrivateTest", fer_set, methods, smile)
    slice_parts.append((fer_set, methods, smile))
    if plus_y is not None:
        kept = plus_y >= 0
        note = (f"FER+ votes folded to 3 classes, majority; dropped "
                f"{dropped['not_face_or_unknown']} images mostly voted not-a-face/unknown and "
                f"{dropped['tie']} ties")
        sets["ferplus"] = view("FER2013 PrivateTest, FER+ majority labels, all kept images",
                               np.where(kept, plus_y, 0), methods, kept, note)
        sets["ferplus_detected"] = view(
            "FER2013 PrivateTest, FER+ majority labels, faces MediaPipe found",
            np.where(kept, plus_y, 0), methods, kept & detected, note)
        info["ferplus_dropped"] = dropped
        plus7, dropped7 = ferplus_expressions(args.ferplus, fer_set.ids)
        sets7["ferplus"] = view7(
            "FER2013 PrivateTest, FER+ majority over the 7 expressions, all kept images",
            plus7, methods, every,
            f"no face = wrong; dropped {dropped7['not_face_or_unknown']} not-a-face/unknown, "
            f"{dropped7['tie']} ties, {dropped7['contempt']} contempt" + no_view)
        info["ferplus7_dropped"] = dropped7
    info["fer2013"] = {"key": fer_set.key, **fer_set.info}

    if not args.skip_folder:
        photos = folder_set(args.folder, args.limit, args.class_map, args.on_bad_image,
                            args.folder_holdout)
        tables = {m["name"]: predict_ours(m, photos, args.rerun) for m in models}
        methods = ours_methods(models, tables)
        if not args.skip_fer:
            fer = fer_photos(photos, args.rerun)
            methods.append(fer_method("fer (its Haar detection)",
                                      fer[list(benchlib.FER7)].to_numpy(np.float64),
                                      fer["faces"].to_numpy() > 0, "fer (end to end)"))
        both = np.logical_and.reduce([m.found for m in methods])
        print(f"  {photos.name}: faces found by both tools in {both.sum()} of {len(both)}",
              file=sys.stderr)
        name = args.folder.name
        sets[name] = view(f"{photos.name}, all images end to end", photos.y, methods,
                          np.ones_like(both), "no face = unknown, for each tool")
        found_by = "MediaPipe" if args.skip_fer else "both tools"
        sets[f"{name}_both"] = view(f"{photos.name}, faces {found_by} found", photos.y,
                                    methods, both, "")
        left = sorted(set(photos.sources[photos.y7 < 0]))
        left_note = (f"left out: {int((photos.y7 < 0).sum())} {', '.join(left)} photos "
                     "(no expression)" if left else "")
        sets7[name] = view7(f"{photos.name}, 7 expressions, all images end to end", photos.y7,
                            methods, np.ones_like(both), "; ".join(
                                filter(None, ["no face = wrong, for each tool", left_note]))
                            + no_view)
        sets7[f"{name}_both"] = view7(f"{photos.name}, 7 expressions, faces {found_by} found",
                                      photos.y7, methods, both, left_note)
        smile = smile_of(tables)
        slices[name] = slice_rows(photos.name, photos, methods, smile)
        slice_parts.append((photos, methods, smile))
        info["folder"] = {"key": photos.key, **photos.info}
    slices["combined"] = combined_slices(slice_parts)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": benchlib.command_line(), "seconds": round(time.perf_counter() - start, 1),
            "machine": f"{platform.machine()}, {benchlib.cpu_count()} CPUs",
            "limit": args.limit, "predictions": dict(PREDICTIONS), "models": models,
            "sets": {k: v for k, v in sets.items() if v is not None},
            "sets7": {k: v for k, v in sets7.items() if v is not None},
            "slices": {k: v for k, v in slices.items() if v is not None},
            "slice_rule": ev.SLICE_RULE, "data": info,
            # the first table in the pre-issue-9 layout, read by headline.py
            "model": models[0]["path"], "model_trained": models[0]["trained"],
            "results": [{**r, "preprocess": args.preprocess} for r in
                        (sets["fer2013"] or {"rows": []})["rows"]],
            "paper": benchlib.PAPER}


METRIC_HEADER = ["method", "images", "accuracy", "macro F1", "recall happy", "recall sad",
                 "recall unknown", "sad->happy", "happy->sad", "face found"]


def metric_row(r: dict) -> list:
    return [r["method"], r["n"], r["accuracy"], r["macro_f1"], *r["recall"], r["sad_to_happy"],
            r["happy_to_sad"], r["face_found"]]


def overview(report: dict) -> str:
    """Macro F1 (and sad recall) per set, one column per method."""
    sets = report["sets"]
    methods = list(dict.fromkeys(r["method"] for s in sets.values() for r in s["rows"]))
    rows = []
    for s in sets.values():
        by = {r["method"]: r for r in s["rows"]}
        rows.append([s["title"], s["n"], *[f"{by[m]['macro_f1']:.3f} / {by[m]['recall'][1]:.2f}"
                                            if m in by else None for m in methods]])
    return benchlib.markdown_table(["set", "images", *methods], rows,
                                   align="lr" + "r" * len(methods))


def describe_preprocess(pre: dict) -> str:
    if pre.get("name") == "pad":
        return f"{pre['pad']} px of border replication, then resized to {pre['size']} px"
    return pre.get("name", "raw")


def write_report(report: dict, out: Path) -> None:
    """accuracy.json, accuracy.md, accuracy.png (macro F1 per set) and confusion.png."""
    benchlib.write_json(out / "accuracy.json", report)
    models = "; ".join(f"`{m['name']}` = `{shown_path(m['path'])}` ({m['kind']}, sha256 "
                       f"{m['onnx_sha256'][:12]}…)" for m in report["models"])
    pre = describe_preprocess(report["data"]["fer2013"]["preprocess"])
    done = report.get("predictions", {"computed": "?", "from_cache": "?"})
    text = [
        "# Accuracy end to end: 3 classes at each operating point, failure slices, "
        "7 expressions\n\n",
        f"Generated {report['created']} by `{report['command']}` in {report['seconds']:.0f} s "
        f"({report['machine']}; {done['computed']} predictions computed, "
        f"{done['from_cache']} from the cache in `runs/bench/`). Models: {models}.\n\n",
        "Ours: `EmotionEstimator(model=..., max_faces=1).analyze_image`, the largest face; "
        f"FER2013's 48x48 crops get the dataset's `pad` preprocessing ({pre}). fer 25.10.3: "
        "7 classes folded to 3 (argmax, then happy / sad / other); on FER2013 it is handed "
        "the whole crop (it never misses a face), on photos it finds faces with its own Haar "
        "cascade. `sad->happy` = share of the sad faces called happy; `happy->sad` the "
        "reverse. A model's other operating points (`name@point`) are its stored offsets "
        "applied to the same cached probabilities.\n\n",
        points_markdown(report["models"]),
        "\nMacro F1 / sad recall:\n\n",
        overview(report),
    ]
    for s in report["sets"].values():
        counts = ", ".join(f"{c} {n}" for c, n in zip(CLASSES3, s["class_counts"], strict=True))
        text.append(f"\n## {s['title']}\n\n{s['n']} images ({counts})"
                    + (f"; {s['note']}" if s["note"] else "") + ".\n\n")
        text.append(benchlib.markdown_table(METRIC_HEADER, [metric_row(r) for r in s["rows"]],
                                            align="l" + "r" * 9))
        text.append("\nConfusion (truth->predicted; h happy, s sad, u unknown):\n\n")
        cells = [f"{a}->{b}" for a in "hsu" for b in "hsu"]
        text.append(benchlib.markdown_table(
            ["method", *cells], [[r["method"], *np.ravel(r["confusion"]).tolist()]
                                 for r in s["rows"]], align="l" + "r" * 9))
    text.append(slices_markdown(report))
    text.append(expressions_markdown(report))
    bad = report["data"].get("folder", {}).get("bad_images") or []
    if bad:
        text.append(f"\n{len(bad)} images of the folder were left out: "
                    + "; ".join(f"{b['path']} ({b['reason']})" for b in bad[:10]) + ".\n")
    benchlib.write_atomic(out / "accuracy.md", "".join(text))
    plot(report, out)


def points_markdown(models: list[dict]) -> str:
    """Each model's operating points (offsets added to log p) and whether it has the view."""
    lines = []
    for m in models:
        points = "; ".join(
            f"`{name}`" + ("" if not any(o.values()) else " (" + ", ".join(
                f"{c} {v:+.2f}" for c, v in o.items() if v) + ")")
            for name, o in m.get("operating_points", {"balanced": {}}).items())
        view = "seven expressions" if m.get("expressions") else "no expression view"
        lines.append(f"- `{m['name']}`: operating points {points}; {view}\n")
    return "".join(lines)


def pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.1%}"


def slices_markdown(report: dict) -> str:
    """The failure slices (issue 16): one table per set, then the sets together."""
    slices = report.get("slices") or {}
    if not slices:
        return ""
    text = ["\n## Failure slices\n\n", report.get("slice_rule", ev.SLICE_RULE),
            ". fer is scored on the same images (the slice comes from our MediaPipe pass).\n"]
    header = ["method", "smile-shaped sad", "sad recall", "sad->happy", "angry+disgusted",
              "called happy"]
    for sl in slices.values():
        text.append(f"\n### {sl['title']}\n\n")
        text.append(benchlib.markdown_table(header, [
            [r["method"], r["smile_sad"]["n"], pct(r["smile_sad"]["sad_recall"]),
             pct(r["smile_sad"]["sad_to_happy"]), r["angry_disgusted"]["n"],
             pct(r["angry_disgusted"]["called_happy"])] for r in sl["rows"]],
            align="lrrrrr"))
    return "".join(text)


def expressions_markdown(report: dict) -> str:
    """The seven-expression tables (issue 19): metrics, then the 7 x 8 confusions."""
    sets7 = report.get("sets7") or {}
    if not sets7:
        return ("\n## Seven expressions\n\nNo method with the expression view was measured "
                "(" + without_view(report["models"]).lstrip("; ") + ").\n")
    text = ["\n## Seven expressions\n\nTruth: the source labels mapped to "
            f"{', '.join(EXPRESSIONS)} (`emotion_estimator.expressions.SOURCE_NAMES`); fer's "
            "seven classes are the same emotions under FER2013's names. Our expression "
            "view does not depend on the operating point. `no face` counts as wrong.\n"]
    short = [e[:3] for e in EXPRESSIONS]
    for sv in sets7.values():
        counts = ", ".join(f"{e} {n}" for e, n in zip(EXPRESSIONS, sv["class_counts"],
                                                       strict=True))
        text.append(f"\n### {sv['title']}\n\n{sv['n']} images ({counts})"
                    + (f"; {sv['note']}" if sv["note"] else "") + ".\n\n")
        text.append(benchlib.markdown_table(
            ["method", "images", "accuracy", "macro F1", *[f"F1 {e}" for e in short],
             "no face"],
            [[r["method"], r["n"], r["accuracy"], r["macro_f1"],
              *[r["per_class"][e]["f1"] for e in EXPRESSIONS], r["no_face"]]
             for r in sv["rows"]], align="l" + "r" * 11))
        for r in sv["rows"]:
            text.append(f"\nConfusion, {r['method']} (rows truth, columns predicted):\n\n")
            text.append(benchlib.markdown_table(
                ["truth", *short, "none"],
                [[e, *row] for e, row in zip(EXPRESSIONS, r["confusion"], strict=True)],
                align="l" + "r" * 8))
    return "".join(text)


def shown_path(path: str) -> str:
    """A path relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(benchlib.REPO)) if p.is_relative_to(benchlib.REPO) else str(p)


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"].values())
    methods = list(dict.fromkeys(r["method"] for s in sets for r in s["rows"]))
    colors = {m: plt.cm.tab10(k % 10) for k, m in enumerate(methods)}
    n_bars = sum(len(s["rows"]) for s in sets)
    fig, ax = plt.subplots(figsize=(9, 0.22 * n_bars + 0.5 * len(sets) + 1.2))
    pos, ticks = 0.0, []
    for s in sets:
        ticks.append((pos + (len(s["rows"]) - 1) / 2, s["title"].replace(", ", ",\n", 1)))
        for r in s["rows"]:
            ax.barh(pos, r["macro_f1"], 0.85, color=colors[r["method"]])
            ax.text(r["macro_f1"] + 0.01, pos, f"{r['macro_f1']:.3f}", va="center", fontsize=6)
            pos += 1
        pos += 0.8
    ax.set_yticks([t for t, _ in ticks], [lab for _, lab in ticks], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("macro F1 (3 classes)")
    ax.legend([plt.Rectangle((0, 0), 1, 1, color=colors[m]) for m in methods], methods,
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    benchlib.save_png(fig, out / "accuracy.png")

    cols = max(len(s["rows"]) for s in sets)
    fig, axes = plt.subplots(len(sets), cols, figsize=(2.6 * cols, 2.5 * len(sets)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, s in enumerate(sets):
        for j, r in enumerate(s["rows"]):
            ax = axes[i, j]
            ax.axis("on")
            method = r["method"]
            cm = np.asarray(r["confusion"], dtype=float)
            norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for a in range(3):
                for b in range(3):
                    ax.text(b, a, f"{int(cm[a, b])}\n{norm[a, b]:.2f}", ha="center",
                            va="center", fontsize=6,
                            color="white" if norm[a, b] > 0.5 else "black")
            ax.set_xticks(range(3), CLASSES3, fontsize=6)
            ax.set_yticks(range(3), CLASSES3, fontsize=6)
            ax.set_title(f"{method}\n{s['title']}", fontsize=5.5)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("truth", fontsize=8)
    fig.tight_layout()
    benchlib.save_png(fig, out / "confusion.png")


def print_summary(report: dict) -> None:
    for s in report["sets"].values():
        print(s["title"], file=sys.stderr)
        for r in s["rows"]:
            print(f"  {r['method']:42s} acc {r['accuracy']:.3f}  F1 {r['macro_f1']:.3f}  "
                  f"sad recall {r['recall'][1]:.2f}  sad->happy {r['sad_to_happy']:.3f}",
                  file=sys.stderr)
    for sl in report.get("slices", {}).values():
        print(f"slices: {sl['title']}", file=sys.stderr)
        for r in sl["rows"]:
            smile, rough = r["smile_sad"], r["angry_disgusted"]
            print(f"  {r['method']:42s} smile-shaped sad {smile['n']:4d}: recall "
                  f"{pct(smile['sad_recall'])}, ->happy {pct(smile['sad_to_happy'])}; "
                  f"angry+disgusted {rough['n']:4d}: ->happy {pct(rough['called_happy'])}",
                  file=sys.stderr)
    for sv in report.get("sets7", {}).values():
        print(sv["title"], file=sys.stderr)
        for r in sv["rows"]:
            print(f"  {r['method']:42s} acc {r['accuracy']:.3f}  F1 {r['macro_f1']:.3f}",
                  file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["default"],
                   help="models to measure: shipped names (default, lstm) or .onnx paths "
                        "(default: %(default)s)")
    p.add_argument("--limit", type=int, help="a seeded sample of N images per source (quick; "
                   "results go to runs/bench/limit-N unless --out)")
    p.add_argument("--csv", type=Path, default=benchlib.FER2013_CSV, help="FER2013 csv(.gz)")
    p.add_argument("--ferplus", type=Path, default=FERPLUS_CSV,
                   help="FER+ votes (skipped when absent)")
    p.add_argument("--folder", type=Path, default=FOLDER, help="labelled folder of photos")
    p.add_argument("--class-map", type=Path, help="JSON label -> class map for --folder")
    p.add_argument("--on-bad-image", choices=["skip", "stop"], default="skip",
                   help="images of --folder with an unknown label or not decodable: listed in "
                        "the report and skipped, or stop (default: %(default)s)")
    p.add_argument("--folder-holdout", type=float, metavar="FRACTION",
                   help="score only the folder's fixed held-out part of this fraction "
                        "(training.folders.holdout_mask; when the model used the rest)")
    p.add_argument("--skip-folder", action="store_true")
    p.add_argument("--preprocess", choices=["raw", "pad"], default="pad",
                   help="how FER2013 crops are shown to MediaPipe (default: %(default)s)")
    p.add_argument("--fer", nargs="*", default=["tflite:api", "tflite:tight"],
                   choices=list(FER_LABELS), help="fer variants on FER2013, backend:crop")
    p.add_argument("--skip-fer", action="store_true")
    p.add_argument("--rerun", "--rerun-fer", action="store_true",
                   help="ignore cached predictions (ours and fer)")
    p.add_argument("--out", type=Path, help=f"results folder (default {shown_path(RESULTS)})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        benchlib.fail("--limit must be at least 1")
    if args.folder_holdout is not None and not 0 < args.folder_holdout < 1:
        benchlib.fail("--folder-holdout must be between 0 and 1")
    if not args.csv.is_file():
        benchlib.fail(f"FER2013 not found: {args.csv}")
    if not args.skip_folder and not args.folder.is_dir():
        benchlib.fail(f"labelled folder not found: {args.folder} (or pass --skip-folder)")
    if not args.skip_fer and not FER_PYTHON.is_file():
        benchlib.fail("peer venv missing: run benchmarks/peers/setup_fer.sh first "
                      "(or pass --skip-fer)")
    out = args.out or (RESULTS if args.limit is None else RUNS / f"limit-{args.limit}")
    report = evaluate(args)
    write_report(report, out)
    print_summary(report)
    print(json.dumps({"out": str(out), "seconds": report["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.guarded(main))
