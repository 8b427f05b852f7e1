"""Evaluate a model on one split of a prepared dataset (§3.4).

A model is an exported ``.onnx`` (or a shipped model's name: ``fusion``, ``blendshapes``,
``lstm``, ``default``) or a training run (its folder, ``model.pt`` of the blendshape models or
``fusion.pt``). Its inputs are built from the dataset's stored columns: the 52 scores, and the
``landmarks`` / ``face`` bytes columns decoded as in training (:mod:`.fusion_data`).

Metrics are reported on the faces MediaPipe found and, separately, with the images it missed
counted as predicted ``unknown`` (their CCE is left out: the model never saw them); with the
dataset's FER+ vote columns (``prepare --labels ferplus``) also against the FER+ majority
labels (:mod:`.ferplus`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from ..errors import InputError
from . import ferplus as fp
from .data import pick_preprocess, read_dataset, read_undetected, select_rows
from .fusion_data import decode_inputs, require_columns
from .metrics import classification_metrics

FUSION_CHECKPOINT = "fusion.pt"  # fusion_train.CHECKPOINT (that module imports torch)
BATCH = 512  # rows per prediction call


@dataclass(frozen=True)
class Predictor:
    """A model ready for dataset rows: ``predict({kind: array}) -> (n, len(classes))``.

    ``inputs``: the kinds it takes (``blendshapes``, ``landmarks``, ``face``), as
    :func:`.fusion_data.decode_inputs` builds them from the dataset.
    """

    classes: tuple[str, ...]
    inputs: tuple[str, ...]
    predict: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    name: str = ""

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predict(arrays)


def blendshape_predictor(predict: Callable[[np.ndarray], np.ndarray], classes: Sequence[str],
                         name: str = "") -> Predictor:
    """A ``(n, 52) -> proba`` function (e.g. ``EmotionClassifier.predict_proba``) as a
    :class:`Predictor`."""
    return Predictor(tuple(classes), ("blendshapes",), lambda a: predict(a["blendshapes"]), name)


def load_predictor(path: str | os.PathLike) -> Predictor:
    """A :class:`Predictor` for an ``.onnx`` model (or a shipped one by name), a run folder,
    a blendshape ``model.pt`` or a ``fusion.pt``."""
    from ..classifier import resolve_model, shipped_models

    model = resolve_model(path)
    if model.suffix == ".onnx":
        return onnx_predictor(model)
    if model.is_dir():
        found = [model / n for n in (FUSION_CHECKPOINT, "model.pt") if (model / n).is_file()]
        if not found:
            raise InputError(f"{model} holds no {FUSION_CHECKPOINT} or model.pt (not a "
                             "training run folder)")
        model = found[0]
    if not model.is_file():
        raise InputError(f"model not found: {path} (an exported .onnx, a training run folder, "
                         f"its model.pt / {FUSION_CHECKPOINT}, or a shipped model: "
                         f"{', '.join(shipped_models())})")
    if model.name == FUSION_CHECKPOINT:
        return fusion_predictor(model)
    return blendshape_checkpoint_predictor(model)


def onnx_predictor(path: str | os.PathLike) -> Predictor:
    """An exported model through :meth:`EmotionClassifier.predict_inputs` (the same path as
    at run time): each declared input fed the dataset array of its kind."""
    from ..classifier import EmotionClassifier

    clf = EmotionClassifier.load(path)
    specs = list(clf.inputs)

    def predict(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return clf.predict_inputs({s["name"]: arrays[s["kind"]] for s in specs})

    kinds = tuple(dict.fromkeys(s["kind"] for s in specs))
    return Predictor(clf.classes, kinds, predict, clf.path.name)


def fusion_predictor(path: str | os.PathLike) -> Predictor:
    """A trained fusion run's ``fusion.pt``: ``softmax(logits / T + offsets)`` as exported."""
    import torch

    from .fusion_train import load_fusion, logits_of
    from .metrics import softmax

    model, ckpt = load_fusion(path)
    kinds = tuple(model.dims.inputs)
    size = model.dims.face_size
    temperature = float(ckpt["temperature"])
    offsets = np.asarray(ckpt["offsets"], np.float64)

    def predict(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if "face" in kinds and arrays["face"].shape[1:] != (size, size):
            raise InputError(f"model {path} takes {size}x{size} face crops, the dataset holds "
                             f"{arrays['face'].shape[1]}x{arrays['face'].shape[2]}")
        tensors = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in kinds}
        logits = logits_of(model, tensors).astype(np.float64)
        return softmax(logits / temperature + offsets).astype(np.float32)

    return Predictor(tuple(ckpt["classes"]), kinds, predict, str(path))


