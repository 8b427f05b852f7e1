"""Fusion classifier training side: learning a toy task, fine head, resume, ONNX export,
augmentation, label mapping, split merging, the operating point and the CLI's input checks.

Everything runs on small synthetic :class:`FusionSplit` s where each class leaves a mark in
every input (a bright blob in the crop, a shifted landmark, a raised blendshape), all of them
left/right symmetric so that a flip keeps the label.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES, Face  # noqa: E402
from emotion_estimator.classifier import EmotionClassifier, metadata_path  # noqa: E402
from emotion_estimator.cli import cli  # noqa: E402
from emotion_estimator.errors import InputError  # noqa: E402
from emotion_estimator.expressions import EXPRESSIONS, SOURCE_NAMES  # noqa: E402
from emotion_estimator.features import LEFT_EYE, N_LANDMARKS, RIGHT_EYE, build  # noqa: E402
from emotion_estimator.training.fusion.augment import (  # noqa: E402
    AugmentConfig,
    augment,
    blendshape_mirror,
    landmark_mirror,
)
from emotion_estimator.training.fusion.data import (  # noqa: E402
    FINE_CLASSES,
    FusionSplit,
    fine_indices,
    merge_splits,
)
from emotion_estimator.training.fusion.export import export_fusion  # noqa: E402
from emotion_estimator.training.fusion.train import (  # noqa: E402
    CHECKPOINT,
    STATE,
    FusionConfig,
    load_fusion,
    train_fusion,
)
from emotion_estimator.training.operating_points import fit_operating_point  # noqa: E402

CLASSES = ("happy", "sad", "unknown")
SIZE = 48
SMILE = (BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight"))
BROW = BLENDSHAPE_NAMES.index("browInnerUp")
CHIN = 0  # the landmark whose height marks the class


def symmetric_shape(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A left/right symmetric (478, 3) shape and its true mirror index map.

    Ten points lie on the midline (their own twins); the rest come in pairs at (x, y, z) and
    (-x, y, z), scattered over the indices.
    """
    rng = np.random.default_rng(seed)
    mid = 10
    half = (N_LANDMARKS - mid) // 2
    right = np.column_stack([rng.uniform(0.05, 1.0, half), rng.uniform(-1, 1, half),
                             rng.uniform(-0.3, 0.3, half)])
    left = right * np.array([-1.0, 1.0, 1.0])
    centre = np.column_stack([np.zeros(mid), rng.uniform(-1, 1, mid), rng.uniform(-0.3, 0.3, mid)])
    points = np.concatenate([centre, right, left])
    twin = np.concatenate([np.arange(mid), np.arange(half) + mid + half, np.arange(half) + mid])
    order = rng.permutation(N_LANDMARKS)  # position i holds point order[i]
    where = np.argsort(order)  # point j sits at position where[j]
    return points[order].astype(np.float32), where[twin[order]]


