"""Evaluate a model (``.onnx`` or a training run) on one split of a blendshape dataset (§3.4).

Metrics are reported on the faces MediaPipe found and, separately, with the images it missed
counted as predicted ``unknown`` (their CCE is left out: the model never saw them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from ..blendshapes import BLENDSHAPE_NAMES
from ..errors import InputError
from .data import read_dataset, read_undetected, select_rows
from .metrics import classification_metrics

Predictor = Callable[[np.ndarray], np.ndarray]


def load_predictor(path: str | os.PathLike) -> tuple[tuple[str, ...], Predictor]:
    """Classes and ``(n, 52) -> proba`` for an ``.onnx`` model or a run dir / ``model.pt``."""
    path = Path(path)
    if path.suffix == ".onnx":
        from ..classifier import EmotionClassifier

        clf = EmotionClassifier.load(path)
        return clf.classes, clf.predict_proba
    import torch

    from .checkpoint import load_checkpoint
    from .model import Probabilities, build_model

    ckpt = load_checkpoint(path)
    model = build_model(ckpt.dims)
    model.load_state_dict(ckpt.state_dict)
    module = Probabilities(model, ckpt.temperature, ckpt.offsets).eval()
    cols = [BLENDSHAPE_NAMES.index(n) for n in ckpt.blendshapes]
    mean, std = np.asarray(ckpt.mean, np.float32), np.asarray(ckpt.std, np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy((x[:, cols] - mean) / std)).numpy()

    return ckpt.classes, predict


def evaluate_frame(
    predict: Predictor,
    classes: Sequence[str],
    frame: pd.DataFrame,
    split: str = "test",
    preprocess: str = "raw",
) -> dict:
    """Metrics dict plus a per-image prediction table (``detected`` column) of one split."""
    rows = select_rows(frame, split, [preprocess], augmented=False)
    if rows.empty:
        raise InputError(f"no detected {split} rows with preprocess {preprocess!r} in the dataset")
    unknown_labels = sorted(set(rows["label"]) - set(classes))
    if unknown_labels:
        raise InputError(f"dataset labels {unknown_labels} are not among the model's {classes}")
    index = {c: i for i, c in enumerate(classes)}
    proba = predict(rows[list(BLENDSHAPE_NAMES)].to_numpy(np.float32))
    y = rows["label"].map(index).to_numpy(np.int64)
    pred = proba.argmax(1)
    table = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "detected": True,
                          "truth": rows["label"].to_numpy(),
                          "predicted": [classes[i] for i in pred]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, i]
    report = {"split": split, "preprocess": preprocess,
              "detected": classification_metrics(y, pred, classes, proba)}

    missed = read_undetected(frame)
    missed = missed[(missed["split"] == split) & (missed["preprocess"] == preprocess)]
    missed = missed[missed["label"].isin(classes)]
    if "unknown" in index:
        y_all = np.concatenate([y, missed["label"].map(index).to_numpy(np.int64)])
        pred_all = np.concatenate([pred, np.full(len(missed), index["unknown"])])
        report["with_undetected"] = classification_metrics(y_all, pred_all, classes)
        report["undetected"] = int(len(missed))
        extra = pd.DataFrame({"image_id": missed["image_id"].to_numpy(), "detected": False,
                              "truth": missed["label"].to_numpy(), "predicted": "unknown"})
        table = pd.concat([table, extra], ignore_index=True)
    if "happy" in index and "sad" in index:
        sad = y == index["sad"]
        report["sad_called_happy"] = float((pred[sad] == index["happy"]).mean()) if sad.any() \
            else float("nan")
    report["table"] = table
    return report


def fer_images(fer2013: str | os.PathLike, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """48x48 grey images of FER2013 rows (row number = image id) from the Kaggle CSV."""
    wanted = set(int(i) for i in ids)
    out: dict[int, np.ndarray] = {}
    for start, chunk in enumerate(pd.read_csv(fer2013, usecols=["pixels"], chunksize=4096)):
        for offset, pixels in enumerate(chunk["pixels"]):
            image_id = start * 4096 + offset
            if image_id in wanted:
                out[image_id] = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
    return out


def write_report(
    report: dict, classes: Sequence[str], out: str | os.PathLike,
    fer2013: str | os.PathLike | None = None, max_images: int = 96,
) -> list[Path]:
    """metrics.json, confusion CSV/PNG (both views), misclassified.csv and its contact sheet."""
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table: pd.DataFrame = report["table"]
    written = []
    metrics = {k: v for k, v in report.items() if k != "table"}
    write_text(json.dumps(metrics, indent=1) + "\n", out / "metrics.json")
    written.append(out / "metrics.json")
    for view in ("detected", "with_undetected"):
        if view not in report:
            continue
        matrix = np.asarray(report[view]["confusion"])
        csv = out / f"confusion_{view}.csv"
        write_text(pd.DataFrame(matrix, index=[f"true_{c}" for c in classes],
                                columns=[f"pred_{c}" for c in classes]).to_csv(), csv)
        png = csv.with_suffix(".png")
        m = report[view]
        plots.confusion_matrix(matrix, classes, png,
                               f"{view}: acc {m['accuracy']:.3f}, F1 {m['macro_f1']:.3f}")
        written += [csv, png]
    wrong = table[table["truth"] != table["predicted"]]
    confidence = wrong[[f"p_{c}" for c in classes]].max(axis=1).fillna(0.0)
    wrong = wrong.loc[confidence.sort_values(ascending=False, kind="stable").index]
    write_text(wrong.to_csv(index=False), out / "misclassified.csv")
    written.append(out / "misclassified.csv")
    if fer2013 is not None and not wrong.empty:
        shown = wrong[wrong["detected"]].head(max_images)
        images = fer_images(fer2013, shown["image_id"])
        caps = [f"{i} {t[:3]}>{p[:3]}" for i, t, p in
                zip(shown["image_id"], shown["truth"], shown["predicted"], strict=True)]
        plots.contact_sheet([images[int(i)] for i in shown["image_id"]], caps,
                            out / "misclassified.png")
        written.append(out / "misclassified.png")
    return written


def evaluate(
    model: str | os.PathLike, dataset: str | os.PathLike, split: str = "test",
    preprocess: str = "raw", out: str | os.PathLike | None = None,
    fer2013: str | os.PathLike | None = None,
) -> dict:
    """Load, evaluate and (with ``out``) write the report files."""
    classes, predict = load_predictor(model)
    report = evaluate_frame(predict, classes, read_dataset(dataset), split, preprocess)
    if out is not None:
        report["files"] = [str(p) for p in write_report(report, classes, out, fer2013)]
    return report
