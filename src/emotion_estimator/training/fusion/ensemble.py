"""Several trained fusion runs (seeds) -> one ensemble checkpoint, exported as one graph.

The members' calibrated probabilities are averaged (each through its own temperature), and
the ensemble's operating points are fitted on the shared validation split like a single run's
(:mod:`.operating_points`). The expression view averages the members' 7-way heads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...atomic import atomic_path
from ...errors import InputError
from ..metrics import accuracy_and_macro_f1, softmax
from ..operating_points import fit_points, relative_points
from .data import FINE_CLASSES, FusionSplit
from .train import (
    CHECKPOINT,
    config_from_dict,
    load_fusion,
    outputs_of,
    report,
    training_splits,
)

ENSEMBLE = "ensemble.pt"
SAME = ("dataset", "inputs", "preprocess", "labels", "extra", "classes")


def folder_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a fusion run folder holds: its ensemble, else its run; None: neither."""
    return next((folder / n for n in (ENSEMBLE, CHECKPOINT) if (folder / n).is_file()), None)


def member_probabilities(model: Any, ckpt: dict[str, Any],
                         inputs: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
    """One member's calibrated 3-class and 7-expression probabilities."""
    logits, fine = outputs_of(model, inputs)
    probs = softmax(logits / ckpt["temperature"])
    expr = softmax(fine / ckpt["fine_temperature"]) if (
        fine is not None and ckpt.get("fine_temperature")) else None
    return probs, expr


def combine_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 max_sad_as_happy: float | None = None,
                 log: Callable[[str], None] | None = None,
                 val: FusionSplit | None = None) -> dict[str, Any]:
    """Average ``runs`` (each a folder with ``fusion.pt``) into ``out/ensemble.pt``; ``val``
    replaces reading the runs' validation split from their dataset."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if len(runs) < 2:
        raise InputError("an ensemble needs at least two runs")
    members = [load_fusion(Path(r) / CHECKPOINT) for r in runs]
    configs = [m[1]["config"] for m in members]
    for c in configs[1:]:
        differ = [k for k in SAME if c.get(k) != configs[0].get(k)]
        if differ:
            raise InputError(f"runs to combine must share their data and inputs; they differ "
                             f"in {', '.join(differ)}")
    config = config_from_dict(configs[0])
    classes = tuple(config.classes)
    cap = config.max_sad_as_happy if max_sad_as_happy is None else max_sad_as_happy
    val = val if val is not None else training_splits(config, ("val",))["val"]
    inputs = {k: torch.from_numpy(v) for k, v in val.inputs.items()}
    probs, exprs, member_reports = [], [], []
    for model, ckpt in members:
        p, e = member_probabilities(model, ckpt, inputs)
        probs.append(p)
        exprs.append(e)
        member_reports.append(report(val.y, softmax(np.log(p) + ckpt["offsets"]), classes))
    logp = np.log(np.clip(np.mean(probs, axis=0), 1e-7, None))
    points = fit_points(logp, val.y, classes, cap, groups=val.source)
    val_report = report(val.y, softmax(logp + points["balanced"]), classes)
    metrics: dict[str, Any] = {"val": val_report, "members_val": member_reports,
                               "runs": [str(r) for r in runs],
                               "train_seconds": sum(m[1]["metrics"]["train_seconds"]
                                                    for m in members),
                               "parameters": sum(m[1]["metrics"]["parameters"]
                                                 for m in members),
                               "data": members[0][1]["metrics"].get("data", {})}
    if all(e is not None for e in exprs) and val.fine is not None and (val.fine >= 0).any():
        known = val.fine >= 0
        pred = np.mean(exprs, axis=0)[known].argmax(1)
        acc, f1 = accuracy_and_macro_f1(val.fine[known], pred, len(FINE_CLASSES))
        metrics["val_expressions"] = {"accuracy": acc, "macro_f1": f1, "rows": int(known.sum())}
        log(f"ensemble expressions (7): val accuracy {acc:.4f}, macro F1 {f1:.4f}")
    sad = val_report["per_class"]["sad"]["recall"]
    log(f"ensemble of {len(members)}: val accuracy {val_report['accuracy']:.4f}, macro F1 "
        f"{val_report['macro_f1']:.4f}, sad recall {sad:.3f}, sad->happy "
        f"{val_report['sad_as_happy']}")
    ckpt = {"members": [m[1] for m in members], "classes": list(classes),
            "offsets": points["balanced"].tolist(),
            "operating_points": relative_points(points, classes),
            "fine_classes": members[0][1].get("fine_classes", []),
            "config": {**configs[0], "seeds": [c["seed"] for c in configs],
                       "member_commands": [c.get("command", "") for c in configs]},
            "metrics": metrics}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / ENSEMBLE) as tmp:
        torch.save(ckpt, tmp)
    return ckpt