def toy_split(n: int, seed: int, fine: bool | str = True) -> FusionSplit:
    """``n`` rows of a learnable 3-class task over all three inputs.

    ``fine``: True -> fine labels (happy, sad, neutral per class); False -> none; "unknown" ->
    -1 everywhere.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    face = rng.normal(110, 25, (n, SIZE, SIZE))
    face[y == 0, 4:16, 16:32] = 240  # happy: a blob at the top centre
    face[y == 1, 32:44, 16:32] = 240  # sad: at the bottom centre
    shape, _ = symmetric_shape()
    lm = shape[None] + rng.normal(0, 0.02, (n, N_LANDMARKS, 3))
    lm[:, CHIN, 1] += np.select([y == 0, y == 1], [0.4, -0.4], 0.0)
    bs = rng.beta(0.5, 6, (n, 52))
    bs[y == 0, SMILE[0]] += 0.6
    bs[y == 0, SMILE[1]] += 0.6
    bs[y == 1, BROW] += 0.6
    if fine is True:
        fine_y = np.array([FINE_CLASSES.index(c) for c in ("happy", "sad", "neutral")])[y]
    elif fine == "unknown":
        fine_y = np.full(n, -1)
    else:
        fine_y = None
    return FusionSplit({"face": face.clip(0, 255).astype(np.uint8),
                        "landmarks": lm.astype(np.float32),
                        "blendshapes": np.clip(bs, 0, 1).astype(np.float32)},
                       y.astype(np.int64), np.eye(3, dtype=np.float32)[y],
                       np.arange(n) + 1000 * seed, fine_y)


def toy_splits(fine: bool | str = True, n_train: int = 192, n_val: int = 60) -> dict:
    return {"train": toy_split(n_train, 1, fine), "val": toy_split(n_val, 2, fine)}


def config(**kw) -> FusionConfig:
    base = dict(epochs=3, width=8, batch_size=16, lr=1e-2, threads=1, device="cpu",
                augment=False, modality_dropout=0.0, dropout=0.1, classes=CLASSES)
    return FusionConfig(**{**base, **kw})


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, dict]:
    """One trained toy run (folder, checkpoint dict, splits), shared by the export tests."""
    out = tmp_path_factory.mktemp("fusion") / "run"
    splits = toy_splits()
    ckpt = train_fusion(config(), out, splits=splits, log=quiet)
    return out, ckpt, splits


# ---- training ------------------------------------------------------------------------------


def test_train_learns_toy_task_and_writes_run(run) -> None:
    out, ckpt, splits = run
    assert {CHECKPOINT, STATE, "metrics.json", "history.csv"} <= {p.name for p in out.iterdir()}
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(history["train_loss"]).all()
    assert history["val_accuracy"].max() >= 0.75  # chance is 1/3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["val_rows"] == len(splits["val"])
    assert metrics["config"]["width"] == 8 and metrics["val"]["accuracy"] >= 0.8
    # the stored model really is the one that scores so
    model, stored = load_fusion(out / CHECKPOINT)
    with torch.no_grad():
        logits, aux = model(**{k: torch.from_numpy(v) for k, v in splits["val"].inputs.items()})
    assert (logits.argmax(1).numpy() == splits["val"].y).mean() >= 0.75
    assert set(aux) == {"face", "landmarks", "blendshapes", "fine"}  # the expression head
    assert stored["fine_temperature"] > 0 and stored["fine_classes"] == list(FINE_CLASSES)
    assert set(stored["operating_points"]) == {"balanced", "sad-sensitive"}
    assert stored["operating_points"]["balanced"] == {c: 0.0 for c in CLASSES}
    assert stored["temperature"] > 0 and len(stored["offsets"]) == 3
    # trained in the channels-last layout, stored in the default one (views of weights work)
    state = torch.load(out / STATE, weights_only=False)
    for weights in (stored["state_dict"], state["model"], state["ema"]):
        assert all(v.is_contiguous() for v in weights.values())


def test_fine_head_exists_with_fine_labels(run) -> None:
    out, ckpt, _ = run
    assert ckpt["dims"]["n_fine"] == len(FINE_CLASSES)
    assert ckpt["dims"]["fine_hidden"] == 128  # an MLP head, not one linear layer
    assert ckpt["state_dict"]["fine.4.weight"].shape[0] == len(FINE_CLASSES)
    model, _ = load_fusion(out / CHECKPOINT)
    model.train()
    batch = {k: torch.from_numpy(v[:4]) for k, v in toy_split(4, 9).inputs.items()}
    _, aux = model(**batch)
    assert aux["fine"].shape == (4, len(FINE_CLASSES))


@pytest.mark.parametrize("fine", [False, "unknown"])
def test_no_fine_head_without_fine_labels(tmp_path, fine) -> None:
    ckpt = train_fusion(config(epochs=1, fine_weight=0.3), tmp_path, log=quiet,
                        splits=toy_splits(fine, n_train=64, n_val=30))
    assert ckpt["dims"]["n_fine"] == 0
    assert not any(k.startswith("fine.") for k in ckpt["state_dict"])
    assert np.isfinite(pd.read_csv(tmp_path / "history.csv")["train_loss"]).all()


def test_partly_unknown_fine_labels_keep_loss_finite(tmp_path) -> None:
    """One known fine label in 64 rows: 3 of the 4 batches of an epoch have none, which
    must not make a NaN loss."""
    splits = toy_splits(n_train=64, n_val=30)
    splits["train"].fine[1:] = -1
    ckpt = train_fusion(config(epochs=2), tmp_path, splits=splits, log=quiet)
    assert ckpt["dims"]["n_fine"] == len(FINE_CLASSES)
    assert np.isfinite(pd.read_csv(tmp_path / "history.csv")["train_loss"]).all()
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
               if v.is_floating_point())


def test_only_whole_batches_are_trained(tmp_path) -> None:
    """70 rows at batch 32: 2 whole batches per epoch, the last 6 rows left to the next."""
    splits = toy_splits(n_train=70, n_val=30)
    train_fusion(config(epochs=1, batch_size=32), tmp_path, splits=splits, log=quiet)
    state = torch.load(tmp_path / STATE, weights_only=False)
    assert state["schedule"]["last_epoch"] == 2


class Stop(Exception):
    pass


def test_resume_continues_at_the_interrupted_epoch(tmp_path) -> None:
    splits = toy_splits(n_train=64, n_val=30)

    def stop_at_third(line: str) -> None:  # epoch 3 is logged before its state is saved
        if line.startswith("epoch   3/"):
            raise Stop

    with pytest.raises(Stop):
        train_fusion(config(epochs=4), tmp_path, splits=splits, log=stop_at_third)
    assert not (tmp_path / CHECKPOINT).exists()
    state = torch.load(tmp_path / STATE, weights_only=False)
    assert state["epoch"] == 2 and len(state["history"]) == 2

    lines: list[str] = []
    ckpt = train_fusion(config(epochs=4), tmp_path, splits=splits, log=lines.append,
                        resume=True)
    assert any(line.startswith("resumed") and "epoch 2" in line for line in lines)
    trained = [line.split()[1] for line in lines if line.startswith("epoch")]
    assert trained == ["3/4", "4/4"]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert ckpt["metrics"]["epochs"] == 4
    # the first two rows are the interrupted run's, kept as they were
    assert np.allclose(history["train_loss"][:2], [r["train_loss"] for r in state["history"]])


def test_resume_with_a_longer_schedule_is_refused_clearly(tmp_path) -> None:
    """The one-cycle schedule is fixed by epochs x steps: a run of 2 epochs cannot be resumed
    as one of 3 (it used to die stepping the scheduler past its end)."""
    splits = toy_splits(n_train=64, n_val=30)
    train_fusion(config(epochs=2), tmp_path, splits=splits, log=quiet)
    with pytest.raises(InputError, match="epochs"):
        train_fusion(config(epochs=3), tmp_path, splits=splits, log=quiet, resume=True)


def test_resume_of_a_finished_run_trains_nothing_more(tmp_path) -> None:
    splits = toy_splits(n_train=64, n_val=30)
    first = train_fusion(config(epochs=2), tmp_path, splits=splits, log=quiet)
    lines: list[str] = []
    again = train_fusion(config(epochs=2), tmp_path, splits=splits, log=lines.append,
                         resume=True)
    assert not [line for line in lines if line.startswith("epoch")]
    assert again["metrics"]["epochs"] == 2
    assert all(torch.equal(first["state_dict"][k], again["state_dict"][k])
               for k in first["state_dict"])


# ---- export --------------------------------------------------------------------------------


def synthetic_face(i: int, width: int = 320, height: int = 240) -> Face:
    """A Face whose eye corners (all features look at) sit somewhere plausible."""
    rng = np.random.default_rng(100 + i)
    lm = rng.uniform(0.3, 0.7, (N_LANDMARKS, 3)).astype(np.float32)
    lm[:, 2] = rng.normal(0, 0.02, N_LANDMARKS)
    cx, cy, half = 0.5 + 0.03 * i, 0.45 - 0.02 * i, 0.08 + 0.01 * i
    for k, x in zip((*RIGHT_EYE, *LEFT_EYE), (-1.4, -0.6, 0.6, 1.4), strict=True):
        lm[k, :2] = (cx + x * half / 1.4, cy + 0.005 * k / N_LANDMARKS)
    scores = rng.beta(0.5, 6, 52).astype(np.float32)
    return Face(scores=scores, box=(0.0, 0.0, float(width), float(height)), landmarks=lm)


def test_cli_export_takes_a_fusion_run_folder(run, tmp_path, capsys) -> None:
    out, _, _ = run
    assert cli(["export", str(out), "--out", str(tmp_path / "m.onnx"), "--note", "n"]) == 0
    stored = json.loads(metadata_path(tmp_path / "m.onnx").read_text())
    assert stored["model"]["kind"] == "fusion" and stored["note"] == "n"
    assert stored["model"]["layout"] == "folded"  # one run: constants folded into layers
    assert "1 member(s)" in capsys.readouterr().out
    assert EmotionClassifier.load(tmp_path / "m.onnx").needs_image
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fusion.pt").write_text("garbage")
    assert cli(["export", str(bad), "--out", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a fusion checkpoint" in err[0]
    assert not (tmp_path / "b.onnx").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["export", str(empty), "--out", str(tmp_path / "e.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fusion.pt or ensemble.pt" in err[0]


def test_export_matches_torch_and_declares_inputs(run, tmp_path) -> None:
    import onnxruntime as ort

    out, _, splits = run
    # a calibration that moves the probabilities (the toy run's own offsets may all be 0)
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    ckpt["temperature"], ckpt["offsets"] = 1.7, [0.6, -0.4, 0.0]
    torch.save(ckpt, tmp_path / CHECKPOINT)
    onnx_path = tmp_path / "fusion.onnx"
    meta = export_fusion(tmp_path / CHECKPOINT, onnx_path)
    assert onnx_path.is_file() and metadata_path(onnx_path).is_file()
    stored = json.loads(metadata_path(onnx_path).read_text())
    assert stored["classes"] == list(CLASSES) and stored["model"]["kind"] == "fusion"
    assert stored["offsets"] == ckpt["offsets"] and stored["temperature"] == ckpt["temperature"]
    assert meta["onnx_torch_max_abs_diff"] <= 1e-4

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probs", "expressions"]
    assert stored["expressions"] == list(EXPRESSIONS)
    assert session.get_outputs()[0].shape[1] == len(CLASSES)

    clf = EmotionClassifier.load(onnx_path)
    assert clf.classes == CLASSES and clf.needs_image
    assert [(s["name"], s["kind"]) for s in clf.inputs] == [
        ("face", "face"), ("landmarks", "landmarks"), ("blendshapes", "blendshapes")]
    assert next(s for s in clf.inputs if s["kind"] == "face")["size"] == SIZE

    model, _ = load_fusion(out / CHECKPOINT)
    temperature, offsets = 1.7, torch.tensor([0.6, -0.4, 0.0])

    def torch_probs(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            logits, _ = model(**{k: torch.from_numpy(np.ascontiguousarray(v))
                                 for k, v in feeds.items()})
            return torch.softmax(logits / temperature + offsets, dim=-1).numpy()

    # faces found in a frame, through predict_faces (features built from the frame)
    image = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for faces in ([synthetic_face(0)], [synthetic_face(i) for i in range(3)]):
        got = clf.predict_faces(faces, image)
        want = torch_probs(build(clf.inputs, faces, image))
        assert got.shape == (len(faces), 3)
        np.testing.assert_allclose(got, want, atol=1e-4)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)

    # and the training rows themselves, batch 1 and batch 7, through the graph
    val = splits["val"].inputs
    for n in (1, 7):
        feeds = {k: v[:n] for k, v in val.items()}
        got = session.run(None, feeds)[0]
        np.testing.assert_allclose(got, torch_probs(feeds), atol=1e-4)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert (session.run(None, val)[0].argmax(1) == splits["val"].y).mean() >= 0.8


# ---- augmentation --------------------------------------------------------------------------


def aug_batch(n: int = 4) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(3)
    shape, _ = symmetric_shape()
    return {"face": torch.from_numpy(rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)),
            "landmarks": torch.from_numpy(
                (shape[None] + rng.normal(0, 0.1, (n, N_LANDMARKS, 3))).astype(np.float32)),
            "blendshapes": torch.from_numpy(rng.random((n, 52), dtype=np.float32))}


def test_landmark_mirror_is_an_involution_on_a_symmetric_shape() -> None:
    shape, twin = symmetric_shape()
    perm = landmark_mirror(shape)
    np.testing.assert_array_equal(perm, twin)
    np.testing.assert_array_equal(perm[perm], np.arange(N_LANDMARKS))
    np.testing.assert_allclose(shape[perm] * np.array([-1, 1, 1]), shape, atol=1e-6)


def test_blendshape_mirror_swaps_left_and_right() -> None:
    perm = blendshape_mirror()
    names = list(BLENDSHAPE_NAMES)
    np.testing.assert_array_equal(perm[perm], np.arange(52))
    assert names[perm[names.index("mouthSmileLeft")]] == "mouthSmileRight"
    assert names[perm[names.index("eyeBlinkRight")]] == "eyeBlinkLeft"
    assert perm[names.index("jawOpen")] == names.index("jawOpen")


def test_flip_mirrors_every_input_together() -> None:
    batch = aug_batch()
    shape, _ = symmetric_shape()
    lm_perm = torch.from_numpy(landmark_mirror(shape))
    bs_perm = torch.from_numpy(blendshape_mirror())
    cfg = replace(AugmentConfig.off(), flip=1.0)
    out = augment(batch, cfg, torch.Generator().manual_seed(0), lm_perm, bs_perm)

    assert out["face"].dtype == torch.float32
    torch.testing.assert_close(out["face"], batch["face"].float().flip(-1))
    assert not torch.equal(out["face"], batch["face"].float())

    left, right = (BLENDSHAPE_NAMES.index(n) for n in ("mouthSmileLeft", "mouthSmileRight"))
    jaw = BLENDSHAPE_NAMES.index("jawOpen")
    torch.testing.assert_close(out["blendshapes"][:, left], batch["blendshapes"][:, right])
    torch.testing.assert_close(out["blendshapes"][:, right], batch["blendshapes"][:, left])
    torch.testing.assert_close(out["blendshapes"][:, jaw], batch["blendshapes"][:, jaw])

    lm = batch["landmarks"]
    want = lm[:, lm_perm] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(out["landmarks"], want)
    # a point's mirror image is its twin's position with x negated
    _, twin = symmetric_shape()
    j = int(np.flatnonzero(twin != np.arange(N_LANDMARKS))[0])
    assert out["landmarks"][0, j, 0] == -lm[0, twin[j], 0]
    assert out["landmarks"][0, j, 1] == lm[0, twin[j], 1]
    # flipping twice gives the batch back
    again = augment(out, cfg, torch.Generator().manual_seed(0), lm_perm, bs_perm)
    torch.testing.assert_close(again["landmarks"], lm)
    torch.testing.assert_close(again["blendshapes"], batch["blendshapes"])
    torch.testing.assert_close(again["face"], batch["face"].float())


def test_augment_off_returns_the_batch_unchanged() -> None:
    batch = aug_batch()
    shape, _ = symmetric_shape()
    out = augment(batch, AugmentConfig.off(), torch.Generator().manual_seed(0),
                  torch.from_numpy(landmark_mirror(shape)), torch.from_numpy(blendshape_mirror()))
    assert set(out) == set(batch)
    assert out["face"].dtype == torch.float32
    torch.testing.assert_close(out["face"], batch["face"].float())
    torch.testing.assert_close(out["landmarks"], batch["landmarks"])
    torch.testing.assert_close(out["blendshapes"], batch["blendshapes"])


def test_default_augment_keeps_shapes_and_range() -> None:
    batch = aug_batch(8)
    shape, _ = symmetric_shape()
    out = augment(batch, AugmentConfig(), torch.Generator().manual_seed(1),
                  torch.from_numpy(landmark_mirror(shape)), torch.from_numpy(blendshape_mirror()))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: tuple(v.shape) for k, v in batch.items()}
    assert float(out["face"].min()) >= 0 and float(out["face"].max()) <= 255
    assert not torch.equal(out["face"], batch["face"].float())
    # each row's landmarks sit near either the row or its mirror image (rotation, jitter)
    lm = batch["landmarks"]
    mirrored = lm[:, torch.from_numpy(landmark_mirror(shape))] * torch.tensor([-1.0, 1.0, 1.0])
    near = torch.minimum((out["landmarks"] - lm).abs().amax((1, 2)),
                         (out["landmarks"] - mirrored).abs().amax((1, 2)))
    assert float(near.max()) < 0.15
    assert float((mirrored - lm).abs().amax((1, 2)).min()) > 0.3  # the two are told apart


# ---- labels and splits ---------------------------------------------------------------------


def test_fine_labels_map_names_synonyms_and_unknowns() -> None:
    source = pd.Series(["angry", "Happy", "sad", "neutral", "sadness", "happiness", "anger",
                        "contempt", "surprise", "fear", "disgust", "nonsense"])
    got = fine_indices(source)
    want = [FINE_CLASSES.index(c) if c else -1 for c in (
        "angry", "happy", "sad", "neutral", "sad", "happy", "angry", None, "surprise", "fear",
        "disgust", None)]
    assert got.dtype == np.int64
    assert got.tolist() == want


def write_dataset(path: Path, variants: tuple[str, ...], source: list[str],
                  splits: list[str]) -> Path:
    """A tiny prepared dataset (``dataset.parquet`` schema with fusion columns)."""
    rng = np.random.default_rng(len(source))
    to3 = {"happiness": "happy", "happy": "happy", "sadness": "sad", "sad": "sad"}
    rows = []
    for variant in variants:
        for i, (src, split) in enumerate(zip(source, splits, strict=True)):
            rows.append({"image_id": i, "split": split, "label": to3.get(src, "unknown"),
                         "source_label": src, "preprocess": variant, "augmented": False,
                         **dict(zip(BLENDSHAPE_NAMES, rng.random(52), strict=True)),
                         "landmarks": rng.normal(size=(N_LANDMARKS, 3)).astype(
                             np.float32).tobytes(),
                         "face": rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8).tobytes()})
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path / "dataset.parquet")
    return path


def test_load_splits_takes_the_only_variant_and_source_labels(tmp_path) -> None:
    from emotion_estimator.training.fusion.data import load_splits

    source = ["sadness", "happiness", "contempt", "anger", "neutral", "sad"]
    folder = write_dataset(tmp_path / "folder", ("raw",), source, ["train"] * 4 + ["val"] * 2)
    got = load_splits(folder, ("face", "landmarks", "blendshapes"), preprocess=None)
    train = got["train"]
    assert len(train) == 4 and len(got["val"]) == 2 and len(got["test"]) == 0
    assert train.y.tolist() == [1, 0, 2, 2]
    assert train.fine.tolist() == [FINE_CLASSES.index("sad"), FINE_CLASSES.index("happy"), -1,
                                   FINE_CLASSES.index("angry")]
    assert train.inputs["face"].shape == (4, SIZE, SIZE)
    assert train.inputs["face"].dtype == np.uint8
    two = write_dataset(tmp_path / "two", ("raw", "pad"), source, ["train"] * 6)
    with pytest.raises(InputError, match="variants"):
        load_splits(two, ("blendshapes",), preprocess=None)
    assert len(load_splits(two, ("blendshapes",), preprocess="pad")["train"]) == 6


def test_training_splits_repeat_extra_train_rows(tmp_path) -> None:
    from emotion_estimator.training.fusion.train import training_splits

    main = write_dataset(tmp_path / "fer", ("pad",), ["happy", "sad", "fear", "sad", "happy"],
                         ["train", "train", "train", "val", "test"])
    extra = write_dataset(tmp_path / "folder", ("raw",), ["sadness", "happiness", "anger"],
                          ["train", "train", "val"])
    got = training_splits(config(dataset=str(main), extra=(str(extra),), extra_repeat=3))
    assert len(got["train"]) == 3 + 3 * 2 and len(got["val"]) == 1 + 1
    assert got["train"].y.tolist() == [0, 1, 2, *[1, 0] * 3]
    assert got["val"].fine.tolist() == [FINE_CLASSES.index("sad"), FINE_CLASSES.index("angry")]


def test_merge_splits_repeats_and_concatenates() -> None:
    a, b = toy_split(6, 1), toy_split(4, 2)
    merged = merge_splits([a, b], [1, 3])
    assert len(merged) == 6 + 3 * 4
    np.testing.assert_array_equal(merged.y, np.concatenate([a.y, b.y, b.y, b.y]))
    np.testing.assert_array_equal(merged.fine, np.concatenate([a.fine, *[b.fine] * 3]))
    np.testing.assert_array_equal(merged.inputs["face"][6:10], b.inputs["face"])
    np.testing.assert_array_equal(merged.inputs["face"][14:18], b.inputs["face"])
    assert merged.target.shape == (18, 3) and merged.image_id.shape == (18,)
    # a part without fine labels leaves the merge without them
    c = toy_split(5, 3, fine=False)
    assert merge_splits([a, c]).fine is None
    assert len(merge_splits([a, c])) == 11


def test_merge_splits_refuses_mismatched_inputs() -> None:
    a = toy_split(6, 1)
    small = toy_split(4, 2)
    small.inputs["face"] = small.inputs["face"][:, :32, :32]
    with pytest.raises(InputError):
        merge_splits([a, small])
    fewer = toy_split(4, 2)
    del fewer.inputs["landmarks"]
    with pytest.raises(InputError):
        merge_splits([a, fewer], [1, 2])


def test_merge_splits_with_empty_parts() -> None:
    a = toy_split(6, 1)
    empty = FusionSplit({k: v[:0] for k, v in a.inputs.items()}, a.y[:0], a.target[:0],
                        a.image_id[:0], a.fine[:0])
    assert len(merge_splits([empty, a, empty], [1, 1, 3])) == 6
    np.testing.assert_array_equal(merge_splits([a, empty], [2, 1]).y, np.concatenate([a.y, a.y]))
    assert len(merge_splits([empty, empty])) == 0
    # an empty part of another crop size is no conflict
    odd = FusionSplit({**empty.inputs, "face": np.zeros((0, 32, 32), np.uint8)}, empty.y,
                      empty.target, empty.image_id, empty.fine)
    assert len(merge_splits([a, odd])) == 6


# ---- operating point -----------------------------------------------------------------------


def sad_called_happy(logits: np.ndarray, y: np.ndarray, off: np.ndarray) -> float:
    pred = (logits + off).argmax(1)
    return float((pred[y == 1] == 0).mean())


def test_operating_point_keeps_sad_as_happy_under_the_cap() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 200)
    logits = rng.normal(0, 0.3, (600, 3))
    logits[np.arange(600), y] += 1.5
    sad = np.flatnonzero(y == 1)
    confused = sad[:60]  # 30% of the sad faces lean happy, by a margin an offset can undo
    logits[confused, 0] = logits[confused, 1] + rng.uniform(0.1, 0.8, 60)
    assert sad_called_happy(logits, y, np.zeros(3)) > 0.25
    off = fit_operating_point(logits, y, CLASSES, max_sad_as_happy=0.03)
    assert off.shape == (3,) and off[2] == 0
    assert sad_called_happy(logits, y, off) <= 0.03
    # and it does not buy that by calling everything sad
    assert ((logits + off).argmax(1) == y).mean() > 0.8


def test_operating_point_takes_the_lowest_rate_when_the_cap_is_out_of_reach() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 100)
    logits = rng.normal(0, 0.3, (300, 3))
    logits[np.arange(300), y] += 1.5
    sad = np.flatnonzero(y == 1)
    logits[sad[:20], 0] = logits[sad[:20], 1] + 10.0  # beyond any offset in the grid
    off = fit_operating_point(logits, y, CLASSES, max_sad_as_happy=0.0)
    assert sad_called_happy(logits, y, off) == pytest.approx(0.2)


# ---- CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", ["face,nose", ",", "landmark"])
def test_cli_fusion_bad_inputs_exit_2_with_one_line(tmp_path, capsys, inputs) -> None:
    dataset = tmp_path / "dataset.parquet"
    dataset.write_bytes(b"not read before the options are checked")
    code = cli(["train", str(dataset), "--out", str(tmp_path / "run"), "--kind", "fusion",
                f"--inputs={inputs}"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotion-estimator: error:")
    assert "--inputs" in lines[0] and "Traceback" not in captured.err
    assert not (tmp_path / "run").exists()


def test_a_val_split_without_sad_faces_still_finishes(tmp_path) -> None:
    splits = toy_splits(fine=False)
    val = splits["val"]
    keep = val.y != 1
    splits["val"] = FusionSplit({k: v[keep] for k, v in val.inputs.items()}, val.y[keep],
                                val.target[keep], val.image_id[keep])
    lines: list[str] = []
    ckpt = train_fusion(config(epochs=1), tmp_path / "run", splits=splits, log=lines.append)
    assert ckpt["metrics"]["val"]["sad_as_happy"] is None
    assert "sad->happy n/a" in lines[-1]
    assert (tmp_path / "run" / CHECKPOINT).is_file()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--extra", "missing-dataset"], "missing-dataset"),
    (["--extra-repeat", "0"], "--extra-repeat"),
    (["--fine-weight", "-1"], "--fine-weight"),
    (["--fine-balance", "2"], "--fine-balance"),
])
def test_cli_fusion_bad_extra_options_exit_2(tmp_path, capsys, extra, needle) -> None:
    dataset = tmp_path / "dataset.parquet"
    dataset.write_bytes(b"not read before the options are checked")
    code = cli(["train", str(dataset), "--out", str(tmp_path / "run"), "--kind", "fusion",
                *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_extra_options_reach_the_training_rows(tmp_path) -> None:
    """``--extra``/``--extra-repeat``/``--fine-weight`` from the command line to the rows."""
    import argparse

    from emotion_estimator.commands.train import configure, fusion_config_from_args
    from emotion_estimator.training.fusion.train import training_splits

    main = write_dataset(tmp_path / "fer", ("pad",), ["happy", "sad", "fear", "sad"],
                         ["train", "train", "train", "val"])
    extra = write_dataset(tmp_path / "folder", ("raw",), ["sadness", "anger"],
                          ["train", "val"])
    p = argparse.ArgumentParser()
    configure(p)
    args = p.parse_args([str(main), "--out", str(tmp_path / "run"), "--kind", "fusion",
                         "--extra", str(extra), "--extra-repeat", "4", "--fine-weight", "0.5"])
    cfg = fusion_config_from_args(args)
    assert cfg.extra == (str(extra),) and cfg.extra_repeat == 4 and cfg.fine_weight == 0.5
    got = training_splits(cfg)
    assert len(got["train"]) == 3 + 4 and len(got["val"]) == 2


# ---- robot costs, hard faces, ensembles ----------------------------------------------------


def test_hard_examples_are_smile_shaped_non_happy_faces_and_crying_sad_ones() -> None:
    from emotion_estimator.training.fusion.train import hard_examples

    split = toy_split(6, 3)
    split.y[:] = [0, 1, 2, 1, 2, 1]  # happy, sad, unknown, sad, unknown, sad
    bs = np.zeros((6, 52), np.float32)
    bs[[0, 1, 2], SMILE[0]] = bs[[0, 1, 2], SMILE[1]] = 0.5  # smiling mouths
    blink = [BLENDSHAPE_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    bs[5, BROW], bs[5, blink] = 0.3, 0.8  # raised inner brows, shut eyes
    bs[4, BROW], bs[4, blink] = 0.3, 0.8  # the same on an 'unknown' face: not sad
    split.inputs["blendshapes"] = bs
    assert hard_examples(split, CLASSES).tolist() == [False, True, True, False, False, True]


def test_cost_term_makes_sad_called_happy_the_dearest_error() -> None:
    import torch

    from emotion_estimator.training.fusion.train import _loss, cost_matrix

    costs = torch.from_numpy(cost_matrix(CLASSES))
    sad = torch.tensor([[0.0, 1.0, 0.0]])
    as_happy = torch.tensor([[2.0, 0.0, -5.0]])  # the same cross-entropy, the mass elsewhere
    as_unknown = torch.tensor([[-5.0, 0.0, 2.0]])
    plain = [_loss(z, sad, None, 0.0).item() for z in (as_happy, as_unknown)]
    assert plain[0] == pytest.approx(plain[1])
    costly = [_loss(z, sad, None, 0.0, costs=costs, cost_weight=1.0).item()
              for z in (as_happy, as_unknown)]
    assert costly[0] > costly[1] + 0.5
    weighted = _loss(torch.cat([as_happy, as_unknown]), torch.cat([sad, sad]), None, 0.0,
                     torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * plain[0] + plain[1]) / 4, rel=1e-5)


def test_one_run_is_exported_folded_with_the_expression_view_in_order(run, tmp_path) -> None:
    import onnxruntime as ort

    from emotion_estimator.training.fusion.export import probabilities_module

    out, _, splits = run
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    ckpt["fine_temperature"] = 1.6  # away from 1, so a missed fold shows
    torch.save(ckpt, tmp_path / CHECKPOINT)
    meta = export_fusion(tmp_path / CHECKPOINT, tmp_path / "f.onnx")
    assert meta["model"]["layout"] == "folded" and meta["onnx_torch_max_abs_diff"] <= 1e-4
    ops = [n.op_type for n in onnx.load(str(tmp_path / "f.onnx")).graph.node]
    # batch norms, the expression reorder, the temperature and log-softmax steps: all folded
    assert not {"BatchNormalization", "Gather", "Log", "Clip"} & set(ops)
    assert ops.count("Softmax") == 2
    plain = probabilities_module(ckpt)  # what the graph replaces, traced as it is
    traced = tmp_path / "plain.onnx"
    feeds = {k: v[:7] for k, v in splits["val"].inputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(plain, tuple(torch.from_numpy(v) for v in feeds.values()), traced,
                          input_names=list(feeds), dynamo=False)
    assert len(ops) < len(onnx.load(str(traced)).graph.node) * 0.8
    probs, expr = ort.InferenceSession(str(tmp_path / "f.onnx")).run(None, feeds)
    model, _ = load_fusion(tmp_path / CHECKPOINT)
    with torch.no_grad():
        logits, aux = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    order = [[SOURCE_NAMES[i] for i in ckpt["fine_classes"]].index(e) for e in EXPRESSIONS]
    want = torch.softmax(aux["fine"] / 1.6, -1).numpy()[:, order]
    np.testing.assert_allclose(expr, want, atol=1e-5)
    z = logits.numpy() / ckpt["temperature"] + np.array(ckpt["offsets"])
    np.testing.assert_allclose(probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-5)


def test_a_run_without_expressions_or_landmarks_is_folded_too(tmp_path) -> None:
    import onnxruntime as ort

    splits = {k: replace(v, inputs={n: a for n, a in v.inputs.items() if n != "landmarks"})
              for k, v in toy_splits(fine=False).items()}
    train_fusion(config(epochs=1, inputs=("face", "blendshapes"), fine_weight=0.0),
                 tmp_path / "run", splits=splits, log=quiet)
    meta = export_fusion(tmp_path / "run" / CHECKPOINT, tmp_path / "m.onnx")
    assert meta["model"]["layout"] == "folded" and meta["onnx_torch_max_abs_diff"] <= 1e-4
    assert meta["expressions"] is None
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["face", "blendshapes"]
    assert [o.name for o in session.get_outputs()] == ["probs"]


def test_a_separable_stem_starts_from_a_full_stem_run_and_exports(run, tmp_path) -> None:
    from emotion_estimator.training.fusion.ensemble import ENSEMBLE, combine_runs
    from emotion_estimator.training.fusion.model import FusionDimensions, FusionNet
    from emotion_estimator.training.fusion.train import start_from

    out, ckpt, splits = run
    dims = {**ckpt["dims"], "inputs": tuple(ckpt["dims"]["inputs"]), "stem": "separable"}
    model = FusionNet(FusionDimensions(**dims))
    fresh = start_from(model, out)
    assert fresh == ["branches.face.stem.3", "branches.face.stem.4", "branches.face.stem.5"]
    theirs = ckpt["state_dict"]
    for name, value in model.state_dict().items():
        if not name.startswith("branches.face.stem.") or name.split(".")[3] in "012":
            assert torch.equal(value, theirs[name]), name
    narrower = FusionNet(FusionDimensions(**{**dims, "width": 16}))
    with pytest.raises(InputError, match="width"):
        start_from(narrower, out)

    runs = []
    for seed in (0, 1):
        lines: list[str] = []
        train_fusion(config(epochs=1, seed=seed, stem="separable", init=str(out)),
                     tmp_path / f"s{seed}", splits=splits, log=lines.append)
        assert any("another stem" in line for line in lines)
        runs.append(tmp_path / f"s{seed}")
    one = export_fusion(runs[0] / CHECKPOINT, tmp_path / "one.onnx")
    assert one["model"]["stem"] == "separable" and one["onnx_torch_max_abs_diff"] <= 1e-4
    combine_runs(runs, tmp_path, log=quiet, val=splits["val"])
    both = export_fusion(tmp_path / ENSEMBLE, tmp_path / "ens.onnx")
    assert both["model"]["layout"] == "wide" and both["onnx_torch_max_abs_diff"] <= 1e-4
    layers = [sum(n.op_type in ("Conv", "Gemm", "MatMul")
                  for n in onnx.load(str(tmp_path / f)).graph.node)
              for f in ("one.onnx", "ens.onnx")]
    assert layers[0] == layers[1] > 0  # the stem's extra layer widened like the others


def redundant_run(run, tmp_path: Path, support: np.ndarray) -> Path:
    """The toy run with stem channels 4 and 5 copies of 0 and 1 (weights and batch norm) and
    a landmark layer that reads only the coordinates ``support``: what compressing to 4
    channels and ``len(support)`` coordinates can drop without losing anything."""
    out, ckpt, _ = run
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    state = ckpt["state_dict"]
    for name in ("branches.face.stem.0.weight", *(f"branches.face.stem.1.{k}" for k in
                 ("weight", "bias", "running_mean", "running_var"))):
        state[name][4:6] = state[name][0:2].clone()
    first = state["branches.landmarks.body.0.weight"]
    dropped = np.setdiff1d(np.arange(first.shape[1]), support)
    first[:, dropped] = 0.0
    first[:, support] = torch.sign(first[:, support]) * (0.5 + first[:, support].abs())
    torch.save(ckpt, tmp_path / CHECKPOINT)
    return tmp_path / CHECKPOINT


def test_compressing_drops_what_adds_nothing_and_keeps_the_function(run, tmp_path) -> None:
    import onnxruntime as ort

    from emotion_estimator.training.fusion.compress import Compression

    support = np.random.default_rng(3).choice(N_LANDMARKS * 3, 20, replace=False)
    checkpoint = redundant_run(run, tmp_path, support)
    plain = export_fusion(checkpoint, tmp_path / "plain.onnx")
    assert "compressed" not in plain["model"]
    train, val = toy_split(3000, 7).inputs, toy_split(200, 8).inputs
    meta = export_fusion(checkpoint, tmp_path / "small.onnx", rows=(train, val),
                         compression=Compression(stem_channels=4, landmark_coordinates=20))
    done = meta["model"]["compressed"]
    assert done["stem_channels"] == [6, 4] and done["landmark_coordinates"] == [1434, 20]
    assert done["stem_unexplained"] < 1e-6 and done["landmarks_unexplained"] < 1e-6
    assert done["validation"]["same_class"] == 1.0 and done["validation"]["rows"] == 200
    assert done["validation"]["max_abs_diff"] < 1e-4 and meta["onnx_torch_max_abs_diff"] < 1e-4
    graph = onnx.load(str(tmp_path / "small.onnx")).graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert weights[convs[0].input[1]] == [4, 1, 3, 3] and weights[convs[1].input[1]][1] == 4
    gather = next(n for n in graph.node if n.op_type == "Gather")
    index = next(t for t in graph.initializer if t.name == gather.input[1])
    assert sorted(onnx.numpy_helper.to_array(index).tolist()) == sorted(support.tolist())
    feeds = {k: v[:50] for k, v in val.items()}
    want = ort.InferenceSession(str(tmp_path / "plain.onnx")).run(None, feeds)
    got = ort.InferenceSession(str(tmp_path / "small.onnx")).run(None, feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert (tmp_path / "small.onnx").stat().st_size < (tmp_path / "plain.onnx").stat().st_size
    few = {k: v[:10] for k, v in train.items()}
    with pytest.raises(InputError, match="at least 16"):
        export_fusion(checkpoint, tmp_path / "few.onnx", rows=(few, val),
                      compression=Compression(stem_channels=4, landmark_coordinates=20))
    assert not (tmp_path / "few.onnx").exists()


def test_cli_compress_fits_on_the_runs_training_data_or_says_why_not(run, tmp_path,
                                                                     capsys) -> None:
    out, _, _ = run
    target = tmp_path / "m.onnx"
    assert cli(["export", str(out), "--out", str(target), "--compress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training data" in err[0] and not target.exists()
    data = write_dataset(tmp_path / "fer", ("pad",), ["happy", "sad", "fear"] * 10,
                         ["train"] * 24 + ["val"] * 6)
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    ckpt["config"]["dataset"], ckpt["config"]["extra"] = str(data), []
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    for bad, needle in ((["--stem-channels", "7"], "stem channels: 1..6"),
                        (["--landmark-coordinates", "0"], "at least 1")):
        assert cli(["export", str(tmp_path / "run"), "--out", str(target), "--compress",
                    *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and not target.exists()
    assert cli(["export", str(tmp_path / "run"), "--out", str(target), "--compress",
                "--stem-channels", "3", "--landmark-coordinates", "40"]) == 0
    assert "6 -> 3" in capsys.readouterr().out
    done = json.loads(metadata_path(target).read_text())["model"]["compressed"]
    assert done["rows"] == 24 and done["validation"]["rows"] == 6
    assert EmotionClassifier.load(target).predict_inputs(
        {k: v[:2] for k, v in toy_split(4, 9).inputs.items()}).shape == (2, 3)


def test_an_ensemble_of_runs_is_one_graph_with_both_views_and_points(tmp_path) -> None:
    import onnxruntime as ort

    from emotion_estimator.training.fusion.ensemble import ENSEMBLE, combine_runs

    splits = toy_splits(n_train=96, n_val=45)
    runs = []
    for seed in (0, 1):
        train_fusion(config(epochs=2, seed=seed), tmp_path / f"seed-{seed}", splits=splits,
                     log=quiet)
        runs.append(tmp_path / f"seed-{seed}")
    ckpt = combine_runs(runs, tmp_path, log=quiet, val=splits["val"])
    assert (tmp_path / ENSEMBLE).is_file() and len(ckpt["members"]) == 2
    assert set(ckpt["operating_points"]) == {"balanced", "sad-sensitive"}
    assert ckpt["config"]["seeds"] == [0, 1]
    meta = export_fusion(tmp_path / ENSEMBLE, tmp_path / "ens.onnx")
    assert meta["model"]["members"] == 2 and meta["expressions"] == list(EXPRESSIONS)
    assert len(meta["training"]["member_commands"]) == 2  # each member's own command
    assert meta["onnx_torch_max_abs_diff"] <= 1e-4 and meta["model"]["layout"] == "wide"
    # one wide network: as many convolutions and dense layers (1x1 convolutions there) as
    # one member has, not two members' worth
    export_fusion(runs[0] / CHECKPOINT, tmp_path / "one.onnx")
    layers = [sum(n.op_type in ("Conv", "Gemm", "MatMul")
                  for n in onnx.load(str(tmp_path / f)).graph.node)
              for f in ("ens.onnx", "one.onnx")]
    assert layers[0] == layers[1] > 0
    # the graph averages its members' calibrated probabilities
    feeds = {k: v[:7] for k, v in splits["val"].inputs.items()}
    got, expr = ort.InferenceSession(str(tmp_path / "ens.onnx")).run(None, feeds)
    members = [load_fusion(r / CHECKPOINT) for r in runs]
    with torch.no_grad():
        probs = [torch.softmax(m(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0]
                               / c["temperature"], -1).numpy() for m, c in members]
    logp = np.log(np.clip(np.mean(probs, axis=0), 1e-7, None)) + ckpt["offsets"]
    want = np.exp(logp) / np.exp(logp).sum(1, keepdims=True)
    assert np.abs(got - want).max() < 1e-4
    assert expr.shape == (7, 7) and np.allclose(expr.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        fine = [torch.softmax(m(**{k: torch.from_numpy(v) for k, v in feeds.items()})[1]["fine"]
                              / c["fine_temperature"], -1).numpy() for m, c in members]
    order = [[SOURCE_NAMES[i] for i in ckpt["fine_classes"]].index(e) for e in EXPRESSIONS]
    assert np.abs(expr - np.mean(fine, axis=0)[:, order]).max() < 1e-4
    with pytest.raises(InputError, match="at least two"):
        combine_runs(runs[:1], tmp_path, log=quiet, val=splits["val"])


def test_cli_seeds_need_two_different_integers(tmp_path, capsys) -> None:
    dataset = tmp_path / "dataset.parquet"
    dataset.write_bytes(b"not read")
    for seeds in ("1", "0,0", "a,b"):
        code = cli(["train", str(dataset), "--out", str(tmp_path / "run"), "--kind", "fusion",
                    "--seeds", seeds])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "--seeds" in err[0]
    assert not (tmp_path / "run").exists()


def test_operating_point_counts_each_dataset_alike() -> None:
    """A small second dataset whose sad faces lean 'unknown' is outvoted when pooled; with
    the datasets counted alike the sad-recall floor holds on it too."""
    rng = np.random.default_rng(3)
    y = np.concatenate([np.repeat([0, 1, 2], 300), np.repeat([0, 1, 2], 20)])
    groups = np.concatenate([np.zeros(900, int), np.ones(60, int)])
    logits = rng.normal(0, 0.3, (960, 3))
    logits[np.arange(960), y] += 1.5
    small_sad = np.flatnonzero((groups == 1) & (y == 1))
    logits[small_sad, 2] = logits[small_sad, 1] + 1.2  # they read unknown by a margin
    def recall(off: np.ndarray) -> float:
        return float(((logits + off).argmax(1)[small_sad] == 1).mean())

    pooled = fit_operating_point(logits, y, CLASSES, 0.02, min_sad_recall=0.6)
    alike = fit_operating_point(logits, y, CLASSES, 0.02, min_sad_recall=0.6, groups=groups)
    assert recall(pooled) < 0.6 <= recall(alike)
    assert sad_called_happy(logits, y, alike) <= 0.02


def test_source_and_blend_labels_fold_the_source_not_the_majority(tmp_path) -> None:
    """A dataset labelled by FER+ majority still trains on FER2013's own labels on request:
    ``source`` = one-hot of the folded source label, ``blend`` = its mean with the vote shares."""
    from emotion_estimator.training.ferplus import DATASET_COLUMNS, PREFIX
    from emotion_estimator.training.fusion.data import load_splits

    source = ["sad", "happy", "angry", "neutral"]
    folder = write_dataset(tmp_path / "fer", ("pad",), source, ["train"] * 4)
    frame = pd.read_parquet(folder / "dataset.parquet")
    frame["label"] = ["happy", "happy", "sad", "unknown"]  # the majority disagrees on two
    for column in DATASET_COLUMNS:
        frame[column] = 0
    frame[PREFIX + "happiness"] = [10, 10, 0, 0]
    frame[PREFIX + "sadness"] = [0, 0, 10, 0]
    frame[PREFIX + "neutral"] = [0, 0, 0, 10]
    frame.to_parquet(folder / "dataset.parquet")
    inputs = ("blendshapes",)

    fer = load_splits(folder, inputs, labels="fer")["train"]
    assert fer.y.tolist() == [0, 0, 1, 2]
    own = load_splits(folder, inputs, labels="source")["train"]
    assert own.y.tolist() == [1, 0, 2, 2]
    assert own.target.tolist() == np.eye(3)[[1, 0, 2, 2]].tolist()
    blend = load_splits(folder, inputs, labels="blend")["train"]
    assert blend.y.tolist() == [1, 0, 2, 2]
    assert np.allclose(blend.target, [[.5, .5, 0], [1, 0, 0], [0, .5, .5], [0, 0, 1]])
    with pytest.raises(ValueError, match="labels"):
        load_splits(folder, inputs, labels="majority")


def test_init_starts_from_a_trained_run_and_refuses_another_shape(run, tmp_path) -> None:
    folder, ckpt, splits = run
    tuned = train_fusion(config(epochs=1, lr=1e-6, ema=0, init=str(folder)), tmp_path / "t",
                         splits=splits, log=quiet)
    for name, weights in ckpt["state_dict"].items():  # a tiny rate barely moves them
        if weights.dtype.is_floating_point and "running" not in name:
            assert torch.allclose(tuned["state_dict"][name], weights, atol=1e-3), name
    cold = train_fusion(config(epochs=1, lr=1e-6, ema=0), tmp_path / "c", splits=splits,
                        log=quiet)
    head = "head.4.weight"
    assert not torch.allclose(cold["state_dict"][head], ckpt["state_dict"][head], atol=1e-3)
    with pytest.raises(InputError, match="width"):
        train_fusion(config(epochs=1, width=16, init=str(folder)), tmp_path / "w",
                     splits=splits, log=quiet)
    with pytest.raises(InputError, match="no trained run"):
        train_fusion(config(epochs=1, init=str(tmp_path / "absent")), tmp_path / "a",
                     splits=splits, log=quiet)


def test_a_sad_leaning_point_never_calls_more_faces_happy_than_balanced() -> None:
    """Unconstrained, the best offsets for a high sad-recall floor raise happy too (they win
    back accuracy from unknown); the stored point may only lean toward sad."""
    from emotion_estimator.training.operating_points import fit_points

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), y] += 1.2
    logits[y == 1, 2] += 0.8  # sad faces lean unknown
    balanced = fit_operating_point(logits, y, CLASSES, 0.05, 0.3)
    free = fit_operating_point(logits, y, CLASSES, 0.05, 0.8)
    assert free[0] > balanced[0]  # the case this guards against
    points = fit_points(logits, y, CLASSES, 0.05, {"balanced": 0.3, "sad-leaning": 0.8})
    assert np.allclose(points["balanced"], balanced)
    assert points["sad-leaning"][0] <= balanced[0]
    assert points["sad-leaning"][1] >= balanced[1]
    pred = (logits + points["sad-leaning"]).argmax(1)
    assert (pred[y == 1] == 1).mean() >= 0.8
    # every face the leaning point calls happy, balanced calls happy too
    assert ((logits + balanced).argmax(1)[pred == 0] == 0).all()


def test_blend_takes_the_votes_from_the_csv_for_a_dataset_without_them(tmp_path) -> None:
    from emotion_estimator.training.ferplus import VOTE_NAMES
    from emotion_estimator.training.fusion.train import training_splits

    folder = write_dataset(tmp_path / "fer", ("pad",), ["sad", "happy"], ["train", "val"])
    votes = pd.DataFrame(0, index=range(2), columns=list(VOTE_NAMES))
    votes.loc[0, "happiness"] = 10  # image 0: FER2013 says sad, the annotators happy
    votes.loc[1, "happiness"] = 10
    votes.to_csv(tmp_path / "votes.csv", index=False)
    got = training_splits(config(dataset=str(folder), labels="blend",
                                 ferplus=str(tmp_path / "votes.csv")))
    assert got["train"].y.tolist() == [1]
    assert np.allclose(got["train"].target, [[0.5, 0.5, 0.0]])
    assert np.allclose(got["val"].target, [[1.0, 0.0, 0.0]])


def _train_parser_and_data(tmp_path: Path):
    """The ``train`` command's parser and a 3-train / 1-val toy dataset (happy, sad, fear)."""
    import argparse

    from emotion_estimator.commands.train import configure

    p = argparse.ArgumentParser()
    configure(p)
    return p, write_dataset(tmp_path / "fer", ("pad",), ["happy", "sad", "fear", "sad"],
                            ["train", "train", "train", "val"])


