"""Hyper-parameter search with Optuna: TPE sampler, median pruning, SQLite storage (resumable).

Objective: validation macro F1 of each trial's best-validation-loss weights (losses of
different kinds are not comparable, F1 is). Trials use the same data and seed as ``train``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..atomic import write_text
from .train import Prepared, TrainConfig, prepare, train


def suggest(trial, base: TrainConfig) -> TrainConfig:
    """The search space: optimiser, architecture, loss and class weights."""
    kind = base.kind
    return replace(
        base,
        lr=trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        layers=trial.suggest_int("layers", 1, 4 if kind == "lstm" else 3),
        hidden=trial.suggest_categorical("hidden", [16, 24, 32, 48] if kind == "lstm"
                                         else [32, 64, 128]),
        activation=trial.suggest_categorical("activation", ["relu", "gelu", "tanh"])
        if kind == "dense" else base.activation,
        dropout=trial.suggest_float("dropout", 0.0, 0.4),
        loss=trial.suggest_categorical("loss", ["cce", "focal"]),
        class_weights=trial.suggest_categorical("class_weights", [True, False]),
        smoothing=trial.suggest_float("smoothing", 0.0, 0.15),
    )


def tune(
    base: TrainConfig,
    out: str | os.PathLike,
    trials: int,
    *,
    study_name: str = "emotion",
    timeout: float | None = None,
) -> dict:
    """Run (or resume) ``trials`` more trials; writes ``study.db`` and ``best.json`` in ``out``."""
    import optuna

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4),
    )
    data: Prepared = prepare(base)

    def objective(trial) -> float:
        config = suggest(trial, base)

        def report(epoch: int, row: dict[str, float]) -> None:
            trial.report(row["val_macro_f1"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(config, data=data, on_epoch=report, log=lambda _line: None)
        val = result.checkpoint.metrics["val"]
        trial.set_user_attr("val_accuracy", val["accuracy"])
        trial.set_user_attr("epochs", len(result.history))
        trial.set_user_attr("seconds", result.seconds)
        print(f"trial {trial.number}: val macro F1 {val['macro_f1']:.4f}, accuracy "
              f"{val['accuracy']:.4f}, {result.seconds:.0f}s, {trial.params}",
              file=sys.stderr, flush=True)
        return val["macro_f1"]

    study.optimize(objective, n_trials=trials, timeout=timeout)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return {"trials": len(study.trials), "best": None}
    best = {
        "trials": len(study.trials),
        "completed": len(done),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "best_user_attrs": study.best_trial.user_attrs,
    }
    write_text(json.dumps(best, indent=1) + "\n", out / "best.json")
    return best
