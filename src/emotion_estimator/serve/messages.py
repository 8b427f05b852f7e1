"""The JSON messages of the WebSocket endpoints, and change events per face.

``frame`` (one per analysed frame; the row fields with the faces grouped)::

    {"type": "frame", "source": "camera 0", "frame": 812, "timestamp_s": 27.07,
     "capture_time": 1764110000.123, "latency_ms": 21.4, "dropped_frames": 3,
     "face_detected": true,
     "faces": [{"face_id": 0, "x": 212.5, "y": 80.1, "w": 190.0, "h": 190.0,
                "label": "happy", "decided": true,
                "p_happy": 0.91, "p_sad": 0.02, "p_unknown": 0.07,
                "expression": "happy", "expr_neutral": 0.05, "expr_happy": 0.9, ...,
                "valence": 0.74, "arousal": 0.46}]}

(the expression view's keys only for a model that has it)

``event`` (a face's label changed; never for a new face's first decision)::

    {"type": "event", "source": "camera 0", "face_id": 0, "from": "happy", "to": "sad",
     "frame": 840, "timestamp_s": 28.0, "capture_time": 1764110000.99,
     "probabilities": {"happy": 0.2, "sad": 0.7, "unknown": 0.1}, "expression": "sad"}

``capture_time`` (Unix seconds) and ``latency_ms`` (capture -> result) are present for live
sources; ``dropped_frames`` counts the source's newest-frame drops so far.
"""

from __future__ import annotations

import json
from typing import Any

from ..estimator import FrameResult
from ..live import LiveFrame

_FRAME_KEYS = ("frame", "timestamp_s", "face_detected")


def frame_message(result: FrameResult, source: str, frame: LiveFrame | None = None,
                  latency_ms: float | None = None, dropped: int = 0) -> dict[str, Any]:
    """The ``frame`` message of one result."""
    msg: dict[str, Any] = {"type": "frame", "source": source, "frame": result.frame,
                           "timestamp_s": round(result.timestamp_s, 6)}
    if frame is not None:
        msg["capture_time"] = round(frame.wall, 6)
    if latency_ms is not None:
        msg["latency_ms"] = round(latency_ms, 2)
    msg["dropped_frames"] = dropped
    msg["face_detected"] = bool(result.faces)
    faces = []
    for face, row in zip(result.faces, result.rows() if result.faces else [], strict=True):
        faces.append({**{k: v for k, v in row.items() if k not in _FRAME_KEYS},
                      "decided": face.decided})
    msg["faces"] = faces
    return msg


class EventDetector:
    """Label changes per face id; a face's first decided label is its start, not a change.

    An undecided face (``FaceResult.decided`` false) reads ``unknown`` without having chosen
    it, so it is skipped.
    """

    def __init__(self) -> None:
        self.labels: dict[int, str] = {}

    def __call__(self, result: FrameResult, source: str,
                 frame: LiveFrame | None = None) -> list[dict[str, Any]]:
        for face_id in result.dropped:
            self.labels.pop(face_id, None)
        events = []
        for face in result.faces:
            if face.label is None or not face.decided:
                continue
            before = self.labels.get(face.face_id)
            self.labels[face.face_id] = face.label
            if before is None or before == face.label:
                continue
            event: dict[str, Any] = {
                "type": "event", "source": source, "face_id": face.face_id, "from": before,
                "to": face.label, "frame": result.frame,
                "timestamp_s": round(result.timestamp_s, 6)}
            if frame is not None:
                event["capture_time"] = round(frame.wall, 6)
            event["probabilities"] = {c: round(p, 5) for c, p in face.probabilities.items()}
            if face.expression is not None:
                event["expression"] = face.expression
            events.append(event)
        return events


def status_message(source: str, state: str, error: str | None = None) -> dict[str, Any]:
    """The ``status`` message sent to every client when the live source failed or ended::

        {"type": "status", "source": "camera 0", "state": "failed", "error": "..."}
    """
    msg: dict[str, Any] = {"type": "status", "source": source, "state": state}
    if error:
        msg["error"] = error
    return msg


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
