"""Labelled folders of images: layouts, class maps, stable ids, bad images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_estimator.errors import InputError
from emotion_estimator.training.folders import (
    holdout_mask,
    load_class_map,
    read_labelled_folder,
    stable_id,
)

MUXSPACE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "muxspace"


def _image(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


@pytest.fixture
def subfolders(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    _image(root / "happiness" / "a.jpg")
    _image(root / "Happy" / "b.png")
    _image(root / "sadness" / "c.jpg")
    _image(root / "neutral" / "d.jpeg")
    (root / "neutral" / "notes.txt").write_text("not an image, not listed")
    (root / "anger").mkdir()
    (root / "anger" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_subfolders_default_map_and_bad_image_listed(subfolders):
    folder = read_labelled_folder(subfolders)
    s = folder.samples
    assert list(s.columns) == ["image_id", "path", "source_label", "label"]
    assert dict(zip(s["source_label"], s["label"], strict=True)) == {
        "Happy": "happy", "happiness": "happy", "neutral": "unknown", "sadness": "sad"}
    assert s["image_id"].dtype == np.int64 and s["image_id"].is_unique
    assert folder.bad.to_dict("records") == [{"path": str(subfolders / "anger" / "broken.jpg"),
                                              "source_label": "anger",
                                              "reason": "not a decodable image"}]
    summary = folder.summary()
    assert summary["classes"] == {"happy": 2, "sad": 1, "unknown": 1} and summary["bad"] == 1


def test_stop_on_bad_image_names_the_path(subfolders):
    with pytest.raises(InputError, match=r"broken\.jpg: not a decodable image"):
        read_labelled_folder(subfolders, on_bad_image="stop")
    with pytest.raises(ValueError):
        read_labelled_folder(subfolders, on_bad_image="ignore")


def test_ids_stable_across_locations_and_additions(subfolders, tmp_path):
    before = read_labelled_folder(subfolders).samples
    moved = shutil.copytree(subfolders, tmp_path / "elsewhere")
    _image(moved / "sadness" / "new.jpg")
    after = read_labelled_folder(moved).samples
    rel = {Path(p).relative_to(moved).as_posix(): i
           for p, i in zip(after["path"], after["image_id"], strict=True)}
    for p, i in zip(before["path"], before["image_id"], strict=True):
        assert rel[Path(p).relative_to(subfolders).as_posix()] == i
    assert stable_id("sadness/new.jpg") in set(after["image_id"])


def test_labels_csv_with_map_file_lists_unknown_labels_and_missing_files(tmp_path):
    root = tmp_path / "set"
    _image(root / "img" / "1.jpg")
    _image(root / "img" / "2.jpg")
    _image(root / "img" / "3.jpg")
    _image(root / "ignored" / "x.jpg")  # labels.csv wins over subfolders
    (root / "labels.csv").write_text("path,label,extra\nimg/1.jpg,joy,a\nimg/2.jpg,grief,b\n"
                                     "img/3.jpg,pride,c\nimg/4.jpg,joy,d\n")
    cmap = tmp_path / "map.json"
    cmap.write_text(json.dumps({"Joy": "happy", "grief": "sad"}))  # no "*": pride is unknown
    folder = read_labelled_folder(root, cmap)
    assert folder.samples["label"].tolist() == ["happy", "sad"]
    reasons = dict(zip(folder.bad["path"], folder.bad["reason"], strict=True))
    assert reasons == {str(root / "img/3.jpg"): "unknown label 'pride' (not in the class map)",
                       str(root / "img/4.jpg"): "missing"}
    with pytest.raises(InputError, match=r"3\.jpg: unknown label 'pride'"):
        read_labelled_folder(root, cmap, on_bad_image="stop")
    assert len(read_labelled_folder(root, {"*": "unknown"}, verify=False).samples) == 3


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not valid JSON"), ("[]", "non-empty JSON object"),
    ('{"joy": "glad"}', "not one of"), ('{"joy": 1}', "must be strings")])
def test_bad_class_map_is_an_input_error(tmp_path, content, match):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        load_class_map(path)
    with pytest.raises(InputError, match="not found"):
        load_class_map(tmp_path / "absent.json")


def test_bad_folders_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_labelled_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        read_labelled_folder(tmp_path / "empty")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "labels.csv").write_text("file,label\na.jpg,happy\n")
    with pytest.raises(InputError, match="needs columns path,label"):
        read_labelled_folder(tmp_path / "csv")
    (tmp_path / "csv" / "labels.csv").write_text("path,label\na.jpg,\nb.jpg,happy\n")
    with pytest.raises(InputError, match=r"all 2 left out .*/a\.jpg: empty label"):
        read_labelled_folder(tmp_path / "csv")


def test_muxspace_three_class_counts():
    if not (MUXSPACE / "labels.csv").is_file():
        pytest.skip("../shared/data/muxspace is absent")
    folder = read_labelled_folder(MUXSPACE, verify=False)
    assert len(folder.samples) == 1629 and folder.bad.empty
    assert folder.summary()["classes"] == {"happy": 380, "sad": 182, "unknown": 1067}


def test_holdout_is_fixed_by_id_and_about_the_fraction():
    ids = np.array([stable_id(f"img/{i}.jpg") for i in range(4000)])
    mask = holdout_mask(ids, 0.25)
    assert 0.22 < mask.mean() < 0.28
    assert (holdout_mask(ids[::-1], 0.25) == mask[::-1]).all()  # order and company do not matter
    assert (holdout_mask(ids[:10], 0.25) == mask[:10]).all()
    assert (mask <= holdout_mask(ids, 0.5)).all()  # a larger share contains the smaller
    with pytest.raises(ValueError):
        holdout_mask(ids, 1.0)
