"""``EmotionEstimator``: faces -> the model's inputs -> classifier -> per-face temporal filter.

The per-frame loop lives here so every front end (the ``analyze`` command, the Python API, a
robot's own loop) runs the same code: :meth:`EmotionEstimator.stream` opens a VIDEO-mode
landmarker, and for each frame :class:`FrameAnalyzer` assigns persistent face ids, classifies
all faces in one batch and filters each face's probabilities over time;
:meth:`EmotionEstimator.process` takes one frame at a time from a robot's own camera loop,
with the robot's timestamps.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .blendshapes import BLENDSHAPE_NAMES, Face, FaceLandmarker
from .classifier import apply_operating_point, operating_point_offsets
from .expressions import valence_arousal
from .runahead import run_ahead
from .sources import open_source
from .stills import StillLandmarker
from .temporal import FilterBank, transition_costs
from .tracking import FaceTracker
from .video import Frame, FrameSource, ImageSource, read_image

if TYPE_CHECKING:
    import pandas as pd

LOW_POWER_SIDE = 640  # low_power: the long side of the frames MediaPipe sees, in pixels


class Classifier(Protocol):
    """What the estimator needs of a classifier (``EmotionClassifier`` is one).

    ``predict_faces(faces, image)`` is used when present (models whose inputs are built from
    the frame); a classifier with only ``predict_proba`` gets the ``(n, 52)`` scores.
    """

    classes: tuple[str, ...]

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


def classify(classifier: Classifier, faces: list[Face],
             image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch: the faces of one frame -> ``(n, len(classes))`` probabilities and, for a
    model with the expression view, ``(n, 7)`` expression probabilities (else None)."""
    views = getattr(classifier, "predict_faces_views", None)
    if views is not None:
        return views(faces, image)
    predict_faces = getattr(classifier, "predict_faces", None)
    if predict_faces is not None:
        return predict_faces(faces, image), None
    return classifier.predict_proba(np.stack([f.scores for f in faces])), None


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame: its id, box, label and class probabilities.

    ``probabilities`` are the filtered ones the label is based on; ``raw_probabilities`` the
    classifier's output for this frame alone (after the operating point); ``expression``
    and ``expression_probabilities`` the seven-expression view filtered the same way, and
    ``valence``/``arousal`` an estimate from it (:mod:`emotion_estimator.expressions`), all
    None / empty for a model without the view; ``decided`` whether the face's temporal filter
    has given it a label of its own yet (an undecided face reads ``unknown`` without having
    chosen it; displays show it as undecided); ``scores`` the 52 blendshapes (MediaPipe order).
    """

    face_id: int
    box: tuple[float, float, float, float]
    label: str | None
    probabilities: dict[str, float]
    raw_probabilities: dict[str, float]
    decided: bool = field(default=True, kw_only=True)
    scores: np.ndarray = field(repr=False)
    expression: str | None = field(default=None, kw_only=True)
    expression_probabilities: dict[str, float] = field(default_factory=dict, kw_only=True)
    valence: float | None = field(default=None, kw_only=True)
    arousal: float | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class FrameResult:
    """All faces of one frame; ``dropped`` lists face ids forgotten (filter reset) here."""

    frame: int
    timestamp_s: float
    faces: list[FaceResult]
    dropped: list[int] = field(default_factory=list)
    image: np.ndarray | None = field(default=None, repr=False)

    def rows(self, blendshapes: bool = False) -> list[dict[str, Any]]:
        """Table rows: one per face, or one ``face_detected=False`` row without a face."""
        base = {"frame": self.frame, "timestamp_s": round(self.timestamp_s, 6)}
        if not self.faces:
            return [{**base, "face_detected": False}]
        rows = []
        for face in self.faces:
            x, y, w, h = face.box
            row = {**base, "face_id": face.face_id, "face_detected": True,
                   "x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2)}
            if face.label is not None:
                row["label"], row["decided"] = face.label, face.decided
            row.update({f"p_{c}": round(p, 5) for c, p in face.probabilities.items()})
            if face.expression is not None:
                row["expression"] = face.expression
                row.update({f"expr_{c}": round(p, 5)
                            for c, p in face.expression_probabilities.items()})
                row["valence"], row["arousal"] = round(face.valence, 5), round(face.arousal, 5)
            if blendshapes:
                row.update(zip(BLENDSHAPE_NAMES, (round(v, 5) for v in face.scores.tolist()),
                               strict=True))
            rows.append(row)
        return rows


class FacesLeftOut(UserWarning):
    """A still held more faces than ``max_faces``: only the largest were analysed."""


def _warn_left_out(landmarker: FaceLandmarker, name: str) -> None:
    if landmarker.left_out:
        n = landmarker.max_faces
        warnings.warn(FacesLeftOut(
            f"{name}: more than {n} face{'s' if n > 1 else ''} found; only the largest "
            f"{'' if n == 1 else f'{n} '}analysed (--max-faces N / max_faces=N for more)"),
            stacklevel=3)


def load_classifier(model: str | os.PathLike | Classifier | None) -> Classifier:
    """The shipped default (``None``), an ``.onnx`` path, or a ready classifier object."""
    if model is None or isinstance(model, str | os.PathLike):
        from .classifier import EmotionClassifier

        return EmotionClassifier.load(model)
    return model


def expression_names(classifier: Classifier | None, wanted: bool | None) -> tuple[str, ...]:
    """The expression view to report: the model's (``wanted`` None: when it has one; True:
    required, an :class:`InputError` naming the model otherwise; False: none)."""
    names = tuple(getattr(classifier, "expressions", ()) or ()) if classifier else ()
    if wanted and not names:
        from .errors import InputError

        name = getattr(getattr(classifier, "path", None), "name", "this model")
        raise InputError(f"{name} has no expression view (the seven expressions); use a "
                         "model that has one, e.g. the default fusion model")
    return names if wanted is not False else ()


class FrameAnalyzer:
    """The per-frame step after detection: face ids, one classifier batch, the operating
    point, per-face filters (the 3-class label and, where the model has it, the expression).

    With ``classifier=None`` it only tracks (persistent ids, no labels): the loop of a
    blendshapes-only table.
    """

    def __init__(self, classifier: Classifier | None, smoothing: str = "ema",
                 smoothing_params: Mapping[str, Any] | None = None,
                 forget_s: float = 1.0, operating_point: str = "balanced",
                 expressions: bool | None = None) -> None:
        self.classifier = classifier
        self.classes = tuple(classifier.classes) if classifier is not None else ()
        self.tracker = FaceTracker(forget_s=forget_s)
        self.filters = (FilterBank.of(smoothing, len(self.classes), smoothing_params,
                                      transition_costs(self.classes))
                        if classifier is not None else None)
        self.offsets = (operating_point_offsets(classifier, operating_point)
                        if classifier is not None else None)
        self.expressions = expression_names(classifier, expressions)
        self.expression_filters = (FilterBank.of(smoothing, len(self.expressions),
                                                 smoothing_params,
                                                 transition_costs(self.expressions))
                                   if self.expressions else None)

    def __call__(self, frame: Frame, faces: list[Face]) -> FrameResult:
        ids, dropped = self.tracker.update([f.box for f in faces], frame.timestamp_s)
        if self.filters is None:
            results = [FaceResult(i, f.box, None, {}, {}, f.scores, decided=False)
                       for f, i in zip(faces, ids, strict=True)]
        else:
            self.filters.drop(dropped)
            if self.expression_filters is not None:
                self.expression_filters.drop(dropped)
            raw, expr = classify(self.classifier, faces, frame.image) if faces else ([], None)
            raw = apply_operating_point(raw, self.offsets) if faces else raw
            if expr is None or not self.expressions:
                expr = [None] * len(faces)
            results = [self._classified(f, i, p, e, frame.timestamp_s)
                       for f, i, p, e in zip(faces, ids, raw, expr, strict=True)]
        return FrameResult(frame.index, frame.timestamp_s, results, dropped, frame.image)

    def _classified(self, face: Face, face_id: int, p: np.ndarray, e: np.ndarray | None,
                    t: float) -> FaceResult:
        smooth, label = self.filters.update(face_id, p, t)
        view: dict[str, Any] = {}
        if e is not None and self.expression_filters is not None:
            smooth_e, index = self.expression_filters.update(face_id, e, t)
            va = valence_arousal(smooth_e, self.expressions)
            # undecided (a new face's first moments) reads neutral, as the label reads unknown
            view = {"expression": self.expressions[index] if index >= 0 else "neutral",
                    "expression_probabilities": dict(zip(self.expressions, smooth_e.tolist(),
                                                         strict=True)),
                    "valence": float(va[0]), "arousal": float(va[1])}
        return FaceResult(face_id=face_id, box=face.box, label=self.classes[label],
                          probabilities=dict(zip(self.classes, smooth.tolist(), strict=True)),
                          raw_probabilities=dict(zip(self.classes, p.tolist(), strict=True)),
                          decided=self.filters.decided(face_id), scores=face.scores, **view)


class EmotionEstimator:
    """Emotion per face in images, videos and camera streams.

    ``model``: ``None`` (the shipped classifier), an ``.onnx`` path or a classifier object;
    ``max_faces``: faces per frame, the largest (a still with more gives a
    :class:`FacesLeftOut` warning);
    ``smoothing``: ``"ema"``, ``"hmm"`` or ``"none"`` with ``smoothing_params`` in seconds (see
    :mod:`emotion_estimator.temporal`); ``forget_s``: how long a face may be missing before
    its id and filter state are dropped; ``operating_point``: a point stored in the model's
    metadata (``balanced``, ``sad-sensitive``, ...: :attr:`operating_points`);
    ``expressions``: the seven-expression view (None: when the model has one; True: required,
    an error for a model without it; False: off); ``classify=False``: landmarks and face ids
    only, no classifier (the ``blendshapes`` table); ``verbose``: let MediaPipe's native log
    lines (glog, TFLite) through to stderr (quiet by default).

    Streams of video files run MediaPipe ahead on a thread of their own while the caller's
    thread classifies, filters and consumes the previous result (same results, same order as
    one thread; live sources stay on one thread, newest frame first). ``low_power=True`` is
    for a robot's single core: no second thread, and MediaPipe sees frames shrunk to
    ``LOW_POWER_SIDE`` pixels on their long side (less landmarker work on large frames; faces
    under ~40 px of the shrunk frame are missed sooner).

    >>> est = EmotionEstimator(smoothing="ema")
    >>> for result in est.stream(0):  # camera 0; or a video path, or a FrameSource
    ...     for face in result.faces:
    ...         print(result.timestamp_s, face.face_id, face.label, face.probabilities)
    """

    def __init__(self, model: str | os.PathLike | Classifier | None = None, max_faces: int = 1,
                 smoothing: str = "ema", *, smoothing_params: Mapping[str, Any] | None = None,
                 forget_s: float = 1.0, landmarker: str | os.PathLike | None = None,
                 min_detection_confidence: float = 0.5, verbose: bool = False,
                 operating_point: str = "balanced", expressions: bool | None = None,
                 low_power: bool = False, classify: bool = True) -> None:
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        self.classifier = load_classifier(model) if classify else None
        self.operating_point = operating_point
        self.expressions = expression_names(self.classifier, expressions)
        self.operating_points = tuple(getattr(self.classifier, "operating_points", None)
                                      or ("balanced",))
        self.classes: tuple[str, ...] = tuple(getattr(self.classifier, "classes", ()))
        self.max_faces = max_faces
        self.smoothing = smoothing
        self.smoothing_params = dict(smoothing_params or {})
        self.forget_s = forget_s
        self._landmarker_path = landmarker
        self._confidence = min_detection_confidence
        self.verbose = verbose
        self.low_power = low_power
        self._image_landmarker: FaceLandmarker | None = None
        self._pushed: tuple[FaceLandmarker, FrameAnalyzer] | None = None
        self._pushed_frames = 0
        self._pushed_last_s = -math.inf
        self._entered = False
        self.analyzer()  # validate the smoothing and the operating point now

    def columns(self, blendshapes: bool = False) -> dict[str, type]:
        """The output columns and their types, in order."""
        from .outputs import frame_columns

        return frame_columns(self.classes, BLENDSHAPE_NAMES if blendshapes else (),
                             self.expressions)

    def landmarker(self, mode: str = "video") -> FaceLandmarker:
        """A new MediaPipe landmarker configured like this estimator; in image mode one that
        looks again at a still with no face (:mod:`.stills`)."""
        kind = StillLandmarker if mode == "image" else FaceLandmarker
        return kind(self._landmarker_path, mode=mode, max_faces=self.max_faces,
                    min_detection_confidence=self._confidence, verbose=self.verbose,
                    max_side=LOW_POWER_SIDE if self.low_power else None)

    def analyzer(self, smoothing: str | None = None) -> FrameAnalyzer:
        """A fresh per-stream state (ids from 0, empty filters)."""
        chosen = smoothing or self.smoothing
        params = self.smoothing_params if chosen == self.smoothing else {}
        return FrameAnalyzer(self.classifier, chosen, params, self.forget_s,
                             self.operating_point, bool(self.expressions))

    def analyze_image(self, image: np.ndarray | str | os.PathLike) -> list[FaceResult]:
        """Faces in one still (BGR array or file), ids from left to right, no smoothing.

        Inside ``with EmotionEstimator(...) as est:`` one landmarker serves all calls.
        """
        name = "image" if isinstance(image, np.ndarray) else Path(image).name
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        with self._stills() as landmarker:
            faces = landmarker.detect(image)
            _warn_left_out(landmarker, name)
        return self.analyzer("none")(Frame(0, 0.0, image), faces).faces

    def stream(self, source: FrameSource | str | os.PathLike | int) -> Iterator[FrameResult]:
        """Results frame by frame as they are computed (a camera runs until stopped)."""
        owned = not isinstance(source, FrameSource)
        src = open_source(source) if owned else source
        try:
            still = isinstance(src, ImageSource)
            analyze = self.analyzer("none" if still else None)
            landmarkers = self._stills() if still else self.landmarker("video")
            with landmarkers as landmarker:

                def detect(frame: Frame) -> list[Face]:
                    faces = landmarker.detect(frame.image, frame.timestamp_s)
                    if still:
                        _warn_left_out(landmarker, Path(src.name).name)
                    return faces

                # live sources stay on one thread: the newest frame is analysed when it is
                # taken, and their consumers (serve) pair a result with source.current
                ahead = 0 if still or src.is_live or self.low_power else 2
                with contextlib.closing(run_ahead(src, detect, ahead, "landmarker")) as found:
                    for frame, faces in found:
                        yield analyze(frame, faces)
        finally:
            if owned:
                src.close()

    def process(self, image: np.ndarray, timestamp_s: float) -> FrameResult:
        """One frame of the caller's own loop (a robot's camera callback) -> its result.

        ``image`` is a BGR uint8 frame, ``timestamp_s`` its capture time in seconds on any
        clock (not going backwards). Face ids, filters and a VIDEO-mode landmarker persist
        across calls, so the labels are filtered over time exactly as :meth:`stream` filters
        a video; :meth:`reset` starts a new stream, :meth:`close` releases it.
        """
        timestamp_s = float(timestamp_s)
        if not math.isfinite(timestamp_s) or timestamp_s < self._pushed_last_s:
            raise ValueError(f"timestamp_s must be finite and not go backwards "
                             f"({timestamp_s} after {self._pushed_last_s}); reset() starts over")
        if self._pushed is None:
            self._pushed = (self.landmarker("video"), self.analyzer())
        landmarker, analyze = self._pushed
        faces = landmarker.detect(image, timestamp_s)
        self._pushed_last_s = timestamp_s
        self._pushed_frames += 1
        return analyze(Frame(self._pushed_frames - 1, timestamp_s, image), faces)

    def reset(self) -> None:
        """Forget the :meth:`process` stream: the next frame starts with ids from 0."""
        if self._pushed is not None:
            self._pushed[0].close()
        self._pushed, self._pushed_frames, self._pushed_last_s = None, 0, -math.inf

    def analyze_video(self, path: str | os.PathLike, *,
                      blendshapes: bool = False) -> pd.DataFrame:
        """One row per (frame, face), plus one ``face_detected=False`` row per empty frame."""
        rows = [row for result in self.stream(path) for row in result.rows(blendshapes)]
        return to_frame(rows, self.columns(blendshapes))

    @contextlib.contextmanager
    def _stills(self) -> Iterator[FaceLandmarker]:
        """An IMAGE-mode landmarker: kept while inside ``with``, else one per call.

        (A landmarker left open until interpreter exit makes MediaPipe print a traceback.)
        """
        if not self._entered:
            with self.landmarker("image") as landmarker:
                yield landmarker
            return
        if self._image_landmarker is None:
            self._image_landmarker = self.landmarker("image")
        yield self._image_landmarker

    def close(self) -> None:
        """Release the still-image and :meth:`process` landmarkers (streams release theirs
        themselves)."""
        self.reset()
        self._entered = False
        if self._image_landmarker is not None:
            self._image_landmarker.close()
            self._image_landmarker = None

    def __enter__(self) -> EmotionEstimator:
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_frame(rows: list[dict[str, Any]], columns: Mapping[str, type]) -> pd.DataFrame:
    """Rows -> DataFrame with the contract's columns and nullable dtypes."""
    import pandas as pd

    from .outputs import PANDAS_DTYPES

    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype({c: PANDAS_DTYPES[t] for c, t in columns.items()})
