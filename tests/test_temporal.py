"""Temporal filters and face tracking on synthetic probability streams (no MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_estimator.temporal import (
    UNDECIDED,
    EmaFilter,
    FilterBank,
    HmmFilter,
    make_filter,
    transition_costs,
)
from emotion_estimator.tracking import FaceTracker, iou

HAPPY, SAD, UNKNOWN = np.eye(3)


def noisy_step(fps: float, seconds: float, change_s: float, seed: int = 0,
               noise: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Times and probabilities: mostly happy, then mostly sad from ``change_s``, with noise
    strong enough that the raw argmax flickers."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 1 / fps)
    base = np.where((t < change_s)[:, None], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25])
    p = np.clip(base + rng.normal(0, noise, base.shape), 0.01, None)
    return t, p / p.sum(axis=1, keepdims=True)


def labels_of(kind: str, t: np.ndarray, p: np.ndarray, **params) -> np.ndarray:
    f = make_filter(kind, 3, **params)
    return np.array([f.update(pi, ti)[1] for pi, ti in zip(p, t, strict=True)])


def switches(labels: np.ndarray) -> int:
    return int((labels[1:] != labels[:-1]).sum())


def follow_time(t: np.ndarray, labels: np.ndarray, change_s: float, target: int) -> float:
    """Seconds from ``change_s`` until the label is ``target`` for good."""
    wrong = np.nonzero(labels != target)[0]
    last_wrong = wrong[-1] if len(wrong) else -1
    return float(t[last_wrong + 1] - change_s)


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_filter_cuts_flicker_and_follows_a_real_change_quickly(kind):
    t, p = noisy_step(fps=30, seconds=8, change_s=4)
    raw, smooth = labels_of("none", t, p), labels_of(kind, t, p)
    assert switches(raw) > 20  # the input really flickers
    assert switches(smooth) <= switches(raw) / 5
    # a new face starts undecided and is decided within 0.5 s, never on the wrong class
    first = int(np.argmax(smooth != UNDECIDED))
    assert t[first] <= 0.5 and set(smooth[:first]) <= {UNDECIDED}
    assert (smooth[(t >= 0.5) & (t < 4)] == 0).mean() > 0.95
    assert (smooth[t >= 4.5] == 1).mean() > 0.95
    lag = follow_time(t, smooth, 4.0, target=1)
    assert 0 < lag <= 0.5


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_parameters_are_in_seconds_not_frames(kind):
    """A clean step is followed after about the same time at 15 and at 60 fps."""
    lags = []
    for fps in (15, 60):
        t = np.arange(0, 4, 1 / fps)
        p = np.where((t < 2)[:, None], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1])
        lags.append(follow_time(t, labels_of(kind, t, p), 2.0, target=1))
    assert lags[0] > 0 and lags[1] > 0
    assert abs(lags[0] - lags[1]) <= 1 / 15 + 1e-9


def test_ema_hysteresis_needs_margin_and_hold():
    f = EmaFilter(3, time_constant_s=0.0, margin=0.2, hold_s=0.3)
    # the first label too needs the margin for hold_s
    assert [f.update(HAPPY * 0.6 + SAD * 0.4, i / 10)[1] for i in range(4)] == [-1, -1, -1, 0]
    # sad leads, but by less than the margin: no switch however long it lasts
    for i in range(1, 40):
        assert f.update(np.array([0.35, 0.45, 0.2]), i / 10)[1] == 0
    # sad leads by more than the margin: switch only once it has lasted hold_s
    times = np.arange(4.0, 5.0, 0.1)
    labels = [f.update(np.array([0.2, 0.7, 0.1]), ti)[1] for ti in times]
    first = labels.index(1)
    assert times[first] - times[0] == pytest.approx(0.3)
    assert all(label == 1 for label in labels[first:])


def test_hmm_belief_is_a_distribution_and_a_long_gap_forgets_the_past():
    f = HmmFilter(3, dwell_s=2.0)
    for i in range(60):
        belief, label = f.update(np.array([0.9, 0.05, 0.05]), i / 30)
        assert belief.sum() == pytest.approx(1.0) and label == (0 if i >= 2 else UNDECIDED)
    # after 20 s without a frame the chain has mixed: one frame of evidence decides
    belief, label = f.update(np.array([0.1, 0.8, 0.1]), 22.0)
    assert label == 1
    # but 33 ms later the same single frame would not have flipped a sticky belief
    g = HmmFilter(3, dwell_s=2.0)
    for i in range(60):
        g.update(np.array([0.9, 0.05, 0.05]), i / 30)
    assert g.update(np.array([0.1, 0.8, 0.1]), 2.0)[1] == 0


def test_filter_bank_keeps_one_state_per_face_and_drop_resets_it():
    bank = FilterBank.of("ema", 3, {"time_constant_s": 1.0, "hold_s": 0.5})
    for i in range(30):
        bank.update(0, HAPPY, i / 30)
        bank.update(1, SAD, i / 30)
    # face 1's history does not leak into face 0 and vice versa
    assert bank.update(0, SAD * 0.6 + HAPPY * 0.4, 1.0)[1] == 0
    assert bank.update(1, HAPPY * 0.6 + SAD * 0.4, 1.0)[1] == 1
    bank.drop([0])
    assert not bank.decided(0)
    labels = [bank.update(0, SAD * 0.6 + HAPPY * 0.4, 1.1 + i / 30)[1] for i in range(30)]
    assert labels[0] == UNDECIDED and labels[-1] == 1 and 0 not in labels  # fresh state
    assert bank.decided(0) and bank.decided(1)


def test_unknown_smoothing_and_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown smoothing"):
        make_filter("kalman", 3)
    with pytest.raises(ValueError):
        make_filter("ema", 3, hold_s=-1)
    with pytest.raises(ValueError, match="the hmm filter has no parameter 'hold_s'"):
        make_filter("hmm", 3, hold_s=0.1)  # an EMA parameter
    with pytest.raises(ValueError):
        make_filter("hmm", 3, decide_s=-1)


def test_tracker_keeps_ids_while_faces_move_and_forgets_after_a_gap():
    tracker = FaceTracker(forget_s=1.0)
    left, right = (100.0, 100.0, 80.0, 100.0), (400.0, 120.0, 90.0, 110.0)
    assert tracker.update([left, right], 0.0) == ([0, 1], [])
    # detections come back in the other order and moved a little: ids follow the boxes
    moved = [(r[0] + 6, r[1] + 3, r[2], r[3]) for r in (right, left)]
    assert tracker.update(moved, 0.04)[0] == [1, 0]
    # face 0 is missed for 0.5 s: it keeps its id
    assert tracker.update([moved[0]], 0.5)[0] == [1]
    assert tracker.update(moved, 0.6)[0] == [1, 0]
    # both gone for more than forget_s: dropped, and a face there later gets a new id
    ids, dropped = tracker.update([], 1.7)
    assert ids == [] and sorted(dropped) == [0, 1]
    assert tracker.update([left], 1.8)[0] == [2]


def test_tracker_gives_a_new_face_elsewhere_a_new_id():
    tracker = FaceTracker()
    tracker.update([(0.0, 0.0, 50.0, 50.0)], 0.0)
    ids, _ = tracker.update([(2.0, 1.0, 50.0, 50.0), (300.0, 300.0, 50.0, 50.0)], 0.04)
    assert ids == [0, 1]
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_label_leaves_a_class_when_two_others_share_the_evidence(kind):
    """Happy, then a neutral face the classifier splits between sad and unknown: the label
    must drop happy (a rule like "switch once one class is sure" would stay happy)."""
    f = make_filter(kind, 3)
    for i in range(60):
        f.update(np.array([0.9, 0.05, 0.05]), i / 30)
    split = [np.array([0.04, 0.5, 0.46]), np.array([0.04, 0.46, 0.5])]
    labels = [f.update(split[i % 2], 2 + i / 30)[1] for i in range(30)]
    assert labels.index(next(lab for lab in labels if lab != 0)) <= 9  # within 0.3 s
    assert 0 not in labels[10:]


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_a_new_face_starts_undecided_and_is_not_opened_with_its_first_argmax(kind):
    """A crying face whose first frames the classifier reads as happy (as on a real clip):
    the label stays undecided until sad has led by the margin for the hold time, and is never
    happy."""
    f = make_filter(kind, 3)
    t = np.arange(0, 1.0, 1 / 30)
    p = [np.array([0.7, 0.2, 0.1]) if ti < 0.04 else np.array([0.1, 0.8, 0.1]) for ti in t]
    labels = [f.update(pi, ti)[1] for pi, ti in zip(p, t, strict=True)]
    assert labels[0] == UNDECIDED and not make_filter(kind, 3).decided
    assert 0 not in labels and labels[-1] == 1 and f.decided
    assert t[labels.index(1)] <= 0.3


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_a_face_no_class_wins_stays_undecided(kind):
    f = make_filter(kind, 3)
    split = [np.array([0.4, 0.35, 0.25]), np.array([0.35, 0.4, 0.25])]
    assert {f.update(split[i % 2], i / 30)[1] for i in range(60)} == {UNDECIDED}
    assert not f.decided


def test_no_smoothing_decides_at_once():
    f = make_filter("none", 3)
    assert f.update(np.array([0.2, 0.5, 0.3]), 0.0)[1] == 1 and f.decided


CLASSES = ("happy", "sad", "unknown")
I_HAPPY, I_SAD, I_UNKNOWN = 0, 1, 2


def _switch_time(kind: str, start: int, to: int, burst_s: float, costs: bool) -> float | None:
    """A face decided as ``start`` for 1 s at 30 fps, then ``burst_s`` of frames reading ``to``
    (0.9), then ``start`` again: when (s after the burst began) its label first became
    ``to``, or None."""
    f = make_filter(kind, 3, transition_costs(CLASSES) if costs else None)
    hold, want = np.full(3, 0.05), np.full(3, 0.05)
    hold[start], want[to] = 0.9, 0.9
    t = 0.0
    for _ in range(30):
        f.update(hold, t)
        t += 1 / 30
    assert f.label == start
    began = t
    for i in range(90):
        f.update(want if t - began < burst_s else hold, t)
        if f.label == to:
            return t - began
        t += 1 / 30
        del i
    return None


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_a_short_happy_burst_in_a_sad_face_does_not_make_it_happy(kind):
    """A crying face read as happy for 0.2 s (a smile-shaped grimace) stays sad with the
    robot's costs; without them the same burst flips the label."""
    assert _switch_time(kind, I_SAD, I_HAPPY, 0.2, costs=False) is not None
    assert _switch_time(kind, I_SAD, I_HAPPY, 0.2, costs=True) is None
    # a real, sustained smile still gets through, later than without the cost
    with_cost = _switch_time(kind, I_SAD, I_HAPPY, 3.0, costs=True)
    without = _switch_time(kind, I_SAD, I_HAPPY, 3.0, costs=False)
    assert with_cost is not None and without is not None and with_cost >= without + 0.2


