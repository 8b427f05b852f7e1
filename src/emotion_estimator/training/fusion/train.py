"""Train the fusion model: AdamW + one-cycle rate, batched augmentation, resumable epochs.

Uses CUDA when present (``device="auto"``), else all the CPU threads asked for. Each epoch
writes ``state.pt``; the weights with the best validation score (accuracy + macro F1) are kept.
At the end a temperature and per-class logit offsets are fitted on the validation split, the
offsets under a cap on sad faces called happy (the worst error for a robot), and the run is
written as ``fusion.pt`` + ``metrics.json`` + ``history.csv``.
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
import torch.nn.functional as F

from ...atomic import atomic_path, write_text
from ..data import CLASSES, class_weights, provenance
from ..metrics import accuracy_and_macro_f1, classification_metrics, fit_temperature, softmax
from ..operating_points import fit_points, relative_points
from .augment import AugmentConfig, augment, blendshape_mirror, landmark_mirror
from .data import FINE_CLASSES, FusionSplit, load_splits, merge_splits
from .model import INPUT_NAMES, FusionDimensions, FusionNet, FusionProbabilities

STATE = "state.pt"
CHECKPOINT = "fusion.pt"
# Expected-cost term (true class, predicted class): a sad face called happy is the robot's
# worst error; an angry/disgusted/fearful face ("unknown") called happy the next.
COSTS = {("sad", "happy"): 1.0, ("unknown", "happy"): 0.3}
SMILE = ("mouthSmileLeft", "mouthSmileRight")
HARD_SMILE = 0.3  # mean mouthSmile at which a non-happy face is "smile-shaped"
MIN_NHWC_WIDTH = 8  # narrower models train in the default layout (see train_fusion)


@dataclass
class FusionConfig:
    """All knobs of one fusion training run (stored with the checkpoint and the model)."""

    dataset: str = ""
    inputs: tuple[str, ...] = INPUT_NAMES
    preprocess: str = "pad"
    labels: str = "fer"  # fer | ferplus (FER+ vote shares) | source | blend (see .data)
    ferplus: str = ""
    width: int = 32
    stem: str = "full"  # model.STEMS
    dropout: float = 0.3
    epochs: int = 36
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    smoothing: float = 0.05
    aux_weight: float = 0.3
    fine_weight: float = 1.0  # the 7-expression head over the source emotions (0: none)
    fine_balance: float = 0.0  # its classes weighed by (mean count / count) ** fine_balance
    fine_labels: str = "source"  # its targets: source | ferplus (vote shares) | blend (.data)
    cost_weight: float = 1.0  # expected-cost term: sad -> happy costs most (COSTS)
    hard_weight: float = 2.0  # extra loss weight of hard faces (see hard_examples)
    ema: float = 0.999  # decay of the weight average that is validated and kept (0: off)
    init: str = ""  # a run folder or fusion.pt whose weights this run starts from (fine-tuning)
    teacher: str = ""  # an ensemble whose probabilities are mixed into the targets (.distill)
    teacher_weight: float = 0.5
    teacher_expressions: bool = False  # the teacher's 7 probabilities teach that head too
    consistent_teacher: bool = False  # the teacher reads each augmented batch (.distill)
    peer_teacher: str = ""  # "fer": its CNN joins the teacher at training time (.peer)
    peer_weight: float = 0.3
    peer_python: str = ""
    extra: tuple[str, ...] = ()  # more prepared datasets (e.g. a real-face folder) to train on
    extra_repeat: int = 3  # each extra dataset's train rows are seen this many times per epoch
    modality_dropout: float = 0.1
    class_weights: bool = True
    augment: bool = True
    max_sad_as_happy: float = 0.02  # cap on the validation sad -> happy rate for the offsets
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    classes: tuple[str, ...] = CLASSES
    command: str = ""
    augment_config: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"], d["classes"], d["extra"] = (list(self.inputs), list(self.classes),
                                                 list(self.extra))
        return d


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _tensors(split: FusionSplit, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in split.inputs.items()}


class EmaWeights:
    """An exponential moving average of a model's weights (and BatchNorm statistics), updated
    after every optimiser step; the average is what validation judges and the run keeps.
    The decay warms up as ``(1 + t) / (10 + t)`` so short runs are not judged on their start."""

    def __init__(self, model: FusionNet, decay: float) -> None:
        import copy

        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: FusionNet) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values(),
                                strict=True):
            if mine.dtype.is_floating_point:
                mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
            else:
                mine.copy_(theirs)

    def load(self, state: dict[str, torch.Tensor], steps: int) -> None:
        self.model.load_state_dict(state)
        self.steps = steps


def logits_of(model: FusionNet, inputs: dict[str, torch.Tensor], batch: int = 512) -> np.ndarray:
    return outputs_of(model, inputs, batch)[0]


@torch.no_grad()
def outputs_of(model: FusionNet, inputs: dict[str, torch.Tensor],
               batch: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
    """Main logits ``(n, k)`` and expression logits ``(n, 7)`` (None without that head)."""
    model.eval()
    n = len(next(iter(inputs.values())))
    main, fine = [], []
    for i in range(0, n, batch):
        logits, aux = model(**{k: v[i:i + batch] for k, v in inputs.items()})
        main.append(logits.float().cpu())
        if "fine" in aux:
            fine.append(aux["fine"].float().cpu())
    if not main:
        return np.zeros((0, model.dims.n_classes)), None
    return torch.cat(main).numpy(), torch.cat(fine).numpy() if fine else None


def report(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Metrics plus the robot's error rates: sad -> happy and happy -> sad."""
    pred = proba.argmax(1)
    m = classification_metrics(y, pred, classes, proba)
    sad, happy = classes.index("sad"), classes.index("happy")
    m["sad_as_happy"] = float((pred[y == sad] == happy).mean()) if (y == sad).any() else None
    m["happy_as_sad"] = float((pred[y == happy] == sad).mean()) if (y == happy).any() else None
    return m


