"""The per-frame loop's overlap (:mod:`emotion_estimator.runahead`) and the low-power path.

MediaPipe runs a frame ahead on its own thread in ``EmotionEstimator.stream``; these tests pin
that the results are the ones a single thread gives, in frame order, that errors surface in
order in the caller's thread, that leaving early stops the thread, and that the low-power
landmarker (frames shrunk before MediaPipe) still reports boxes in the frame's pixels.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from emotion_estimator.runahead import run_ahead

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIP = MEDIA / "single_face.mp4"


def test_pairs_come_in_order_and_the_stage_runs_on_another_thread() -> None:
    seen: list[str] = []

    def stage(x: int) -> int:
        seen.append(threading.current_thread().name)
        return x * x

    got = list(run_ahead(range(50), stage, depth=2, name="stage-thread"))
    assert got == [(i, i * i) for i in range(50)]
    assert set(seen) == {"stage-thread"}
    seen.clear()
    assert list(run_ahead(range(50), stage, depth=0)) == got  # the one-thread path
    assert set(seen) == {threading.current_thread().name}


def test_the_stage_works_on_the_next_item_while_the_caller_holds_this_one() -> None:
    started = {i: threading.Event() for i in range(3)}

    def stage(x: int) -> int:
        started[x].set()
        return x

    overlapped = []
    for x, _ in run_ahead(range(3), stage, depth=1):
        if x < 2:  # without overlap this would wait the whole timeout and fail
            overlapped.append(started[x + 1].wait(timeout=10))
    assert overlapped == [True, True]


def test_an_error_of_the_stage_arrives_after_the_earlier_items() -> None:
    def stage(x: int) -> int:
        if x == 3:
            raise ValueError("bad frame 3")
        return x

    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for x, _ in run_ahead(range(10), stage, depth=2):
            got.append(x)
    assert got == [0, 1, 2]


def test_an_error_of_the_source_arrives_after_the_earlier_items() -> None:
    def source():
        yield from range(4)
        raise OSError("camera unplugged")

    got = []
    with pytest.raises(OSError, match="camera unplugged"):
        for x, _ in run_ahead(source(), lambda x: x, depth=3):
            got.append(x)
    assert got == [0, 1, 2, 3]


def test_leaving_early_stops_the_stage_and_closes_the_source() -> None:
    calls: list[int] = []
    closed = threading.Event()

    def source():
        try:
            yield from range(1000)
        finally:
            closed.set()

    def stage(x: int) -> int:
        calls.append(x)
        return x

    found = run_ahead(source(), stage, depth=2, name="early-exit")
    for x, _ in found:
        if x == 4:
            break
    found.close()
    assert closed.wait(timeout=5)
    assert not any(t.name == "early-exit" for t in threading.enumerate())
    assert len(calls) <= 5 + 2 + 1  # at most depth + 1 beyond what was taken


def test_a_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        run_ahead([1], lambda x: x, depth=-1)


def _summary(results) -> list[tuple]:
    return [(r.frame, r.timestamp_s, f.face_id, f.box, f.label, f.probabilities,
             f.raw_probabilities, f.scores.tobytes())
            for r in results for f in r.faces] + [(r.frame, "none") for r in results
                                                   if not r.faces]


@pytest.mark.skipif(not CLIP.is_file(), reason="needs ../shared/media/single_face.mp4")
def test_stream_with_overlap_gives_exactly_the_one_thread_results() -> None:
    from emotion_estimator import EmotionEstimator

    threads: set[str] = set()

    class Watched(EmotionEstimator):
        def landmarker(self, mode: str = "video"):
            inner = super().landmarker(mode)
            detect = inner.detect

            def recorded(*args, **kwargs):
                threads.add(threading.current_thread().name)
                return detect(*args, **kwargs)

            inner.detect = recorded
            return inner

    overlapped = list(Watched().stream(CLIP))
    assert threads == {"landmarker"}
    threads.clear()
    single = list(Watched(low_power=True).stream(CLIP))  # 640x360: not shrunk
    assert threads == {threading.current_thread().name}
    assert [r.frame for r in overlapped] == list(range(len(overlapped))) and len(single) > 60
    assert _summary(overlapped) == _summary(single)
    assert sum(len(r.faces) for r in single) == len(single)  # a face in every frame


@pytest.mark.skipif(not CLIP.is_file(), reason="needs ../shared/media/single_face.mp4")
def test_breaking_out_of_a_stream_stops_its_landmarker_thread() -> None:
    from emotion_estimator import EmotionEstimator

    stream = EmotionEstimator().stream(CLIP)
    for result in stream:
        if result.frame == 3:
            break
    stream.close()
    assert not any(t.name == "landmarker" for t in threading.enumerate())


@pytest.mark.skipif(not (MEDIA / "single_face.jpg").is_file(),
                    reason="needs ../shared/media/single_face.jpg")
def test_low_power_landmarker_boxes_stay_in_the_frames_pixels() -> None:
    import cv2

    from emotion_estimator.blendshapes import FaceLandmarker
    from emotion_estimator.video import read_image

    image = read_image(MEDIA / "single_face.jpg")
    big = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 1716x1686
    with FaceLandmarker(mode="image") as full, \
            FaceLandmarker(mode="image", max_side=640) as small:
        (a,), (b,) = full.detect(big), small.detect(big)
    assert a.box[2] > 400  # a large face in the big frame's pixels
    np.testing.assert_allclose(b.box, a.box, atol=0.03 * a.box[2])
    assert np.abs(b.landmarks[:, :2] - a.landmarks[:, :2]).max() < 0.02  # normalised


@pytest.mark.skipif(not (MEDIA / "single_face.jpg").is_file(),
                    reason="needs ../shared/media/single_face.jpg")
def test_analyze_low_power_flag_reaches_the_landmarker(tmp_path) -> None:
    import cv2
    import pandas as pd

    from emotion_estimator.cli import cli
    from emotion_estimator.video import read_image

    big = tmp_path / "big.png"
    image = read_image(MEDIA / "single_face.jpg")
    cv2.imwrite(str(big), cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC))
    tables = {}
    for name, extra in (("full", []), ("low", ["--low-power"])):
        out = tmp_path / f"{name}.csv"
        assert cli(["analyze", str(big), "-o", str(out), "--no-progress", *extra]) == 0
        tables[name] = pd.read_csv(out)
    full, low = (tables[k].iloc[0] for k in ("full", "low"))
    box = ["x", "y", "w", "h"]
    assert full["w"] > 400  # the box in the 1716 px image's pixels, not the shrunk frame's
    np.testing.assert_allclose(low[box].to_numpy(float), full[box].to_numpy(float),
                               atol=0.03 * full["w"])
    assert not np.array_equal(low[box].to_numpy(float), full[box].to_numpy(float))  # shrunk
