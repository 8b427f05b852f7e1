"""Persistent face ids: match each frame's boxes to the faces seen before (greedy IoU)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _center_distance(a: Box, b: Box) -> float:
    """Distance of the centres in units of the larger box side (0 = same centre)."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    scale = max(a[2], a[3], b[2], b[3], 1e-9)
    return (dx * dx + dy * dy) ** 0.5 / scale


@dataclass
class Track:
    """A face id with its last box and the time it was last seen."""

    face_id: int
    box: Box
    last_seen_s: float


class FaceTracker:
    """Assigns ids that persist while a face keeps overlapping its previous box.

    A detection joins the unmatched track it overlaps most (IoU >= ``min_iou``, or centres
    closer than ``max_center_distance`` box sides for fast motion); otherwise it starts a new
    id. A track unseen for more than ``forget_s`` seconds is dropped, so a face that returns
    later gets a new id (and its temporal filter starts afresh).
    """

    def __init__(self, forget_s: float = 1.0, min_iou: float = 0.2,
                 max_center_distance: float = 0.5) -> None:
        if not math.isfinite(forget_s) or forget_s < 0:
            raise ValueError(f"forget_s must be a finite number >= 0, not {forget_s}")
        self.forget_s = forget_s
        self.min_iou = min_iou
        self.max_center_distance = max_center_distance
        self.tracks: dict[int, Track] = {}
        self._next_id = 0

    def update(self, boxes: list[Box], timestamp_s: float) -> tuple[list[int], list[int]]:
        """Ids for ``boxes`` (same order) and the ids dropped at this time."""
        dropped = [i for i, t in self.tracks.items() if timestamp_s - t.last_seen_s > self.forget_s]
        for i in dropped:
            del self.tracks[i]
        pairs = []
        for d, box in enumerate(boxes):
            for t in self.tracks.values():
                overlap, distance = iou(box, t.box), _center_distance(box, t.box)
                if overlap >= self.min_iou or distance <= self.max_center_distance:
                    pairs.append((overlap, -distance, d, t.face_id))
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for *_, d, face_id in sorted(pairs, reverse=True):
            if ids[d] is None and face_id not in taken:
                ids[d] = face_id
                taken.add(face_id)
        for d, box in enumerate(boxes):
            if ids[d] is None:
                ids[d] = self._next_id
                self._next_id += 1
            self.tracks[ids[d]] = Track(ids[d], box, timestamp_s)
        return ids, dropped  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget all faces; ids restart at 0."""
        self.tracks.clear()
        self._next_id = 0
