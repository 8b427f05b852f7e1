"""The paper's ablations (§4) as one table: blendshapes, model kind, loss, class weights.

Every variant changes one thing from the base configuration, is trained with the same seed,
exported to ONNX and evaluated on the test split. Finished variants are skipped on a re-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from .train import TrainConfig, train

# The paper reports numbers only for its final model (27 blendshapes, LSTM, CCE, no weights).
PAPER = "0.7199 / 0.6298"
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": ({}, ""),
    "paper's 27 blendshapes": ({"blendshapes": "paper27"}, f"{PAPER} (27 = the paper's model)"),
    "all 52 blendshapes": ({"blendshapes": "all"}, "'same accuracy and F1' as 27 (§4.1)"),
    "dense": ({"kind": "dense", "hidden": 64}, "good metrics, unstable on video (§4.2)"),
    "dense + all 52": ({"kind": "dense", "hidden": 64, "blendshapes": "all"}, ""),
    "mse loss": ({"loss": "mse"}, "used early, replaced by CCE (§4.3)"),
    "focal loss": ({"loss": "focal"}, "suggested, not run (§4.3)"),
    "no class weights": ({"class_weights": False}, f"{PAPER} (the paper's setting)"),
}


def latency_ms(classifier, repeats: int = 2000) -> float:
    """Median milliseconds of one ``predict_proba`` call at batch 1."""
    x = np.random.default_rng(0).random((1, 52), dtype=np.float32)
    for _ in range(50):
        classifier.predict_proba(x)
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        classifier.predict_proba(x)
        times[i] = time.perf_counter() - t0
    return float(np.median(times) * 1e3)


def run_variant(name: str, config: TrainConfig, frame: pd.DataFrame, out: Path) -> dict:
    from ..classifier import EmotionClassifier
    from .evaluate import evaluate_frame
    from .export import export

    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    result = train(config, out, frame=frame, resume=True)
    meta = export(result.checkpoint, out / "model.onnx")
    clf = EmotionClassifier.load(out / "model.onnx")
    row = {"variant": name, "parameters": result.checkpoint.metrics["parameters"],
           "onnx_bytes": meta["onnx_bytes"], "latency_ms": latency_ms(clf),
           "train_seconds": round(result.seconds, 1), "epochs": len(result.history),
           "val_macro_f1": result.checkpoint.metrics["val"]["macro_f1"]}
    for pre in config.preprocess:
        rep = evaluate_frame(clf.predict_proba, clf.classes, frame, "test", pre)
        row[f"test_{pre}_accuracy"] = rep["detected"]["accuracy"]
        row[f"test_{pre}_macro_f1"] = rep["detected"]["macro_f1"]
        row[f"test_{pre}_sad_called_happy"] = rep.get("sad_called_happy")
    write_text(json.dumps(row, indent=1) + "\n", done)
    return row


def ablate(
    base: TrainConfig, out: str | os.PathLike, only: list[str] | None = None
) -> pd.DataFrame:
    """Train every variant (or ``only`` these), write ``ablation.csv`` and ``ablation.md``."""
    from .data import read_dataset

    out = Path(out)
    frame = read_dataset(base.dataset)
    rows = []
    for name, (change, paper) in VARIANTS.items():
        if only and name not in only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        folder = out / name.replace(" ", "_").replace("'", "")
        row = run_variant(name, replace(base, **change), frame, folder)
        rows.append({**row, "paper (acc / F1)": paper})
    table = pd.DataFrame(rows)
    write_text(table.to_csv(index=False), out / "ablation.csv")
    write_text(to_markdown(table) + "\n", out / "ablation.md")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub table (no tabulate dependency)."""
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)
