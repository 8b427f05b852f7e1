"""Temporal filters on per-frame class probabilities: stable labels on video.

Every filter takes ``update(p, timestamp_s) -> (probabilities, label index)`` once per frame
for one face. Parameters are in seconds, so a filter behaves the same at 10 or 60 fps, and a
long gap between updates lets the evidence of the new frame dominate.

- ``none``: the classifier's output as is (label = argmax).
- ``ema``: exponential moving average with time constant ``time_constant_s``, plus hysteresis:
  the label changes only when another class has led the current one by ``margin`` for at
  least ``hold_s`` seconds (then to the class leading at that moment).
- ``hmm``: forward filter of a hidden Markov chain over the classes with a sticky transition
  matrix (mean dwell time ``dwell_s``; a continuous-time chain, exact for any frame gap) and the
  classifier's probabilities as the likelihood, weighted by the time the frame stands for
  (``dt / evidence_s``, at most 1), so evidence accumulates per second, not per frame; the
  label follows the most probable class once its belief leads by ``margin``.

A new face starts undecided (label index :data:`UNDECIDED`, -1): ``ema`` and ``hmm`` give it
its first label only once one class has led all others by the filter's margin for its hold
time (``hold_s``; ``decide_s`` for ``hmm``), so a face is never opened with one frame's argmax
that the hysteresis would then hold. ``FrameAnalyzer`` names the undecided index
``classes[-1]``, which is ``unknown`` in the shipped models. ``none`` decides at once.

Errors cost differently: a robot that hears "happy" while a person cries does harm, one that
is slow to notice a smile does not. ``costs`` (:data:`ROBOT_COSTS` by class name, made into
indices by :func:`transition_costs`) ask more evidence for some label changes: an extra margin
and an extra hold time for ``(from, to)``, where ``from`` may be :data:`UNDECIDED` (a face's
first label). By default entering ``happy`` from ``sad`` needs +0.2 margin and +0.25 s, and
a face's first label ``happy`` +0.1 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

SMOOTHING = ("ema", "hmm", "none")
UNDECIDED = -1  # the label index of a face no class has yet won
# (from, to) by class name (None: undecided) -> (extra margin, extra hold in s)
ROBOT_COSTS: dict[tuple[str | None, str], tuple[float, float]] = {
    ("sad", "happy"): (0.2, 0.25), (None, "happy"): (0.0, 0.1)}
Costs = dict[tuple[int, int], tuple[float, float]]


def transition_costs(classes: Sequence[str],
                     costs: Mapping[tuple[str | None, str], tuple[float, float]] = ROBOT_COSTS,
                     ) -> Costs:
    """``costs`` by class name -> by index (pairs naming absent classes are left out)."""
    index = {c: i for i, c in enumerate(classes)}
    return {(UNDECIDED if a is None else index[a], index[b]): v for (a, b), v in costs.items()
            if (a is None or a in index) and b in index}


def _lead(x: np.ndarray) -> tuple[int, float]:
    """The leading class and its lead over the runner-up."""
    order = np.argsort(x)
    return int(order[-1]), float(x[order[-1]] - x[order[-2]])


class TemporalFilter:
    """Base class: the unfiltered classifier output."""

    def __init__(self, n_classes: int, costs: Costs | None = None) -> None:
        if n_classes < 2:
            raise ValueError("a filter needs at least two classes")
        self.n_classes = n_classes
        self.costs: Costs = dict(costs or {})
        self.reset()

    def _cost(self, to: int) -> tuple[float, float]:
        """Extra (margin, hold) for a change from the current label to ``to``."""
        return self.costs.get((self.label, to), (0.0, 0.0))

    def reset(self) -> None:
        """Forget all state (a new face)."""
        self.last_s: float | None = None
        self.label = UNDECIDED

    @property
    def decided(self) -> bool:
        """Whether the face has a label of its own yet (not :data:`UNDECIDED`)."""
        return self.label != UNDECIDED

    def _dt(self, timestamp_s: float) -> float:
        dt = 0.0 if self.last_s is None else max(timestamp_s - self.last_s, 0.0)
        self.last_s = timestamp_s
        return dt

    def update(self, p: np.ndarray, timestamp_s: float) -> tuple[np.ndarray, int]:
        """Filtered probabilities and the label index after the frame at ``timestamp_s``."""
        self._dt(timestamp_s)
        p = np.asarray(p, dtype=np.float64)
        self.label = int(p.argmax())
        return p, self.label


class EmaFilter(TemporalFilter):
    """EMA of the probabilities (time constant in s) with a margin-and-hold hysteresis."""

    def __init__(self, n_classes: int, time_constant_s: float = 0.08, margin: float = 0.2,
                 hold_s: float = 0.05, costs: Costs | None = None) -> None:
        if time_constant_s < 0 or hold_s < 0 or margin < 0:
            raise ValueError("time_constant_s, margin and hold_s must be >= 0")
        self.time_constant_s = time_constant_s
        self.margin = margin
        self.hold_s = hold_s
        super().__init__(n_classes, costs)

    def reset(self) -> None:
        super().reset()
        self.state: np.ndarray | None = None
        self._beaten_since: float | None = None  # since when a class leads by the margin

    def update(self, p: np.ndarray, timestamp_s: float) -> tuple[np.ndarray, int]:
        p = np.asarray(p, dtype=np.float64)
        dt = self._dt(timestamp_s)
        if self.state is None:
            self.state = p.copy()
        else:
            tau = self.time_constant_s
            alpha = 1.0 if tau == 0 else -math.expm1(-dt / tau)
            self.state += alpha * (p - self.state)
        if self.label == UNDECIDED:
            self.label, self._beaten_since = _first_decision(
                self.state, timestamp_s, self.margin, self.hold_s, self._beaten_since,
                self._cost)
            return self.state.copy(), self.label
        best = int(self.state.argmax())
        margin, hold = self._cost(best)
        if self.state[best] - self.state[self.label] >= self.margin + margin:
            # the label is beaten (by whichever class leads: two may take turns)
            if self._beaten_since is None:
                self._beaten_since = timestamp_s
            if timestamp_s - self._beaten_since >= self.hold_s + hold - 1e-9:
                self.label, self._beaten_since = best, None
        else:
            self._beaten_since = None
        return self.state.copy(), self.label


class HmmFilter(TemporalFilter):
    """Forward filter of a sticky Markov chain over the classes.

    Between frames ``dt`` seconds apart the class stays with probability ``exp(-dt/dwell_s)``
    and otherwise is redrawn uniformly. Consecutive frames are far from independent views, so
    a frame's classifier output enters as likelihood raised to ``min(dt / evidence_s, 1)``:
    ``evidence_s`` seconds of video count as one full observation, at any frame rate. The
    label moves to the most probable class once its belief leads the current label's by
    ``margin``; a new face's first label waits until one class has led by ``margin`` for
    ``decide_s`` seconds.
    """

    def __init__(self, n_classes: int, dwell_s: float = 2.0, evidence_s: float = 0.055,
                 margin: float = 0.4, floor: float = 1e-4, decide_s: float = 0.05,
                 costs: Costs | None = None) -> None:
        if dwell_s <= 0 or evidence_s <= 0:
            raise ValueError("dwell_s and evidence_s must be > 0")
        if decide_s < 0:
            raise ValueError("decide_s must be >= 0")
        self.decide_s = decide_s
        self.dwell_s = dwell_s
        self.evidence_s = evidence_s
        self.margin = margin
        self.floor = floor
        super().__init__(n_classes, costs)

    def reset(self) -> None:
        super().reset()
        self.belief: np.ndarray | None = None
        self._leading_since: float | None = None

    def update(self, p: np.ndarray, timestamp_s: float) -> tuple[np.ndarray, int]:
        p = np.asarray(p, dtype=np.float64)
        dt = self._dt(timestamp_s)
        if self.belief is None:
            prior, weight = np.full(self.n_classes, 1.0 / self.n_classes), 1.0
        else:
            weight = min(dt / self.evidence_s, 1.0)
            stay = math.exp(-dt / self.dwell_s)
            prior = stay * self.belief + (1.0 - stay) / self.n_classes
        belief = prior * np.maximum(p, self.floor) ** weight
        self.belief = belief / belief.sum()
        if self.label == UNDECIDED:
            self.label, self._leading_since = _first_decision(
                self.belief, timestamp_s, self.margin, self.decide_s, self._leading_since,
                self._cost)
            return self.belief.copy(), self.label
        best = int(self.belief.argmax())
        margin, hold = self._cost(best)
        if self.belief[best] - self.belief[self.label] >= min(self.margin + margin, 0.99):
            if self._leading_since is None:
                self._leading_since = timestamp_s
            if timestamp_s - self._leading_since >= hold - 1e-9:
                self.label, self._leading_since = best, None
        else:
            self._leading_since = None
        return self.belief.copy(), self.label


def _first_decision(x: np.ndarray, timestamp_s: float, margin: float, hold_s: float,
                    since: float | None,
                    cost: Callable[[int], tuple[float, float]] = lambda _: (0.0, 0.0),
                    ) -> tuple[int, float | None]:
    """An undecided face's label and lead start: the leader once it led by ``margin`` for
    ``hold_s`` seconds (any class may lead meanwhile; plus the leader's ``cost``), else still
    :data:`UNDECIDED`."""
    best, lead = _lead(x)
    extra_margin, extra_hold = cost(best)
    if lead < margin + extra_margin - 1e-9:
        return UNDECIDED, None
    since = timestamp_s if since is None else since
    if timestamp_s - since >= hold_s + extra_hold - 1e-9:
        return best, None
    return UNDECIDED, since


# The defaults were chosen on a clip spliced from real neutral and smiling frames (see
# benchmarks/bench_video.py), as is and degraded: no flicker beyond the real changes, and the
# label follows a change within ~250 ms at 30 fps.
FILTERS: dict[str, type[TemporalFilter]] = {
    "none": TemporalFilter, "ema": EmaFilter, "hmm": HmmFilter,
}


PROBABILITY_PARAMS = frozenset({"margin", "floor"})


def check_param(name: str, value: Any) -> float:
    """One smoothing parameter as a float: a finite number >= 0 (``margin`` and ``floor``:
    at most 1), else :class:`~emotion_estimator.errors.InputError` (a ``ValueError``).

    The one check of these values: the CLI's ``--smoothing-param`` and the API's
    ``smoothing_params`` both pass here (NaN would make every probability NaN)."""
    from .errors import InputError

    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"{name}: must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{name}: must be a finite number >= 0, not {value}")
    if name in PROBABILITY_PARAMS and number > 1:
        raise InputError(f"{name}: a probability, at most 1")
    return number


def filter_params(kind: str) -> tuple[str, ...]:
    """The parameter names (seconds, margins) a filter kind takes."""
    import inspect

    names = inspect.signature(FILTERS[kind].__init__).parameters
    return tuple(n for n in names if n not in ("self", "n_classes", "costs"))


def make_filter(kind: str, n_classes: int, costs: Costs | None = None,
                **params: Any) -> TemporalFilter:
    """A filter by name (``ema``, ``hmm`` or ``none``) with its parameters in seconds (each
    checked by :func:`check_param`) and its transition ``costs`` (``none`` has none)."""
    if kind not in FILTERS:
        raise ValueError(f"unknown smoothing {kind!r}; choose one of {', '.join(SMOOTHING)}")
    takes = filter_params(kind)
    for name in params:
        if name not in takes:
            from .errors import InputError

            raise InputError(f"the {kind} filter has no parameter {name!r} (it takes "
                             f"{', '.join(takes) or 'none'})")
    checked = {k: check_param(k, v) for k, v in params.items()}
    if kind == "none":
        return FILTERS[kind](n_classes, **checked)
    return FILTERS[kind](n_classes, costs=costs, **checked)


class FilterBank:
    """One filter per face id, created on first sight and dropped when the face is gone."""

    def __init__(self, factory: Callable[[], TemporalFilter]) -> None:
        self._factory = factory
        self.filters: dict[int, TemporalFilter] = {}

    @classmethod
    def of(cls, kind: str, n_classes: int, params: Mapping[str, Any] | None = None,
           costs: Costs | None = None) -> FilterBank:
        make_filter(kind, n_classes, costs, **(params or {}))  # validate now, not at 1st face
        return cls(lambda: make_filter(kind, n_classes, costs, **(params or {})))

    def decided(self, face_id: int) -> bool:
        """Whether ``face_id`` has had its first label (an unseen id has not)."""
        f = self.filters.get(face_id)
        return f is not None and f.decided

    def update(self, face_id: int, p: np.ndarray, timestamp_s: float) -> tuple[np.ndarray, int]:
        """Filter ``p`` for ``face_id`` (a new id starts from a fresh state)."""
        if face_id not in self.filters:
            self.filters[face_id] = self._factory()
        return self.filters[face_id].update(p, timestamp_s)

    def drop(self, face_ids: Iterable[int]) -> None:
        """Forget the state of faces that are gone."""
        for face_id in face_ids:
            self.filters.pop(face_id, None)

    def reset(self) -> None:
        self.filters.clear()