def test_teacher_probabilities_are_mixed_into_the_train_targets_only(run, tmp_path) -> None:
    """``--teacher RUN --teacher-weight W``: train targets = (1 - W) label + W teacher; val
    keeps its labels (it judges the student against the truth)."""
    from emotion_estimator.commands.train import _distilled_splits, fusion_config_from_args
    from emotion_estimator.training.fusion.distill import teacher_probabilities

    folder, _ckpt, _splits = run
    p, data = _train_parser_and_data(tmp_path)
    args = p.parse_args([str(data), "--out", str(tmp_path / "s"), "--kind", "fusion",
                         "--teacher", str(folder), "--teacher-weight", "0.25"])
    cfg = fusion_config_from_args(args)
    got = _distilled_splits(cfg)
    plain = _distilled_splits(replace(cfg, teacher=""))
    assert plain is None  # no teacher: the run reads its own data
    teacher, _ = teacher_probabilities(folder, got["val"])
    assert teacher.shape == (1, 3) and np.allclose(teacher.sum(1), 1, atol=1e-5)
    onehot = np.eye(3)[[0, 1, 2]]
    from_teacher = (got["train"].target - 0.75 * onehot) / 0.25
    assert np.allclose(from_teacher.sum(1), 1, atol=1e-4) and (from_teacher >= -1e-5).all()
    assert not np.allclose(from_teacher, onehot, atol=1e-2)  # the teacher is not the labels
    assert np.allclose(got["val"].target, np.eye(3)[[1]])
    with pytest.raises(InputError, match="--teacher"):
        _distilled_splits(replace(cfg, teacher=str(tmp_path / "absent")))
    bad = p.parse_args([str(data), "--out", str(tmp_path / "s"), "--kind", "fusion",
                        "--teacher", str(folder), "--teacher-weight", "1.5"])
    with pytest.raises(InputError, match="teacher-weight"):
        fusion_config_from_args(bad)


