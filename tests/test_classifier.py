"""The runtime classifier: loading, validation, column selection, the shipped model on a face."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from emotion_estimator import EmotionClassifier
from emotion_estimator.blendshapes import BLENDSHAPE_NAMES
from emotion_estimator.classifier import default_model_path, shipped_model_path
from emotion_estimator.errors import InputError

BLENDSHAPE_MODEL = shipped_model_path("blendshapes")


@pytest.fixture(scope="module")
def clf() -> EmotionClassifier:
    return EmotionClassifier.load("blendshapes")


def test_default_model_contract(clf: EmotionClassifier) -> None:
    assert clf.classes == ("happy", "sad", "unknown")
    assert set(clf.blendshapes) <= set(BLENDSHAPE_NAMES)
    assert clf.metadata["classes"] == list(clf.classes)
    p = clf.predict_proba(np.random.default_rng(0).random((7, 52), dtype=np.float32))
    assert p.shape == (7, 3)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert clf.predict_proba(np.zeros(52)).shape == (1, 3)
    assert clf.predict_proba(np.zeros((0, 52))).shape == (0, 3)
    assert BLENDSHAPE_MODEL.stat().st_size <= 100_000
    # the fusion default (one distilled network) and the paper's models, all in the wheel
    folder = default_model_path().parent
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 4_000_000


def test_runtime_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys, numpy as np; from emotion_estimator import EmotionClassifier; "
            "EmotionClassifier.load('blendshapes').predict_proba(np.zeros((1, 52))); "
            "EmotionClassifier.load(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_model_blendshapes_matter(clf: EmotionClassifier) -> None:
    x = np.random.default_rng(1).random((4, 52), dtype=np.float32)
    unused = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n not in clf.blendshapes]
    used = [BLENDSHAPE_NAMES.index(n) for n in clf.blendshapes]
    y = x.copy()
    y[:, unused] = 1 - y[:, unused]
    np.testing.assert_allclose(clf.predict_proba(x), clf.predict_proba(y), atol=1e-6)
    y[:, used] = 1 - y[:, used]
    assert not np.allclose(clf.predict_proba(x), clf.predict_proba(y), atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 27), (3,), (2, 3, 52)])
def test_wrong_input_shape(clf: EmotionClassifier, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="shape"):
        clf.predict_proba(np.zeros(shape))


def _copy(tmp_path, meta: dict | None = None):
    onnx = tmp_path / "m.onnx"
    shutil.copy(BLENDSHAPE_MODEL, onnx)
    source = json.loads(BLENDSHAPE_MODEL.with_suffix(".json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**source, **(meta or {})}))
    return onnx, source


def test_bad_files_raise_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        EmotionClassifier.load(tmp_path / "missing.onnx")
    onnx, source = _copy(tmp_path)
    assert EmotionClassifier.load(onnx).classes == tuple(source["classes"])
    onnx.write_bytes(b"definitely not onnx")
    with pytest.raises(InputError, match="ONNX"):
        EmotionClassifier.load(onnx)
    onnx, source = _copy(tmp_path, {"blendshapes": source["blendshapes"][:-1],
                                    "normalization": {"mean": [0] * 3, "std": [1] * 3}})
    with pytest.raises(InputError, match="normalization"):
        EmotionClassifier.load(onnx)
    k = len(source["blendshapes"]) - 1
    onnx, _ = _copy(tmp_path, {"blendshapes": source["blendshapes"][:-1],
                               "normalization": {"mean": [0] * k, "std": [1] * k}})
    with pytest.raises(InputError, match="input shape"):
        EmotionClassifier.load(onnx)
    onnx, _ = _copy(tmp_path, {"classes": ["a", "b"]})
    with pytest.raises(InputError, match="classes"):
        EmotionClassifier.load(onnx)
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(InputError, match="JSON"):
        EmotionClassifier.load(onnx)
    (tmp_path / "m.json").unlink()
    with pytest.raises(InputError, match="metadata"):
        EmotionClassifier.load(onnx)


def test_shipped_model_calls_the_smiling_face_happy(clf, media, landmarker_model) -> None:
    import cv2

    from emotion_estimator.blendshapes import FaceLandmarker

    if not clf.metadata.get("trained", True):
        pytest.skip("the shipped model is still the untrained placeholder")
    with FaceLandmarker(landmarker_model) as lm:
        faces = lm.detect(cv2.imread(str(media / "single_face.jpg")))
    assert len(faces) == 1
    p = clf.predict_proba(faces[0].scores)[0]
    assert clf.classes[int(p.argmax())] == "happy"
    assert p[clf.classes.index("happy")] > 0.5


def test_shipped_models_load_by_name(tmp_path, monkeypatch):
    from emotion_estimator.classifier import shipped_models

    assert {"blendshapes", "fusion", "lstm"} <= set(shipped_models())
    assert EmotionClassifier.load("default").path == EmotionClassifier.load().path
    assert EmotionClassifier.load().path.name == "fusion.onnx"
    lstm = EmotionClassifier.load("lstm")
    assert lstm.path.name == "lstm.onnx" and lstm.metadata["model"]["kind"] == "lstm"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="shipped models: blendshapes"):
        EmotionClassifier.load("nonexistent")


def test_shipped_fusion_model_reads_faces_and_frame(media, landmarker_model) -> None:
    """The multi-input model builds its inputs from faces + frame; scores alone are refused."""
    import cv2

    from emotion_estimator.blendshapes import FaceLandmarker

    fusion = EmotionClassifier.load("fusion")
    assert [s["kind"] for s in fusion.inputs] == ["face", "landmarks", "blendshapes"]
    image = cv2.imread(str(media / "single_face.jpg"))
    with FaceLandmarker(landmarker_model, mode="image") as lm:
        faces = lm.detect(image)
    p = fusion.predict_faces(faces, image)
    assert p.shape == (len(faces), 3)
    assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="predict_faces"):
        fusion.predict_proba(np.zeros((1, 52)))
    with pytest.raises(InputError, match="frame"):
        fusion.predict_faces(faces, None)
