"""Per-frame results -> what REP-155 (ROS4HRI) publishes, independent of rclpy and rosbags.

For each :class:`~emotion_estimator.estimator.FrameResult` :class:`Rep155` returns an
:class:`Update`: the ids of ``<ns>/tracked``, and per face the normalised ROI of
``<ns>/<id>/roi`` and the expression of ``<ns>/<id>/expression``. A face *appears* (its topics
are created) on the first frame its temporal filter has decided a label, and is *retired*
(topics removed, id gone from ``tracked``) on the frame the tracker drops it. Undecided faces
publish nothing. Change events ("face_0 became sad") follow the serve front end's rule: a
face's first decided label is its start, not a change.

Mapping (see the README's REP-155 table): with a model that has the seven-expression view,
``expression`` is the filtered expression (neutral, happy, sad, angry, surprised, disgusted,
and ``scared`` for our fearful), ``confidence`` its filtered probability, ``valence`` and
``arousal`` the estimate :mod:`emotion_estimator.expressions` makes; without the view,
``expression`` is the 3-class label (``happy``, ``sad``, ``unknown``), ``confidence`` its
filtered probability and ``valence``/``arousal`` are NaN. The ROI's ``c`` is 1.0 (MediaPipe
gives no per-face score; faces under the detection threshold are not reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..estimator import FaceResult, FrameResult
from ..serve.messages import EventDetector
from . import face_key

DEFAULT_NAMESPACE = "/humans/faces"
NOT_PROVIDED = math.nan  # valence / arousal the model does not give
HRI_NAMES = {"fearful": "scared"}  # our expression names that hri_msgs spells otherwise


@dataclass(frozen=True)
class Roi:
    """``hri_msgs/NormalizedRegionOfInterest2D`` fields of one face."""

    face: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    c: float = 1.0


@dataclass(frozen=True)
class Expression:
    """``hri_msgs/Expression`` fields of one face."""

    face: str
    expression: str
    confidence: float
    valence: float = NOT_PROVIDED
    arousal: float = NOT_PROVIDED


@dataclass
class Update:
    """What one frame publishes (``tracked`` after the frame's appearances and retirements)."""

    tracked: list[str]
    appeared: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    rois: list[Roi] = field(default_factory=list)
    expressions: list[Expression] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


def topic(namespace: str, face: str, leaf: str) -> str:
    """``<namespace>/<face>/<leaf>``, e.g. ``/humans/faces/face_0/expression``."""
    return f"{namespace.rstrip('/')}/{face}/{leaf}"


def normalised_roi(face: FaceResult, width: int, height: int) -> Roi:
    """The face box as fractions of the image, clipped to [0, 1]."""
    x, y, w, h = face.box

    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return Roi(face_key(face.face_id), clip(x / width), clip(y / height),
               clip((x + w) / width), clip((y + h) / height))


def expression_of(face: FaceResult) -> Expression:
    """The expression message fields of a decided face: the seven-expression view where the
    model has it (``fearful`` is REP-155's ``scared``), else the 3-class label."""
    key = face_key(face.face_id)
    if face.expression is not None:
        p = float(face.expression_probabilities.get(face.expression, 0.0))
        return Expression(key, HRI_NAMES.get(face.expression, face.expression), p,
                          NOT_PROVIDED if face.valence is None else float(face.valence),
                          NOT_PROVIDED if face.arousal is None else float(face.arousal))
    label = face.label or "unknown"
    return Expression(key, label, float(face.probabilities.get(label, 0.0)))


class Rep155:
    """Face ids announced so far; one call per frame result, in order."""

    def __init__(self) -> None:
        self.announced: set[int] = set()
        self._events = EventDetector()

    @property
    def tracked(self) -> list[str]:
        return [face_key(i) for i in sorted(self.announced)]

    def __call__(self, result: FrameResult, width: int, height: int) -> Update:
        update = Update(tracked=[])
        for face_id in result.dropped:
            if face_id in self.announced:
                self.announced.discard(face_id)
                update.retired.append(face_key(face_id))
        for face in result.faces:
            if face.label is None or not face.decided:
                continue
            if face.face_id not in self.announced:
                self.announced.add(face.face_id)
                update.appeared.append(face_key(face.face_id))
            update.rois.append(normalised_roi(face, width, height))
            update.expressions.append(expression_of(face))
        for event in self._events(result, ""):
            update.changes.append({"face_id": face_key(event["face_id"]), "from": event["from"],
                                   "to": event["to"],
                                   "probabilities": event["probabilities"]})
        update.tracked = self.tracked
        return update

    def retire_all(self) -> Update:
        """Everything announced, retired (the node is stopping)."""
        update = Update(tracked=[], retired=self.tracked)
        self.announced.clear()
        return update
