"""FER2013 loading, class mapping, caps and augmentation (no MediaPipe needed)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_estimator.errors import InputError
from emotion_estimator.training import fer2013
from emotion_estimator.training.augment import Preprocess, apply_aug, aug_params
from emotion_estimator.training.caps import apply_caps, class_map, parse_caps


def _pixels(seed: int) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 48 * 48)))


def _write_csv(path: Path, rows: list[tuple[str, str, str]],
               header: str = "emotion,pixels,Usage") -> Path:
    lines = [header] + [f"{e},{p},{u}" for e, p, u in rows]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


GOOD = [("3", _pixels(0), "Training"), ("4", _pixels(1), "PublicTest"),
        ("0", _pixels(2), "PrivateTest")]


@pytest.mark.parametrize("name", ["f.csv", "f.csv.gz"])
def test_csv_and_gzip_give_ids_splits_labels_and_pixels(tmp_path, name):
    data = fer2013.load(_write_csv(tmp_path / name, GOOD))
    assert data.samples["image_id"].tolist() == [0, 1, 2]
    assert data.samples["split"].tolist() == ["train", "val", "test"]
    assert data.samples["source_label"].tolist() == ["happy", "sad", "angry"]
    assert data.pixels.shape == (3, 48, 48) and data.pixels.dtype == np.uint8
    expected = np.array(GOOD[1][1].split(), dtype=np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(data.pixels[1], expected)


def test_limit_takes_first_rows(tmp_path):
    data = fer2013.load(_write_csv(tmp_path / "f.csv", GOOD), limit=2)
    assert data.samples["image_id"].tolist() == [0, 1]


def test_wrong_header_names_line_1(tmp_path):
    path = _write_csv(tmp_path / "f.csv", GOOD, header="label,image,split")
    with pytest.raises(InputError, match="line 1"):
        fer2013.load(path)


@pytest.mark.parametrize("bad, reason", [
    (("3", " ".join(["1"] * 2303), "Training"), "2304"),
    (("3", " ".join(["300"] * 2304), "Training"), "0..255"),
    (("3", " ".join(["1"] * 2303 + ["x"]), "Training"), "not an integer"),
    (("9", _pixels(5), "Training"), "emotion"),
    (("3", _pixels(5), "Holdout"), "Usage"),
])
def test_bad_row_stops_with_its_line_number(tmp_path, bad, reason):
    path = _write_csv(tmp_path / "f.csv", [GOOD[0], bad, GOOD[2]])
    with pytest.raises(InputError, match=rf"line 3: .*{reason}"):
        fer2013.load(path)


def test_bad_row_skip_keeps_the_other_ids(tmp_path):
    bad = ("3", " ".join(["1"] * 10), "Training")
    data = fer2013.load(_write_csv(tmp_path / "f.csv", [GOOD[0], bad, GOOD[2]]),
                        on_bad_row="skip")
    assert data.samples["image_id"].tolist() == [0, 2]
    assert [b.line for b in data.bad_rows] == [3]


def test_missing_and_not_gzip_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        fer2013.load(tmp_path / "nope.csv")
    fake = tmp_path / "fake.csv.gz"
    fake.write_text("emotion,pixels,Usage\n")
    with pytest.raises(InputError, match="cannot read"):
        fer2013.load(fake)


def test_image_folder_layout(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for split, label in [("Training", "happy"), ("PrivateTest", "afraid"), ("Training", "sad")]:
        folder = tmp_path / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            cv2.imwrite(str(folder / f"{k}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    data = fer2013.load(tmp_path)
    # sorted by split folder, class folder, file name
    assert data.samples["split"].tolist() == ["test"] * 2 + ["train"] * 4
    assert data.samples["source_label"].tolist() == ["fear"] * 2 + ["happy"] * 2 + ["sad"] * 2
    assert data.samples["image_id"].tolist() == list(range(6))
    np.testing.assert_array_equal(data.pixels[2],
                                  cv2.imread(str(tmp_path / "Training/happy/0.png"), 0))


def test_real_csv_rows_match_the_file(fer_csv):
    data = fer2013.load(fer_csv, limit=300)
    assert data.samples["image_id"].tolist() == list(range(300))
    with gzip.open(fer_csv, "rt", newline="") as stream:
        rows = list(zip(range(301), csv.reader(stream), strict=False))[1:]
    for k in (0, 137, 299):
        emotion, pixels, _ = rows[k][1]
        assert data.samples.at[k, "source_label"] == fer2013.EMOTIONS[int(emotion)]
        np.testing.assert_array_equal(data.pixels[k].ravel(),
                                      np.array(pixels.split(), dtype=np.uint8))


# -- classes and caps ------------------------------------------------------------------------

def test_class_maps(tmp_path):
    three = class_map("3")
    assert three["happy"] == "happy" and three["sad"] == "sad"
    assert {three[e] for e in ("angry", "disgust", "fear", "surprise", "neutral")} == {"unknown"}
    assert class_map("7") == {e: e for e in fer2013.EMOTIONS}
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({e: "pos" if e == "happy" else "other"
                                   for e in fer2013.EMOTIONS}))
    assert class_map(str(mapping))["happy"] == "pos"
    mapping.write_text(json.dumps({"happy": "pos"}))
    with pytest.raises(InputError):
        class_map(str(mapping))


def _samples(n_per_class: int = 50) -> pd.DataFrame:
    rows = [(label, split) for label in fer2013.EMOTIONS for split in ("train", "val")
            for _ in range(n_per_class)]
    table = pd.DataFrame(rows, columns=["source_label", "split"])
    table.insert(0, "image_id", np.arange(len(table), dtype=np.int64))
    return table


def test_caps_limit_train_only_and_are_seeded():
    samples = _samples()
    caps = parse_caps("happy=10,sad=20,disgust=60")
    keep = apply_caps(samples, caps, seed=1)
    kept = samples[keep]
    train = kept[kept["split"] == "train"]["source_label"].value_counts()
    assert train["happy"] == 10 and train["sad"] == 20 and train["disgust"] == 50
    assert train["angry"] == 50  # unlisted: no cap
    assert (kept["split"] == "val").sum() == (samples["split"] == "val").sum()
    assert keep.equals(apply_caps(samples, caps, seed=1))
    assert not keep.equals(apply_caps(samples, caps, seed=2))
    # the draw depends on image ids, not on the order of the rows
    shuffled = samples.sample(frac=1.0, random_state=3)
    again = apply_caps(shuffled, caps, seed=1)
    assert set(shuffled[again]["image_id"]) == set(kept["image_id"])


def test_paper_caps_and_bad_spec():
    caps = parse_caps("paper")
    assert caps["happy"] == caps["sad"] == 4000 and caps["disgust"] is None
    assert all(caps[e] == 1500 for e in ("angry", "fear", "surprise", "neutral"))
    with pytest.raises(InputError):
        parse_caps("joy=3")


# -- preprocessing and augmentation ----------------------------------------------------------

def test_pad_replicates_the_border_and_resizes():
    image = np.zeros((48, 48), np.uint8)
    image[0, :] = 200
    out = Preprocess("pad", pad=12, size=144)(image)
    assert out.shape == (144, 144)
    assert out[0, 72] > 150  # the top row was replicated upwards, not zero-padded
    assert Preprocess("raw")(image) is image
    with pytest.raises(ValueError):
        Preprocess("sharpen")


def test_aug_params_are_seeded_per_image_and_bounded():
    a = [aug_params(0, i, 1, 36.0) for i in range(200)]
    assert a == [aug_params(0, i, 1, 36.0) for i in range(200)]
    assert a != [aug_params(1, i, 1, 36.0) for i in range(200)]
    angles = np.array([p["angle"] for p in a])
    assert np.abs(angles).max() <= 36.0 and angles.std() > 10
    assert 60 < sum(p["flip"] for p in a) < 140


def test_apply_aug_flip_and_rotation():
    image = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(apply_aug(image, {"flip": True, "angle": 0.0}),
                                  image[:, ::-1])
    # +90 degrees = counter-clockwise, about the pixel centre
    np.testing.assert_array_equal(apply_aug(image, {"flip": False, "angle": 90.0}),
                                  np.rot90(image))
