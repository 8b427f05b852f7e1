"""emotion-estimator: happy / sad / unknown per face, from MediaPipe Face Landmarker and a small
ONNX classifier over the aligned face crop, landmarks and blendshapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .blendshapes import BLENDSHAPE_NAMES  # noqa: E402

if TYPE_CHECKING:
    from .classifier import EmotionClassifier
    from .estimator import EmotionEstimator

__all__ = ["BLENDSHAPE_NAMES", "EmotionClassifier", "EmotionEstimator", "__version__"]


def __getattr__(name: str):
    # lazy: importing the package stays cheap (no onnxruntime / mediapipe until used)
    if name == "EmotionClassifier":
        from .classifier import EmotionClassifier

        return EmotionClassifier
    if name == "EmotionEstimator":
        from .estimator import EmotionEstimator

        return EmotionEstimator
    raise AttributeError(name)
