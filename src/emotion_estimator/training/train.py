"""Train a classifier on a blendshape dataset: AdamW(amsgrad), clipnorm 1, early stopping.

Deterministic on CPU for a given seed and thread count. Each epoch writes a resumable state
(``state.pt``); the best validation loss is kept as ``model.pt`` (a :class:`Checkpoint`), then
calibrated with a temperature fitted on the validation split.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_path, write_text
from .checkpoint import CHECKPOINT, Checkpoint, save_checkpoint
from .data import (
    CLASSES,
    Split,
    class_weights,
    fit_standardizer,
    provenance,
    read_dataset,
    resolve_blendshapes,
    select_rows,
    to_split,
)
from .losses import make_loss
from .metrics import classification_metrics, fit_offsets, fit_temperature, softmax
from .model import ModelDimensions, build_model, count_parameters, logits_of

STATE = "state.pt"
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainConfig:
    """All knobs of one training run (stored in the checkpoint and the exported JSON)."""

    dataset: str = ""
    blendshapes: str = "rule"  # rule | paper27 | all | JSON file | comma-separated names
    preprocess: tuple[str, ...] = ("raw", "pad")  # rows used for train and val
    augmented: bool = True  # use augmented train rows
    kind: str = "lstm"
    hidden: int = 32
    layers: int = 2
    dropout: float = 0.1
    activation: str = "tanh"
    loss: str = "cce"
    class_weights: bool = True
    smoothing: float = 0.0
    gamma: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 60
    patience: int = 10
    clip_norm: float = 1.0
    plateau: int = 3  # halve the learning rate after this many epochs without improvement; 0 = off
    calibrate: bool = True
    offsets: str = "acc+f1"  # none | f1 | acc+f1: per-class logit offsets fitted on val
    seed: int = 0
    threads: int = 1
    classes: tuple[str, ...] = CLASSES
    command: str = ""  # the CLI line that started the run, for provenance

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"], d["classes"] = list(self.preprocess), list(self.classes)
        return d


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Prepared:
    """Standardised train/val arrays plus the statistics and names that produced them."""

    train: Split
    val: Split
    names: list[str]
    mean: np.ndarray
    std: np.ndarray


def prepare(config: TrainConfig, frame: pd.DataFrame | None = None) -> Prepared:
    """Rows -> standardised arrays (statistics from the train split only)."""
    frame = read_dataset(config.dataset) if frame is None else frame
    train_rows = select_rows(frame, "train", config.preprocess, augmented=config.augmented)
    val_rows = select_rows(frame, "val", config.preprocess, augmented=False)
    if train_rows.empty or val_rows.empty:
        from ..errors import InputError

        raise InputError(
            f"dataset has no detected train/val rows for preprocess {list(config.preprocess)}"
        )
    # the selection rule counts original images once: first preprocess, no augmented copies
    originals = select_rows(frame, "train", config.preprocess[:1], augmented=False)
    names = resolve_blendshapes(config.blendshapes, originals)
    train = to_split(train_rows, names, config.classes)
    val = to_split(val_rows, names, config.classes)
    mean, std = fit_standardizer(train.x)
    train.x = (train.x - mean) / std
    val.x = (val.x - mean) / std
    return Prepared(train, val, names, mean, std)


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True)


def train(
    config: TrainConfig,
    out: str | os.PathLike | None = None,
    *,
    frame: pd.DataFrame | None = None,
    data: Prepared | None = None,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, keep the best-validation-loss weights, calibrate; write ``out`` if given."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    seed_everything(config.seed, config.threads)
    data = data or prepare(config, frame)
    n_classes = len(config.classes)
    dims = ModelDimensions(
        n_inputs=len(data.names), n_classes=n_classes, kind=config.kind,  # type: ignore[arg-type]
        hidden=config.hidden, layers=config.layers, dropout=config.dropout,
        activation=config.activation,
    )
    model = build_model(dims)
    weight = torch.from_numpy(class_weights(data.train.y, n_classes)) if config.class_weights \
        else None
    loss_fn = make_loss(config.loss, weight, smoothing=config.smoothing, gamma=config.gamma)
    optim = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=True
    )
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optim, factor=0.5, patience=max(config.plateau, 1) - 1, threshold=1e-5,
        threshold_mode="abs",
    ) if config.plateau else None
    xt, yt = torch.tensor(data.train.x), torch.tensor(data.train.y)
    xv, yv = torch.tensor(data.val.x), torch.tensor(data.val.y)
    gen = torch.Generator().manual_seed(config.seed)

    out = Path(out) if out is not None else None
    start, best, best_state, bad, history, before = 0, math.inf, None, 0, [], 0.0
    if resume and out is not None and (out / STATE).is_file():
        state = torch.load(out / STATE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        if schedule is not None and "schedule" in state:
            schedule.load_state_dict(state["schedule"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["rng"])
        start, best, best_state, bad, history = (
            state["epoch"], state["best"], state["best_state"], state["bad"], state["history"]
        )
        before = float(state.get("elapsed", 0.0))
        log(f"resumed {out} at epoch {start}")
    log(f"{dims.kind}: {count_parameters(model)} parameters, {len(data.names)} blendshapes, "
        f"train {len(xt)} rows, val {len(xv)} rows")

    for epoch in range(start, config.epochs):
        if bad >= config.patience:
            break
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optim.step()
            total += loss.item() * len(idx)
        logits = logits_of(model, xv)
        val_loss = float(loss_fn(logits, yv))
        m = classification_metrics(data.val.y, logits.argmax(1).numpy(), config.classes)
        row = {"epoch": epoch + 1, "lr": optim.param_groups[0]["lr"],
               "train_loss": total / len(xt), "val_loss": val_loss,
               "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if schedule is not None:
            schedule.step(val_loss)
        improved = val_loss < best - 1e-5
        if improved:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        log(f"epoch {epoch + 1:3d}/{config.epochs}  train {row['train_loss']:.4f}  "
            f"val {val_loss:.4f}  acc {m['accuracy']:.4f}  f1 {m['macro_f1']:.4f}  "
            f"{row['seconds']:.1f}s{'  *' if improved else ''}")
        if out is not None:
            _save_state(out, model, optim, schedule, gen, epoch + 1, best, best_state, bad,
                        history, before + time.perf_counter() - started)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)

    assert best_state is not None, "no epoch was trained"
    model.load_state_dict(best_state)
    logits = logits_of(model, xv).numpy()
    temperature = fit_temperature(logits, data.val.y) if config.calibrate else 1.0
    offsets = np.zeros(n_classes) if config.offsets == "none" \
        else fit_offsets(logits / temperature, data.val.y, config.offsets)
    proba = softmax(logits / temperature + offsets)
    val_metrics = classification_metrics(data.val.y, proba.argmax(1), config.classes, proba)
    seconds = before + time.perf_counter() - started  # across resumed sessions
    ckpt = Checkpoint(
        dims=dims,
        state_dict=best_state,
        classes=tuple(config.classes),
        blendshapes=tuple(data.names),
        mean=data.mean.tolist(),
        std=data.std.tolist(),
        temperature=temperature,
        offsets=[float(v) for v in offsets],
        config=config.to_dict(),
        metrics={"val": val_metrics, "best_val_loss": best, "epochs": len(history),
                 "train_seconds": seconds, "parameters": count_parameters(model),
                 "train_rows": len(xt), "val_rows": len(xv),
                 "data": provenance(config.dataset) if config.dataset else {}},
    )
    log(f"best val loss {best:.4f}; temperature {temperature:.3f}; offsets "
        f"{np.round(offsets, 2).tolist()}; val accuracy "
        f"{val_metrics['accuracy']:.4f}, macro F1 {val_metrics['macro_f1']:.4f}; {seconds:.0f}s")
    if out is not None:
        write_run(out, ckpt, history)
    return TrainResult(ckpt, history, seconds)


def _save_state(
    out: Path, model, optim, schedule, gen, epoch, best, best_state, bad, history, elapsed
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optim": optim.state_dict(),
             "schedule": schedule.state_dict() if schedule is not None else {},
             "gen": gen.get_state(), "rng": torch.get_rng_state(), "epoch": epoch, "best": best,
             "best_state": best_state, "bad": bad, "history": history, "elapsed": elapsed}
    with atomic_path(out / STATE) as tmp:
        torch.save(state, tmp)


def write_run(out: Path, ckpt: Checkpoint, history: list[dict[str, float]]) -> None:
    """``model.pt``, ``history.csv``, ``metrics.json`` and ``curves.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, out / CHECKPOINT)
    write_text(pd.DataFrame(history).to_csv(index=False), out / "history.csv")
    write_text(json.dumps({"config": ckpt.config, **ckpt.metrics}, indent=1) + "\n",
               out / "metrics.json")
    from .plots import training_curves

    training_curves(history, out / "curves.png")