@pytest.mark.parametrize("kind", ["ema", "hmm"])
def test_costs_leave_other_changes_as_fast_as_before(kind):
    """happy -> sad (the cheap direction) and unknown -> happy keep their lag exactly."""
    for start, to in ((I_HAPPY, I_SAD), (I_UNKNOWN, I_HAPPY), (I_SAD, I_UNKNOWN)):
        assert _switch_time(kind, start, to, 3.0, costs=True) == \
            _switch_time(kind, start, to, 3.0, costs=False)


def test_a_new_face_needs_longer_to_open_as_happy():
    happy = np.array([0.9, 0.05, 0.05])

    def first_label_after(costs: bool, p: np.ndarray) -> float:
        f = EmaFilter(3, costs=transition_costs(CLASSES) if costs else None)
        for i in range(60):
            f.update(p, i / 30)
            if f.decided:
                return i / 30
        raise AssertionError("never decided")

    assert first_label_after(True, happy) >= first_label_after(False, happy) + 0.1 - 1e-9
    sad = happy[[1, 0, 2]]
    assert first_label_after(True, sad) == first_label_after(False, sad)


def test_transition_costs_by_name_skip_absent_classes():
    assert transition_costs(CLASSES) == {(I_SAD, I_HAPPY): (0.2, 0.25),
                                         (UNDECIDED, I_HAPPY): (0.0, 0.1)}
    assert transition_costs(("neutral", "happy", "sad")) == {(2, 1): (0.2, 0.25),
                                                            (UNDECIDED, 1): (0.0, 0.1)}
    assert transition_costs(("a", "b")) == {}