def test_seeds_with_a_teacher_read_the_data_and_ask_the_teacher_once(run, tmp_path,
                                                                     monkeypatch) -> None:
    import emotion_estimator.training.fusion.distill as distill

    folder, _ckpt, _splits = run
    data = write_dataset(tmp_path / "fer", ("pad",),
                         ["happy", "sad", "fear", "sad", "happy", "angry", "sad", "happy"],
                         ["train"] * 6 + ["val"] * 2)
    calls = []
    real = distill.teacher_probabilities
    monkeypatch.setattr(distill, "teacher_probabilities",
                        lambda path, split: calls.append(len(split)) or real(path, split))
    out = tmp_path / "ens"
    assert cli(["train", str(data), "--out", str(out), "--kind", "fusion", "--seeds", "0,1",
                "--teacher", str(folder), "--epochs", "1", "--batch-size", "2", "--width", "8",
                "--threads", "1", "--device", "cpu"]) == 0
    assert calls == [6]  # one teacher pass over the 6 train rows, shared by both seeds
    assert (out / "seed-0" / "fusion.pt").is_file() and (out / "seed-1" / "fusion.pt").is_file()
    assert (out / "ensemble.pt").is_file()


def test_fine_balance_weighs_rare_emotions_up() -> None:
    """``--fine-balance P``: each emotion's loss weight is (mean count / its count) ** P over
    the rows with a known emotion; P = 0 leaves the head unweighted."""
    from emotion_estimator.training.fusion.train import fine_class_weights

    fine = np.array([0] * 1 + [3] * 9 + [6] * 4 + [-1] * 50)  # angry 1, happy 9, neutral 4
    np.testing.assert_allclose(fine_class_weights(fine, 0.0).numpy(), np.ones(7))
    mean = 14 / 7
    full = fine_class_weights(fine, 1.0).numpy()
    np.testing.assert_allclose(full[[0, 3, 6]], [mean / 1, mean / 9, mean / 4], rtol=1e-6)
    assert full[1] == pytest.approx(mean)  # an emotion with no rows counts as one
    half = fine_class_weights(fine, 0.5).numpy()
    np.testing.assert_allclose(half, np.sqrt(full), rtol=1e-6)
    assert half[0] > 1 > half[6] > half[3]  # the rarer, the heavier


