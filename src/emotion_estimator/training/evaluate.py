"""Evaluate a model on one split of a prepared dataset (§3.4).

A model is an exported ``.onnx`` (or a shipped model's name: ``fusion``, ``blendshapes``,
``lstm``, ``default``) or a training run (its folder, ``model.pt`` of the blendshape models or
``fusion.pt``). Its inputs are built from the dataset's stored columns: the 52 scores, and the
``landmarks`` / ``face`` bytes columns decoded as in training (:mod:`.fusion.data`).

Metrics are reported on the faces MediaPipe found and, separately, with the images it missed
counted as predicted ``unknown`` (their CCE is left out: the model never saw them); with the
dataset's FER+ vote columns (``prepare --labels ferplus``) also against the FER+ majority
labels (:mod:`.ferplus`). ``operating_point`` picks one of the model's stored points (applied
to the probabilities as at run time). A model with the seven-expression view is also scored
on the seven (truth: the ``source_label`` column; a missed image counts as wrong), and the
failure slices of :mod:`.expression_eval` are reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from ..classifier import apply_operating_point, operating_point_offsets
from ..errors import InputError
from ..expressions import EXPRESSIONS
from . import expression_eval as ev
from . import ferplus as fp
from .data import pick_preprocess, read_dataset, read_undetected, select_rows
from .fusion.data import decode_inputs, require_columns
from .metrics import classification_metrics

FUSION_CHECKPOINT = "fusion.pt"  # fusion.train.CHECKPOINT (that module imports torch)
ENSEMBLE_CHECKPOINT = "ensemble.pt"  # fusion.ensemble.ENSEMBLE
BATCH = 512  # rows per prediction call


@dataclass(frozen=True)
class Predictor:
    """A model ready for dataset rows: ``predict({kind: array}) -> (n, len(classes))``.

    ``inputs``: the kinds it takes (``blendshapes``, ``landmarks``, ``face``), as
    :func:`.fusion.data.decode_inputs` builds them from the dataset. A model with the
    expression view also has ``views(arrays) -> (probabilities, (n, 7) over expressions)``;
    ``operating_points``: its stored points (``{name: {class: offset}}``; empty: balanced).
    """

    classes: tuple[str, ...]
    inputs: tuple[str, ...]
    predict: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    name: str = ""
    views: Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]] | None \
        = None
    expressions: tuple[str, ...] = ()
    operating_points: dict[str, dict[str, float]] = field(default_factory=dict)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predict(arrays)

    def both(self, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and the expression view (None without one)."""
        return self.views(arrays) if self.views is not None else (self.predict(arrays), None)


def blendshape_predictor(predict: Callable[[np.ndarray], np.ndarray], classes: Sequence[str],
                         name: str = "") -> Predictor:
    """A ``(n, 52) -> proba`` function (e.g. ``EmotionClassifier.predict_proba``) as a
    :class:`Predictor`."""
    return Predictor(tuple(classes), ("blendshapes",), lambda a: predict(a["blendshapes"]), name)


def load_predictor(path: str | os.PathLike) -> Predictor:
    """A :class:`Predictor` for an ``.onnx`` model (or a shipped one by name), a run or
    ensemble folder, a blendshape ``model.pt``, a ``fusion.pt`` or an ``ensemble.pt``."""
    from ..classifier import resolve_model, shipped_models

    model = resolve_model(path)
    if model.suffix == ".onnx":
        return onnx_predictor(model)
    names = (ENSEMBLE_CHECKPOINT, FUSION_CHECKPOINT, "model.pt")
    if model.is_dir():
        from .fusion.ensemble import folder_checkpoint  # imports torch: any checkpoint needs it

        found = folder_checkpoint(model) or next(
            (model / n for n in names[2:] if (model / n).is_file()), None)
        if found is None:
            raise InputError(f"{model} holds no {', '.join(names)} (not a training run or "
                             "ensemble folder)")
        model = found
    if not model.is_file():
        raise InputError(f"model not found: {path} (an exported .onnx, a training run or "
                         f"ensemble folder, its {' / '.join(names)}, or a shipped model: "
                         f"{', '.join(shipped_models())})")
    if model.name in (FUSION_CHECKPOINT, ENSEMBLE_CHECKPOINT):
        return fusion_predictor(model)
    return blendshape_checkpoint_predictor(model)


