"""``train --peer-teacher fer``: a peer CNN's probabilities in the distillation targets.

The peer runs as its own interpreter (``--peer-python``). Here a stand-in interpreter that
speaks the same protocol (``PYTHON SCRIPT CROPS.npy OUT.npy``) gives known probabilities, so
the mixing is checked exactly; the real fer venv is used where it exists.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_fusion import CLASSES, config, quiet, toy_splits, write_dataset  # noqa: E402

from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.errors import InputError  # noqa: E402
from emotion_estimator.training.fusion.data import FINE_CLASSES  # noqa: E402
from emotion_estimator.training.fusion.peer import (  # noqa: E402
    FER_ORDER,
    fold,
    peer_expressions,
    peer_python,
)

HAPPY = FER_ORDER.index("happy")


def fake_peer(tmp_path: Path, body: str, name: str = "peer-python") -> Path:
    """An executable 'interpreter' for the peer protocol: ``body`` sees ``crops`` (the array)
    and ``out`` (the path to write)."""
    exe = tmp_path / name
    exe.write_text(f"#!{sys.executable}\nimport sys\nimport numpy as np\n"
                   "crops = np.load(sys.argv[2])\nout = sys.argv[3]\n" + body)
    exe.chmod(0o755)
    return exe


def all_happy(tmp_path: Path) -> Path:
    return fake_peer(tmp_path, f"p = np.zeros((len(crops), 7), np.float32)\np[:, {HAPPY}] = 1\n"
                               "np.save(out, p)\n")


def test_fold_maps_the_seven_to_the_classes() -> None:
    seven = np.array([[0.1, 0.05, 0.05, 0.5, 0.2, 0.05, 0.05]], np.float32)
    got = fold(seven, CLASSES)
    assert np.allclose(got, [[0.5, 0.2, 0.3]])
    with pytest.raises(InputError, match="cannot map"):
        fold(seven, ("happy", "bored", "unknown"))


def test_peer_expressions_run_the_interpreter_and_check_its_answer(tmp_path) -> None:
    crops = np.zeros((3, 48, 48), np.uint8)
    crops[1] += 200  # the stand-in's answer depends on the crop: the crops reach it
    exe = fake_peer(tmp_path, "p = np.full((len(crops), 7), 1.0, np.float32)\n"
                              f"p[:, {HAPPY}] += crops.reshape(len(crops), -1).mean(1)\n"
                              "np.save(out, p)\n")
    got = peer_expressions(crops, str(exe))
    assert got.shape == (3, 7) and np.allclose(got.sum(1), 1, atol=1e-6)  # normalised
    assert got[1, HAPPY] > 0.9 and np.isclose(got[0, HAPPY], 1 / 7)
    failing = fake_peer(tmp_path, "sys.stderr.write('Traceback...\\nImportError: no fer "
                                  "here\\n')\nsys.exit(1)\n", "failing")
    with pytest.raises(InputError, match="exit 1.*no fer here"):
        peer_expressions(crops, str(failing))
    short = fake_peer(tmp_path, "np.save(out, np.ones((1, 7), np.float32))\n", "short")
    with pytest.raises(InputError, match="returned"):
        peer_expressions(crops, str(short))
    with pytest.raises(InputError, match="setup_fer.sh"):
        peer_expressions(crops, str(tmp_path / "absent" / "python"))


def test_peer_python_defaults_to_the_peer_venv(monkeypatch) -> None:
    monkeypatch.delenv("FER_VENV", raising=False)
    assert peer_python() == Path("benchmarks/.venv-fer/bin/python")
    monkeypatch.setenv("FER_VENV", "/opt/fer")
    assert peer_python() == Path("/opt/fer/bin/python")
    assert peer_python("/x/python") == Path("/x/python")


def _config(tmp_path: Path, *extra: str):
    from emotion_estimator.commands.train import configure, fusion_config_from_args

    data = write_dataset(tmp_path / "fer", ("pad",), ["sad", "fear", "happy", "sad"],
                         ["train", "train", "train", "val"])
    p = argparse.ArgumentParser()
    configure(p)
    return fusion_config_from_args(p.parse_args([str(data), "--out", str(tmp_path / "s"),
                                                 "--kind", "fusion", *extra]))


def test_the_peer_joins_the_teacher_and_teaches_the_expression_head(tmp_path) -> None:
    """Targets = (1 - W) label + W ((1 - P) teacher + P peer); the expression head's targets
    (1 - P) label + P peer; val keeps its labels."""
    from emotion_estimator.commands.train import _distilled_splits
    from emotion_estimator.training.fusion.distill import teacher_probabilities
    from emotion_estimator.training.fusion.train import train_fusion

    teacher_run = tmp_path / "teacher"
    train_fusion(config(), teacher_run, splits=toy_splits(), log=quiet)
    exe = all_happy(tmp_path)
    cfg = _config(tmp_path, "--teacher", str(teacher_run), "--teacher-weight", "0.5",
                  "--peer-teacher", "fer", "--peer-weight", "0.4", "--peer-python", str(exe))
    got = _distilled_splits(cfg)
    train = got["train"]
    onehot = np.eye(3)[[1, 2, 0]]  # sad, fear -> unknown, happy
    teacher, _ = teacher_probabilities(teacher_run, train)
    want = 0.5 * onehot + 0.5 * (0.6 * teacher + 0.4 * np.array([1.0, 0, 0]))
    assert np.allclose(train.target, want, atol=1e-5)
    fine = np.eye(7)[[FINE_CLASSES.index(c) for c in ("sad", "fear", "happy")]]
    assert np.allclose(train.fine_target, 0.6 * fine + 0.4 * np.eye(7)[FINE_CLASSES.index(
        "happy")], atol=1e-6)
    assert np.allclose(got["val"].target, [[0, 1, 0]]) and got["val"].fine_target is None
    alone = _distilled_splits(replace(cfg, teacher=""))["train"]  # no ensemble: the peer alone
    assert np.allclose(alone.target, 0.5 * onehot + 0.5 * np.array([1.0, 0, 0]), atol=1e-6)
    assert _distilled_splits(replace(cfg, teacher="", peer_teacher="")) is None


def test_soft_expression_targets_steer_the_expression_head(tmp_path) -> None:
    """The same run twice, once with every face's expression target half 'happy': its
    expression head leans to happy on faces it was not trained on."""
    from emotion_estimator.training.fusion.train import load_fusion, outputs_of, train_fusion

    splits = toy_splits(n_train=96, n_val=60)
    steered = dict(splits)
    train = splits["train"]
    onehot = np.eye(7, dtype=np.float32)[train.fine.clip(0)]
    steered["train"] = replace(train, fine_target=0.5 * onehot + 0.5 * np.eye(
        7, dtype=np.float32)[FINE_CLASSES.index("happy")])
    means = []
    for name, s in (("plain", splits), ("steered", steered)):
        train_fusion(config(epochs=4), tmp_path / name, splits=s, log=quiet)
        model, _ = load_fusion(tmp_path / name / "fusion.pt")
        _, fine = outputs_of(model, {k: torch.from_numpy(v)
                                     for k, v in splits["val"].inputs.items()})
        means.append(torch.softmax(torch.from_numpy(fine), 1)[:, FINE_CLASSES.index(
            "happy")].mean().item())
    assert means[1] > means[0] + 0.1


def test_cli_refuses_a_missing_peer_with_one_line(tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "fer", ("pad",), ["sad", "happy", "fear", "sad"],
                         ["train", "train", "train", "val"])
    out = tmp_path / "run"
    code = cli(["train", str(data), "--out", str(out), "--kind", "fusion", "--peer-teacher",
                "fer", "--peer-python", str(tmp_path / "absent"), "--epochs", "1",
                "--width", "8", "--threads", "1", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "setup_fer.sh" in err[0]
    assert not out.exists()
    code = cli(["train", str(data), "--out", str(out), "--kind", "fusion", "--peer-teacher",
                "fer", "--peer-weight", "2", "--epochs", "1"])
    assert code == 2 and "peer-weight" in capsys.readouterr().err


FER_VENV = Path(os.environ.get("FER_VENV") or "benchmarks/.venv-fer") / "bin" / "python"


@pytest.mark.skipif(not FER_VENV.is_file(), reason="the fer peer venv is not set up here")
def test_the_real_fer_cnn_reads_our_aligned_crops(media, landmarker_model) -> None:
    """fer's CNN, in its own venv, on our aligned crop of a real smiling face (and its mirror
    image): happy; on a flat grey crop: not sure of anything."""
    import cv2

    from emotion_estimator.blendshapes import FaceLandmarker
    from emotion_estimator.features import face_crop

    image = cv2.imread(str(media / "single_face.jpg"))
    faces = FaceLandmarker(mode="image", max_faces=1).detect(image)
    assert len(faces) == 1
    crop = face_crop(image, faces[0])
    got = peer_expressions(np.stack([crop, crop[:, ::-1], np.full_like(crop, 128)]),
                           str(FER_VENV))
    assert got.shape == (3, 7) and np.allclose(got.sum(1), 1, atol=1e-4)
    assert got[0].argmax() == HAPPY and got[1].argmax() == HAPPY
    assert got[2].max() < got[0].max()