def _with_votes(folder: Path, votes: dict[str, list[int]]) -> Path:
    """``folder``'s dataset with FER+ vote columns (zero where ``votes`` names none)."""
    from emotion_estimator.training.ferplus import DATASET_COLUMNS, PREFIX

    frame = pd.read_parquet(folder / "dataset.parquet")
    for column in DATASET_COLUMNS:
        frame[column] = 0
    for name, counts in votes.items():
        frame[PREFIX + name] = counts
    frame.to_parquet(folder / "dataset.parquet")
    return folder


def test_expression_head_learns_ferplus_vote_shares_on_request(tmp_path) -> None:
    """``fine_labels="ferplus"``: the seven's vote shares (contempt's votes left out), the
    one-hot where an image has none; ``blend`` half each; the 3-class targets untouched."""
    from emotion_estimator.training.fusion.data import load_splits

    folder = _with_votes(write_dataset(tmp_path / "fer", ("pad",),
                                       ["sad", "happy", "angry", "neutral"], ["train"] * 4),
                         {"sadness": [6, 0, 0, 0], "contempt": [4, 0, 0, 0],
                          "happiness": [0, 5, 0, 0], "surprise": [0, 5, 0, 0],
                          "NF": [0, 0, 10, 0], "neutral": [0, 0, 0, 8], "fear": [0, 0, 0, 2]})
    e = {c: np.eye(7)[FINE_CLASSES.index(c)] for c in FINE_CLASSES}
    onehot = np.stack([e["sad"], e["happy"], e["angry"], e["neutral"]])
    votes = np.stack([e["sad"], (e["happy"] + e["surprise"]) / 2, e["angry"],
                      0.8 * e["neutral"] + 0.2 * e["fear"]])
    inputs = ("blendshapes",)
    own = load_splits(folder, inputs, labels="source")["train"]
    assert own.fine_target is None
    fp = load_splits(folder, inputs, labels="source", fine_labels="ferplus")["train"]
    assert np.allclose(fp.fine_target, votes)
    assert fp.target.tolist() == own.target.tolist() and fp.fine.tolist() == own.fine.tolist()
    blend = load_splits(folder, inputs, labels="source", fine_labels="blend")["train"]
    assert np.allclose(blend.fine_target, (onehot + votes) / 2)
    with pytest.raises(ValueError, match="fine_labels"):
        load_splits(folder, inputs, fine_labels="majority")
    # a folder of photos (no votes) merged in keeps its one-hot expression targets
    photos = load_splits(write_dataset(tmp_path / "photos", ("raw",), ["sadness", "anger"],
                                       ["train"] * 2), inputs, preprocess=None)["train"]
    merged = merge_splits([fp, photos])
    assert np.allclose(merged.fine_target, np.concatenate([votes, [e["sad"], e["angry"]]]))
    assert merge_splits([own, photos]).fine_target is None