def train_fusion(config: FusionConfig, out: str | os.PathLike, *, resume: bool = False,
                 log: Callable[[str], None] | None = None,
                 splits: dict[str, FusionSplit] | None = None,
                 teacher: FusionProbabilities | None = None) -> dict[str, Any]:
    """Train, calibrate, write the run folder; returns the checkpoint dict.

    ``splits`` (``train`` and ``val``) replaces reading ``config.dataset``; ``teacher`` (an
    ensemble's probabilities, :func:`.distill.batch_teacher`) takes ``config.teacher_weight``
    of each batch's targets, computed on the batch as the student sees it, augmented.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    out = Path(out)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(max(1, config.threads))
    splits = splits or training_splits(config)
    train, val = splits["train"], splits["val"]
    if not len(train) or not len(val):
        from ...errors import InputError

        raise InputError(f"dataset has no detected train/val rows for preprocess "
                         f"{config.preprocess!r}")
    face_size = train.inputs["face"].shape[1] if "face" in train.inputs else 48
    has_fine = config.fine_weight > 0 and train.fine is not None and bool((train.fine >= 0).any())
    dims = FusionDimensions(inputs=tuple(config.inputs), n_classes=len(config.classes),
                            face_size=face_size, width=config.width, stem=config.stem,
                            dropout=config.dropout,
                            n_fine=len(FINE_CLASSES) if has_fine else 0,
                            fine_hidden=128 if has_fine else 0)
    model = FusionNet(dims)
    stats, lm_perm = {}, None
    for name in ("landmarks", "blendshapes"):
        if name in train.inputs:
            x = torch.from_numpy(train.inputs[name]).float()
            stats[name] = (x.mean(0), x.std(0))
    model.set_stats(stats)
    if config.init:
        fresh = start_from(model, config.init)
        log(f"starting from the weights of {config.init}"
            + (f" (another stem: {', '.join(fresh)} start fresh)" if fresh else ""))
    if "landmarks" in train.inputs:
        lm_perm = torch.from_numpy(landmark_mirror(train.inputs["landmarks"].mean(0))).to(device)
    bs_perm = torch.from_numpy(blendshape_mirror()).to(device)
    aug_cfg = AugmentConfig(**config.augment_config) if config.augment else AugmentConfig.off()
    model.modality_dropout = config.modality_dropout
    # NHWC: oneDNN's depthwise and batch-norm kernels train ~1.5x faster on the CPU this way;
    # not below width 8: there its strided 1x1 backward corrupts memory (torch 2.13, AVX2)
    model.to(device, memory_format=torch.channels_last if dims.width >= MIN_NHWC_WIDTH
             else torch.contiguous_format)
    if teacher is not None:
        teacher.to(device, memory_format=torch.channels_last).eval()

    weight = torch.from_numpy(class_weights(train.y, len(config.classes))).to(device) \
        if config.class_weights else None
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr,
                              weight_decay=config.weight_decay)
    # whole batches only: a last batch of a few rows would skew BatchNorm's running stats
    steps_per_epoch = max(1, len(train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=0.2)
    xt, tt = _tensors(train, device), torch.from_numpy(train.target).to(device)
    ft = torch.from_numpy(train.fine).to(device) if has_fine else None
    fsoft = (torch.from_numpy(train.fine_target).to(device)
             if has_fine and train.fine_target is not None else None)
    fine_w = fine_class_weights(train.fine, config.fine_balance).to(device) if has_fine else None
    xv = _tensors(val, device)
    gen = torch.Generator().manual_seed(config.seed)
    hard = hard_examples(train, config.classes)
    sw = torch.from_numpy(1.0 + config.hard_weight * hard.astype(np.float32)).to(device)
    costs = torch.from_numpy(cost_matrix(config.classes)).to(device)
    ema = EmaWeights(model, config.ema) if config.ema > 0 else None

    start, best, best_state, history, before = 0, -math.inf, None, [], 0.0
    if resume and (out / STATE).is_file():
        state = torch.load(out / STATE, map_location=device, weights_only=False)
        planned = state["schedule"].get("total_steps")
        if planned != schedule.total_steps:  # the one-cycle schedule cannot be stretched
            from ...errors import InputError

            raise InputError(f"{out / STATE} is from a run of {planned} steps, this one has "
                             f"{schedule.total_steps} ({config.epochs} epochs x "
                             f"{steps_per_epoch}): resume with the same --epochs, "
                             "--batch-size and data, or start a new --out")
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        schedule.load_state_dict(state["schedule"])
        gen.set_state(state["gen"])
        start, best, best_state, history = (state["epoch"], state["best"],
                                            state["best_state"], state["history"])
        before = float(state.get("elapsed", 0.0))
        if ema is not None and state.get("ema") is not None:
            ema.load(state["ema"], schedule.last_epoch)
        log(f"resumed {out} at epoch {start}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"fusion [{', '.join(config.inputs)}]: {n_params} parameters, train {len(train)} "
        f"({int(hard.sum())} hard), val {len(val)}, {device}")

    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=gen).to(device)
        total, seen = 0.0, 0
        for i in range(0, steps_per_epoch * config.batch_size, config.batch_size):
            idx = order[i:i + config.batch_size]
            batch = augment({k: v[idx] for k, v in xt.items()}, aug_cfg, gen, lm_perm, bs_perm)
            logits, aux = model(**batch)
            target, w = tt[idx], sw[idx]
            if teacher is not None:
                with torch.no_grad():
                    target = ((1.0 - config.teacher_weight) * target + config.teacher_weight
                              * teacher(*(batch[n] for n in teacher.names)))
            loss = _loss(logits, target, weight, config.smoothing, w, costs, config.cost_weight)
            for name, a in aux.items():
                if name != "fine":
                    loss = loss + config.aux_weight * _loss(a, target, weight, config.smoothing,
                                                            w)
                elif ft is not None and bool((known := ft[idx] >= 0).any()):
                    fine_target = (ft if fsoft is None else fsoft)[idx][known]
                    loss = loss + config.fine_weight * F.cross_entropy(
                        a[known], fine_target, weight=fine_w,
                        label_smoothing=config.smoothing)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
            schedule.step()
            if ema is not None:
                ema.update(model)
            total += loss.item() * len(idx)
            seen += len(idx)
        judged = ema.model if ema is not None else model
        logits = logits_of(judged, xv)
        acc, f1 = accuracy_and_macro_f1(val.y, logits.argmax(1), len(config.classes))
        row = {"epoch": epoch + 1, "lr": schedule.get_last_lr()[0],
               "train_loss": total / seen, "val_accuracy": acc, "val_macro_f1": f1,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        improved = acc + f1 > best
        if improved:
            best = acc + f1
            best_state = _stored(judged.state_dict())
        log(f"epoch {epoch + 1:3d}/{config.epochs}  loss {row['train_loss']:.4f}  "
            f"val acc {acc:.4f}  f1 {f1:.4f}  {row['seconds']:.0f}s{'  *' if improved else ''}")
        out.mkdir(parents=True, exist_ok=True)
        state = {"model": _stored(model.state_dict()), "optim": optim.state_dict(),
                 "schedule": schedule.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1,
                 "best": best, "best_state": best_state, "history": history,
                 "ema": _stored(ema.model.state_dict()) if ema is not None else None,
                 "elapsed": before + time.perf_counter() - started}
        with atomic_path(out / STATE) as tmp:
            torch.save(state, tmp)

    assert best_state is not None, "no epoch was trained"
    model.load_state_dict(best_state)
    model.to("cpu")
    logits, fine_logits = outputs_of(model, {k: v.cpu() for k, v in xv.items()})
    temperature = fit_temperature(logits, val.y)
    fine_extra = {}
    if fine_logits is not None and val.fine is not None and (known := val.fine >= 0).any():
        ft_val = fit_temperature(fine_logits[known], val.fine[known])
        fine_pred = fine_logits[known].argmax(1)
        acc7, f17 = accuracy_and_macro_f1(val.fine[known], fine_pred, len(FINE_CLASSES))
        fine_extra = {"fine_temperature": ft_val,
                      "val_expressions": {"accuracy": acc7, "macro_f1": f17,
                                          "rows": int(known.sum())}}
        log(f"expressions (7): val accuracy {acc7:.4f}, macro F1 {f17:.4f}")
    points = fit_points(logits / temperature, val.y, config.classes, config.max_sad_as_happy,
                        groups=val.source)
    offsets = points["balanced"]
    val_report = report(val.y, softmax(logits / temperature + offsets), config.classes)
    seconds = before + time.perf_counter() - started
    ckpt = {"dims": dims.to_dict(), "state_dict": best_state, "classes": list(config.classes),
            "temperature": temperature, "offsets": offsets.tolist(), "config": config.to_dict(),
            "operating_points": relative_points(points, config.classes),
            "fine_classes": list(FINE_CLASSES) if has_fine else [],
            "fine_temperature": fine_extra.get("fine_temperature"),
            "metrics": {"val": val_report, "epochs": len(history), "train_seconds": seconds,
                        "parameters": n_params, "train_rows": len(train), "val_rows": len(val),
                        "device": str(device),
                        **({"val_expressions": fine_extra["val_expressions"]}
                           if fine_extra else {}),
                        "data": provenance(config.dataset) if config.dataset else {}}}
    rate = val_report["sad_as_happy"]  # None when val holds no sad face
    log(f"temperature {temperature:.3f}; offsets {np.round(offsets, 2).tolist()}; val accuracy "
        f"{val_report['accuracy']:.4f}, macro F1 {val_report['macro_f1']:.4f}, sad recall "
        f"{val_report['per_class']['sad']['recall']:.3f}, sad->happy "
        f"{'n/a' if rate is None else f'{rate:.3f}'}; {seconds:.0f}s")
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save(ckpt, tmp)
    write_text(pd.DataFrame(history).to_csv(index=False), out / "history.csv")
    write_text(json.dumps({"config": ckpt["config"], **ckpt["metrics"]}, indent=1) + "\n",
               out / "metrics.json")
    return ckpt


def _stored(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of a state dict in the default (contiguous) layout, whatever the memory
    format trained in: checkpoints read the same as before and views of them work."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for k, v in state.items()}


def training_splits(config: FusionConfig,
                    splits: tuple[str, ...] = ("train", "val")) -> dict[str, FusionSplit]:
    """Train and val rows of ``config.dataset`` plus those of each ``config.extra`` dataset
    (its only preprocess variant; train rows repeated ``extra_repeat`` times)."""
    parts = [load_splits(config.dataset, config.inputs, preprocess=config.preprocess,
                         classes=config.classes, ferplus=config.ferplus or None,
                         labels=config.labels, fine_labels=config.fine_labels,
                         splits=splits)]
    parts += [load_splits(extra, config.inputs, preprocess=None, classes=config.classes,
                          splits=splits) for extra in config.extra]
    repeats = [1] + [config.extra_repeat] * len(config.extra)
    return {split: merge_splits([p[split] for p in parts], repeats if split == "train" else None)
            for split in splits}


def start_from(model: FusionNet, init: str | os.PathLike) -> list[str]:
    """Load a trained run's weights (and its input statistics) into ``model`` of the same
    shape, or of another stem (then every layer of the same shape is taken); a clear error
    where the run is missing or of another shape. Returns the layers left fresh."""
    from ...errors import InputError

    path = Path(init)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"--init: no trained run at {init} (expected a run folder with "
                         f"{CHECKPOINT}, or the file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        theirs = {k: v for k, v in ckpt["dims"].items() if k != "stats"}
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the user's input
        raise InputError(f"--init: cannot read {path}: {exc}") from exc
    mine = model.dims.to_dict()
    differ = sorted(k for k in mine if theirs.get(k, "full" if k == "stem" else None) != mine[k])
    if differ and differ != ["stem"]:
        raise InputError(f"--init: {path} is a model of another shape ({', '.join(differ)} "
                         "differ): train with the same inputs, width and heads")
    state, own = ckpt["state_dict"], model.state_dict()
    if differ:
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(state, strict=not differ)
    return list(dict.fromkeys(k.rsplit(".", 1)[0] for k in own if k not in state))


def config_from_dict(d: dict[str, Any]) -> FusionConfig:
    """A stored ``FusionConfig.to_dict()`` back (keys this version lacks are ignored)."""
    known = {f for f in FusionConfig.__dataclass_fields__}
    d = {k: v for k, v in d.items() if k in known}
    for key in ("inputs", "classes", "extra"):
        if key in d:
            d[key] = tuple(d[key])
    return FusionConfig(**d)


def cost_matrix(classes: tuple[str, ...]) -> np.ndarray:
    """``COSTS`` as a (k, k) matrix over ``classes`` (rows: true class)."""
    m = np.zeros((len(classes), len(classes)), np.float32)
    for (true, pred), c in COSTS.items():
        if true in classes and pred in classes:
            m[classes.index(true), classes.index(pred)] = c
    return m


def fine_class_weights(fine: np.ndarray, power: float) -> torch.Tensor:
    """Per-emotion loss weights of the expression head: ``(mean count / count) ** power``
    over the rows with a known emotion (``fine >= 0``); all ones at ``power`` 0."""
    counts = np.bincount(fine[fine >= 0], minlength=len(FINE_CLASSES)).astype(np.float64)
    weights = (counts.mean() / np.maximum(counts, 1.0)) ** power
    return torch.tensor(weights, dtype=torch.float32)


def hard_examples(split: FusionSplit, classes: tuple[str, ...]) -> np.ndarray:
    """Rows a crop CNN confuses with a smile: non-happy faces whose mouth MediaPipe reads as
    smiling (mean ``mouthSmile*`` >= ``HARD_SMILE``: crying grimaces, angry or disgusted
    snarls), and sad faces with raised inner brows and a smile or shut eyes."""
    from ...blendshapes import BLENDSHAPE_NAMES

    if "blendshapes" not in split.inputs:
        return np.zeros(len(split), bool)
    bs = split.inputs["blendshapes"]
    col = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
    smile = bs[:, [col[n] for n in SMILE]].mean(1)
    blink = bs[:, [col["eyeBlinkLeft"], col["eyeBlinkRight"]]].mean(1)
    brow = bs[:, col["browInnerUp"]]
    not_happy = split.y != classes.index("happy")
    sad = split.y == classes.index("sad")
    return (not_happy & (smile >= HARD_SMILE)) | (sad & (brow >= 0.2) & (blink >= 0.5))


def _loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
          smoothing: float, sample_weight: torch.Tensor | None = None,
          costs: torch.Tensor | None = None, cost_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy against (soft) targets, class-weighted by the target's mass, each row
    weighted by ``sample_weight``; plus ``cost_weight`` x the expected cost of the prediction
    (``target @ costs`` . probabilities)."""
    k = logits.shape[1]
    smoothed = target * (1 - smoothing) + smoothing / k
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -(smoothed * logp)
    if weight is not None:
        nll = nll * weight
    per_row = nll.sum(1)
    if costs is not None and cost_weight > 0:
        per_row = per_row + cost_weight * ((target @ costs) * logp.exp()).sum(1)
    if sample_weight is not None:
        return (per_row * sample_weight).sum() / sample_weight.sum()
    return per_row.mean()


def load_fusion(path: str | os.PathLike) -> tuple[FusionNet, dict[str, Any]]:
    """A trained fusion model (eval mode, CPU) and its checkpoint dict."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    return FusionNet.from_checkpoint(ckpt), ckpt
