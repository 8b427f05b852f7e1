"""Distillation: a trained ensemble's calibrated probabilities as (part of) a run's targets.

One student graph that keeps most of an ensemble's gain costs one member's time per face
(issue 21). The teacher sees each training face once, un-augmented, and its 3-class
probabilities are mixed into the soft targets the student's main head learns from; or, with
``consistent_teacher`` (:func:`batch_teacher`), it reads every training batch as the student
sees it, augmented, so both judge the same pixels (function matching: Beyer et al., "Knowledge
distillation: A good teacher is patient and consistent", CVPR 2022), at one teacher pass
per step.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from .data import FusionSplit, fine_onehot
from .ensemble import folder_checkpoint, member_probabilities
from .model import FusionNet, FusionProbabilities, checkpoint_members
from .train import CHECKPOINT, FusionConfig


def teacher_members(path: str | os.PathLike) -> list[tuple[FusionNet, dict]]:
    """The members of an ensemble (``ensemble.pt`` or its folder) or one run (``fusion.pt``
    or its folder), each as (model, checkpoint)."""
    path = Path(path)
    if path.is_dir():
        path = folder_checkpoint(path) or path / CHECKPOINT
    if not path.is_file():
        raise InputError(f"--teacher: no ensemble or trained run at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return [(FusionNet.from_checkpoint(m), m) for m in checkpoint_members(ckpt)]
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        raise InputError(f"--teacher: cannot read {path}: {exc}") from exc


def teacher_probabilities(path: str | os.PathLike, split: FusionSplit
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """The teacher's mean calibrated 3-class probabilities for every row of ``split``, and
    its mean 7-expression probabilities (None unless every member has that view)."""
    inputs = {k: torch.from_numpy(np.require(v, requirements="W")) for k, v in split.inputs.items()}
    views = [member_probabilities(model, ckpt, inputs) for model, ckpt in teacher_members(path)]
    probs = np.mean([p for p, _ in views], axis=0).astype(np.float32)
    if any(e is None for _, e in views):
        return probs, None
    return probs, np.mean([e for _, e in views], axis=0).astype(np.float32)


def batch_teacher(path: str | os.PathLike, inputs: tuple[str, ...]) -> FusionProbabilities:
    """The teacher as one module: a batch's inputs (in its ``names`` order) -> its members'
    mean calibrated 3-class probabilities; for a student with ``inputs``."""
    members = teacher_members(path)
    teacher = FusionProbabilities([m for m, _ in members],
                                  [float(ckpt["temperature"]) for _, ckpt in members]).eval()
    if missing := [n for n in teacher.names if n not in inputs]:
        raise InputError(f"--consistent-teacher: the teacher reads {', '.join(missing)}, "
                         "which the student's data lacks")
    return teacher


def distilled(split: FusionSplit, teacher: np.ndarray, weight: float) -> FusionSplit:
    """``split`` with targets ``(1 - weight) * target + weight * teacher``."""
    if teacher.shape != split.target.shape:
        raise InputError(f"--teacher gives {teacher.shape[1]} classes per face, the data "
                         f"{split.target.shape[1]}")
    mixed = (1.0 - weight) * split.target + weight * teacher
    return replace(split, target=mixed.astype(np.float32))


def teacher_split(config: FusionConfig, train: FusionSplit) -> FusionSplit:
    """``train`` with the run's teachers in its targets.

    ``--teacher`` gives 3-class probabilities; ``--peer-teacher fer`` runs fer's CNN on the
    crops (:mod:`.peer`): its seven probabilities, folded to the classes, take
    ``peer_weight`` of the teacher's share (all of it without ``--teacher``), and they
    teach the expression head: ``(1 - peer_weight)`` label + ``peer_weight`` peer. With
    ``teacher_expressions`` the teacher's seven take ``teacher_weight`` of that head's targets.
    A ``consistent_teacher`` is left out here: the training loop asks it batch by batch.
    """
    teacher, seven_t = (teacher_probabilities(config.teacher, train)
                        if config.teacher and not config.consistent_teacher else (None, None))
    if config.teacher_expressions and train.fine is not None:
        if seven_t is None:
            raise InputError(f"--teacher-expressions: the teacher {config.teacher or '(none)'} "
                             "has no expression view")
        w = config.teacher_weight
        train = replace(train, fine_target=((1.0 - w) * _expression_targets(train) + w * seven_t)
                        .astype(np.float32))
    if config.peer_teacher:
        from .peer import fold, peer_expressions

        if "face" not in train.inputs:
            raise InputError("--peer-teacher needs a model with the face crop input")
        seven = peer_expressions(train.inputs["face"], config.peer_python)
        folded = fold(seven, tuple(config.classes))
        w = config.peer_weight
        teacher = folded if teacher is None else (1.0 - w) * teacher + w * folded
        if train.fine is not None:
            # fer answers in FER2013's order, the expression head's too (both fer2013.EMOTIONS);
            # rows without an expression label (-1) are left out of that loss anyway
            train = replace(train, fine_target=((1.0 - w) * _expression_targets(train) + w * seven)
                            .astype(np.float32))
    return train if teacher is None else distilled(train, teacher, config.teacher_weight)


def _expression_targets(split: FusionSplit) -> np.ndarray:
    """The expression head's targets so far: its soft ones, else the one-hot labels."""
    return split.fine_target if split.fine_target is not None else fine_onehot(split.fine)