def test_expression_votes_come_from_the_csv_for_a_dataset_without_them(tmp_path) -> None:
    from emotion_estimator.training.ferplus import VOTE_NAMES
    from emotion_estimator.training.fusion.train import training_splits

    folder = write_dataset(tmp_path / "fer", ("pad",), ["sad", "happy"], ["train", "val"])
    votes = pd.DataFrame(0, index=range(2), columns=list(VOTE_NAMES))
    votes.loc[0, ["fear", "sadness"]] = [5, 5]
    votes.loc[1, "happiness"] = 10
    votes.to_csv(tmp_path / "votes.csv", index=False)
    got = training_splits(config(dataset=str(folder), labels="source", fine_labels="ferplus",
                                 ferplus=str(tmp_path / "votes.csv")))
    want = np.zeros(7)
    want[[FINE_CLASSES.index("fear"), FINE_CLASSES.index("sad")]] = 0.5
    assert np.allclose(got["train"].fine_target, [want])
    assert np.allclose(got["train"].target, [[0, 1, 0]])  # the 3 classes: FER2013's own
    with pytest.raises(InputError, match="FER\\+ vote"):
        training_splits(config(dataset=str(folder), labels="source", fine_labels="ferplus"))


def test_teacher_expressions_teach_the_expression_head(run, tmp_path) -> None:
    """``--teacher-expressions``: the expression head's targets = (1 - W) label + W the
    teacher's seven; without it they stay the labels; it needs a teacher with that view."""
    from emotion_estimator.commands.train import _distilled_splits, fusion_config_from_args
    from emotion_estimator.training.fusion.distill import teacher_probabilities

    folder, _ckpt, _splits = run
    p, data = _train_parser_and_data(tmp_path)
    base = [str(data), "--out", str(tmp_path / "s"), "--kind", "fusion", "--teacher",
            str(folder), "--teacher-weight", "0.25"]
    cfg = fusion_config_from_args(p.parse_args([*base, "--teacher-expressions"]))
    got = _distilled_splits(cfg)["train"]
    three, seven = teacher_probabilities(folder, got)
    assert seven is not None and seven.shape == (3, 7)
    onehot = np.eye(7)[[FINE_CLASSES.index(c) for c in ("happy", "sad", "fear")]]
    assert np.allclose(got.fine_target, 0.75 * onehot + 0.25 * seven, atol=1e-6)
    assert not np.allclose(seven, onehot, atol=1e-2)  # the teacher is not the labels
    assert np.allclose(got.target, 0.75 * np.eye(3)[[0, 1, 2]] + 0.25 * three, atol=1e-6)
    assert _distilled_splits(replace(cfg, teacher_expressions=False))["train"].fine_target \
        is None
    with pytest.raises(InputError, match="needs --teacher"):
        fusion_config_from_args(p.parse_args([str(data), "--out", str(tmp_path / "s"),
                                              "--kind", "fusion", "--teacher-expressions"]))
    flat = train_fusion(config(epochs=1, fine_weight=0), tmp_path / "flat",
                        splits=_splits, log=quiet)
    assert not flat.get("fine_temperature")
    with pytest.raises(InputError, match="no expression view"):
        _distilled_splits(replace(cfg, teacher=str(tmp_path / "flat")))