def blendshape_checkpoint_predictor(path: str | os.PathLike) -> Predictor:
    """A blendshape-family run's ``model.pt`` (MLP, LSTM, ...)."""
    import torch

    from ..blendshapes import BLENDSHAPE_NAMES
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

    return blendshape_predictor(predict, ckpt.classes, str(path))


def confusion_rate(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], truth: str,
                   called: str) -> float | None:
    """Share of the ``truth`` faces predicted ``called`` (None: no such face)."""
    t, c = list(classes).index(truth), list(classes).index(called)
    mask = y == t
    return float((pred[mask] == c).mean()) if mask.any() else None


def _robot_rates(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    """The two errors that matter most to the robot: sad -> happy and happy -> sad."""
    if "happy" not in classes or "sad" not in classes:
        return {}
    return {"sad_called_happy": confusion_rate(y, pred, classes, "sad", "happy"),
            "happy_called_sad": confusion_rate(y, pred, classes, "happy", "sad")}


def _predict_batched(predictor: Predictor, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
    parts = [np.asarray(predictor({k: v[i:i + BATCH] for k, v in arrays.items()}), np.float32)
             for i in range(0, n, BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, len(predictor.classes)), np.float32)


def evaluate_frame(
    predict: Predictor | Callable[[np.ndarray], np.ndarray],
    classes: Sequence[str] | None,
    frame: pd.DataFrame,
    split: str = "test",
    preprocess: str | None = None,
) -> dict:
    """Metrics dict plus a per-image prediction table (``detected`` column) of one split.

    ``predict``: a :class:`Predictor`, or a ``(n, 52) -> proba`` function over ``classes``.
    ``preprocess``: ``None`` takes the dataset's only variant.
    """
    predictor = predict if isinstance(predict, Predictor) else \
        blendshape_predictor(predict, classes or ())
    classes = predictor.classes
    where = frame.attrs.get("path", "the dataset")
    preprocess = pick_preprocess(frame, preprocess)
    require_columns(frame, predictor.inputs, where)
    rows = select_rows(frame, split, [preprocess], augmented=False)
    if rows.empty:
        raise InputError(f"no detected {split} rows with preprocess {preprocess!r} in {where}")
    unknown_labels = sorted(set(rows["label"]) - set(classes))
    if unknown_labels:
        raise InputError(f"dataset labels {unknown_labels} are not among the model's {classes}")
    index = {c: i for i, c in enumerate(classes)}
    proba = _predict_batched(predictor, decode_inputs(rows, predictor.inputs), len(rows))
    y = rows["label"].map(index).to_numpy(np.int64)
    pred = proba.argmax(1)
    table = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "detected": True,
                          "truth": rows["label"].to_numpy(),
                          "predicted": [classes[i] for i in pred]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, i]
    report = {"split": split, "preprocess": preprocess,
              "model": predictor.name, "inputs": list(predictor.inputs),
              "detected": classification_metrics(y, pred, classes, proba)}

    if all(c in frame.columns for c in fp.DATASET_COLUMNS) and set(fp.THREE) <= set(classes):
        y_plus, dropped = fp.majority(rows, classes)
        keep = y_plus >= 0
        report["ferplus"] = {
            **classification_metrics(y_plus[keep], pred[keep], classes, proba[keep]),
            **_robot_rates(y_plus[keep], pred[keep], classes), "no_label": dropped,
            "rule": fp.RULE}
        table.insert(3, "truth_ferplus", [classes[i] if i >= 0 else "" for i in y_plus])

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
    report.update(_robot_rates(y, pred, classes))
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
    for view in ("detected", "with_undetected", "ferplus"):
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


def dataset_columns(inputs: Sequence[str]) -> list[str]:
    """The dataset columns an evaluation reads besides the scores (bytes only where needed)."""
    return ["image_id", "split", "label", "source_label", "preprocess", "augmented",
            *(c for c in ("landmarks", "face") if c in inputs), *fp.DATASET_COLUMNS]


def evaluate(
    model: str | os.PathLike, dataset: str | os.PathLike, split: str = "test",
    preprocess: str | None = None, out: str | os.PathLike | None = None,
    fer2013: str | os.PathLike | None = None,
) -> dict:
    """Load, evaluate and (with ``out``) write the report files."""
    predictor = load_predictor(model)
    frame = read_dataset(dataset, columns=dataset_columns(predictor.inputs))
    report = evaluate_frame(predictor, None, frame, split, preprocess)
    if out is not None:
        report["files"] = [str(p) for p in write_report(report, predictor.classes, out, fer2013)]
    return report