def onnx_predictor(path: str | os.PathLike) -> Predictor:
    """An exported model through :meth:`EmotionClassifier.predict_inputs` (the same path as
    at run time): each declared input fed the dataset array of its kind."""
    from ..classifier import EmotionClassifier

    clf = EmotionClassifier.load(path)
    specs = list(clf.inputs)

    def views(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        return clf.predict_views({s["name"]: arrays[s["kind"]] for s in specs})

    kinds = tuple(dict.fromkeys(s["kind"] for s in specs))
    return Predictor(clf.classes, kinds, lambda a: views(a)[0], clf.path.name, views,
                     clf.expressions, dict(clf.operating_points))


def fusion_predictor(path: str | os.PathLike) -> Predictor:
    """A trained fusion run's ``fusion.pt`` (or an ensemble's ``ensemble.pt``) computed as
    its export computes it
    (:func:`.fusion.export.probabilities_module`: ``softmax(logits / T + offsets)`` and, with
    a calibrated 7-way head, the expression view); its operating points from the checkpoint."""
    import torch

    from .fusion.export import probabilities_module

    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    module = probabilities_module(ckpt)
    kinds, size = tuple(module.names), module.model.dims.face_size

    @torch.no_grad()
    def views(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        if "face" in kinds and arrays["face"].shape[1:] != (size, size):
            raise InputError(f"model {path} takes {size}x{size} face crops, the dataset holds "
                             f"{arrays['face'].shape[1]}x{arrays['face'].shape[2]}")
        out = module(*(torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in kinds))
        p, e = out if isinstance(out, tuple) else (out, None)
        return p.numpy().astype(np.float32), None if e is None else e.numpy().astype(np.float32)

    return Predictor(tuple(ckpt["classes"]), kinds, lambda a: views(a)[0], str(path), views,
                     EXPRESSIONS if module.expressions else (),
                     dict(ckpt.get("operating_points") or {}))


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


def _predict_batched(predictor: Predictor, arrays: dict[str, np.ndarray], n: int
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities and, for a model with the view, expression probabilities in
    :data:`EXPRESSIONS` order."""
    parts = [predictor.both({k: v[i:i + BATCH] for k, v in arrays.items()})
             for i in range(0, n, BATCH)]
    if not parts:
        return np.zeros((0, len(predictor.classes)), np.float32), None
    proba = np.concatenate([np.asarray(p, np.float32) for p, _ in parts])
    if not predictor.expressions or any(e is None for _, e in parts):
        return proba, None
    return proba, ev.reorder(np.concatenate([e for _, e in parts]), predictor.expressions)


def evaluate_frame(
    predict: Predictor | Callable[[np.ndarray], np.ndarray],
    classes: Sequence[str] | None,
    frame: pd.DataFrame,
    split: str = "test",
    preprocess: str | None = None,
    operating_point: str = "balanced",
) -> dict:
    """Metrics dict plus a per-image prediction table (``detected`` column) of one split.

    ``predict``: a :class:`Predictor`, or a ``(n, 52) -> proba`` function over ``classes``.
    ``preprocess``: ``None`` takes the dataset's only variant. ``operating_point``: one of
    the model's stored points (an :class:`InputError` listing them otherwise).
    """
    predictor = predict if isinstance(predict, Predictor) else \
        blendshape_predictor(predict, classes or ())
    classes = predictor.classes
    offsets = operating_point_offsets(predictor, operating_point)
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
    proba, expr = _predict_batched(predictor, decode_inputs(rows, predictor.inputs), len(rows))
    proba = apply_operating_point(proba, offsets)
    y = rows["label"].map(index).to_numpy(np.int64)
    pred = proba.argmax(1)
    table = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "detected": True,
                          "truth": rows["label"].to_numpy(),
                          "predicted": [classes[i] for i in pred]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, i]
    report = {"split": split, "preprocess": preprocess, "operating_point": operating_point,
              "operating_points": list(predictor.operating_points or ["balanced"]),
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

    missed = read_undetected(frame, extra=("source_label",))
    missed = missed[(missed["split"] == split) & (missed["preprocess"] == preprocess)]
    missed = missed[missed["label"].isin(classes)]
    if expr is not None:
        report["expressions"], table = _expression_view(rows, missed, expr, table)
    if "unknown" in index and {"happy", "sad"} <= set(classes) and "source_label" in rows:
        report["slices"] = _slices(rows, missed, y, pred, classes)
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


def _expression_view(rows: pd.DataFrame, missed: pd.DataFrame, expr: np.ndarray,
                     table: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The seven-expression view scored against the source labels (faces found; with the
    missed images as wrong) and FER+ majority labels; its columns added to ``table``."""
    view: dict = {"names": list(EXPRESSIONS)}
    pred = ev.predictions(expr)
    for i, name in enumerate(EXPRESSIONS):
        table[f"expr_{name}"] = np.concatenate([expr[:, i],
                                                np.full(len(table) - len(expr), np.nan)])
    table["expression"] = [EXPRESSIONS[i] for i in pred] + [""] * (len(table) - len(pred))
    if "source_label" not in rows:
        view["note"] = "no source_label column in the dataset: the seven are not scored"
        return view, table
    y = ev.expression_labels(rows["source_label"].tolist())
    table["truth_expression"] = [EXPRESSIONS[i] if i >= 0 else "" for i in y] \
        + [""] * (len(table) - len(y))
    keep = y >= 0
    left_out = rows.loc[~keep, "source_label"].astype(str).value_counts()
    view["left_out"] = {str(k): int(v) for k, v in left_out.items()}
    if keep.any():
        view["detected"] = ev.expression_metrics(y[keep], pred[keep])
    if "source_label" not in missed and len(missed):
        view["note"] = ("the missed images have no source_label (undetected.parquet of an "
                        "older prepare): the seven are scored on the faces found only")
    else:
        sources = missed.get("source_label", pd.Series([], dtype=str))
        y_missed = ev.expression_labels(sources.tolist())
        for label in sources[y_missed < 0].astype(str):
            view["left_out"][label] = view["left_out"].get(label, 0) + 1
        y_all = np.concatenate([y[keep], y_missed[y_missed >= 0]])
        if y_all.size:
            pred_all = np.concatenate([pred[keep], np.full(int((y_missed >= 0).sum()),
                                                           ev.NO_FACE)])
            view["with_undetected"] = ev.expression_metrics(y_all, pred_all)
            view["undetected"] = int((y_missed >= 0).sum())
    if all(c in rows.columns for c in fp.DATASET_COLUMNS):
        y_plus, dropped = fp.majority_expressions(rows)
        if (y_plus >= 0).any():
            view["ferplus"] = {**ev.expression_metrics(y_plus[y_plus >= 0],
                                                       pred[y_plus >= 0]),
                               "no_label": dropped, "rule": fp.RULE7}
    return view, table


def _slices(rows: pd.DataFrame, missed: pd.DataFrame, y: np.ndarray, pred: np.ndarray,
            classes: Sequence[str]) -> dict:
    """:func:`.expression_eval.slices` over the split, missed images predicted ``unknown``."""
    unknown = list(classes).index("unknown")
    index = {c: i for i, c in enumerate(classes)}
    sources = rows["source_label"].tolist()
    smile = ev.smile(rows[list(ev.SMILE)].to_numpy(np.float64))
    if "source_label" in missed:
        sources += missed["source_label"].tolist()
        y = np.concatenate([y, missed["label"].map(index).to_numpy(np.int64)])
        pred = np.concatenate([pred, np.full(len(missed), unknown)])
        smile = np.concatenate([smile, np.full(len(missed), np.nan)])
    return {**ev.slices(classes, y, pred, ev.expression_labels(sources), smile),
            "rule": ev.SLICE_RULE}


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
    for view, m in report.get("expressions", {}).items():
        if not isinstance(m, dict) or "confusion" not in m:
            continue
        matrix = np.asarray(m["confusion"])
        csv = out / f"confusion_expressions_{view}.csv"
        write_text(pd.DataFrame(matrix, index=[f"true_{c}" for c in EXPRESSIONS],
                                columns=[f"pred_{c}" for c in m["columns"]]).to_csv(), csv)
        png = csv.with_suffix(".png")
        plots.confusion_matrix(matrix[:, :len(EXPRESSIONS)], EXPRESSIONS, png,
                               f"7 expressions, {view}: acc {m['accuracy']:.3f}, F1 "
                               f"{m['macro_f1']:.3f}" + (f", no face {m['no_face']}"
                                                         if m["no_face"] else ""))
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
    fer2013: str | os.PathLike | None = None, operating_point: str = "balanced",
) -> dict:
    """Load, evaluate and (with ``out``) write the report files."""
    predictor = load_predictor(model)
    operating_point_offsets(predictor, operating_point)  # an unknown name: before any reading
    frame = read_dataset(dataset, columns=dataset_columns(predictor.inputs))
    report = evaluate_frame(predictor, None, frame, split, preprocess, operating_point)
    if out is not None:
        report["files"] = [str(p) for p in write_report(report, predictor.classes, out, fer2013)]
    return report