def test_consistent_teacher_reads_every_augmented_batch(run, tmp_path) -> None:
    """``--consistent-teacher``: the teacher is asked once per training step, on the batch as
    augmented for the student (not on the stored rows), and is left out of the fixed targets;
    on un-augmented rows it answers as the fixed teacher does."""
    from emotion_estimator.commands.train import _distilled_splits, fusion_config_from_args
    from emotion_estimator.training.fusion.distill import batch_teacher, teacher_probabilities

    folder, _ckpt, splits = run
    teacher = batch_teacher(folder, ("face", "landmarks", "blendshapes"))
    val = splits["val"]
    fixed, _ = teacher_probabilities(folder, val)
    with torch.no_grad():
        asked = teacher(*(torch.from_numpy(val.inputs[n]) for n in teacher.names)).numpy()
    np.testing.assert_allclose(asked, fixed, atol=1e-5)
    seen: list[torch.Tensor] = []
    teacher.register_forward_hook(lambda _m, args, _out: seen.append(args[0].clone()))
    cfg = config(epochs=2, augment=True, teacher=str(folder), consistent_teacher=True)
    ckpt = train_fusion(cfg, tmp_path / "student", splits=splits, log=quiet, teacher=teacher)
    assert ckpt["config"]["consistent_teacher"] is True
    steps = len(splits["train"]) // cfg.batch_size
    assert len(seen) == 2 * steps and all(len(b) == cfg.batch_size for b in seen)
    stored = torch.from_numpy(splits["train"].inputs["face"]).float()
    for batch in seen[:4]:  # augmented: no crop in it is a stored crop
        assert all(not any(torch.equal(face, s) for s in stored) for face in batch.float())
    # what it says enters the targets: weight 0 trains exactly as no teacher, 0.5 otherwise
    zero = train_fusion(replace(cfg, teacher_weight=0.0), tmp_path / "zero", splits=splits,
                        log=quiet, teacher=teacher)
    alone = train_fusion(replace(cfg, teacher="", consistent_teacher=False), tmp_path / "alone",
                         splits=splits, log=quiet)

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    assert same(zero, alone) and not same(ckpt, zero)
    p, data = _train_parser_and_data(tmp_path)
    base = [str(data), "--out", str(tmp_path / "s"), "--kind", "fusion"]
    args = p.parse_args([*base, "--teacher", str(folder), "--consistent-teacher"])
    got = _distilled_splits(fusion_config_from_args(args))
    assert np.allclose(got["train"].target, np.eye(3)[[0, 1, 2]])  # labels only
    for extra in ([], ["--teacher", str(folder), "--teacher-expressions"],
                  ["--teacher", str(folder), "--peer-teacher", "fer"]):
        with pytest.raises(InputError, match="--consistent-teacher"):
            fusion_config_from_args(p.parse_args([*base, "--consistent-teacher", *extra]))

