"""``prepare --folder`` (a labelled folder of photos) and ``prepare --labels ferplus`` on a few
real images: splits, labels, the fixed held-out part, bad images, bad input, FER+ vote columns
and the soft targets they give the fusion training."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_estimator.blendshapes import BLENDSHAPE_NAMES
from emotion_estimator.cli import cli
from emotion_estimator.training import ferplus as fp
from emotion_estimator.training.folders import holdout_mask, stable_id, val_mask

FER_COLUMNS = ["image_id", "split", "source_label", "label", "augmented", "aug_params",
               "preprocess", *BLENDSHAPE_NAMES, "landmarks", "face"]
VOTE_NAMES = list(fp.VOTE_NAMES)


@pytest.fixture(scope="module")
def photos(media, landmarker_model, tmp_path_factory) -> Path:
    """A labelled folder of real photos (temp copies, never in the repo): 12 usable images in
    4 label folders (some without a face) and one file that is not an image."""
    import cv2

    root = tmp_path_factory.mktemp("photos") / "photos"
    face = cv2.imread(str(media / "single_face.jpg"))
    group = cv2.imread(str(media / "multi_face.jpg"))
    empty = cv2.imread(str(media / "no_face.jpg"))
    small = cv2.resize(face, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    images = {"happiness/a.jpg": face, "happiness/b.jpg": face[:, ::-1],
              "happiness/c.png": small, "happiness/d.jpg": small[:, ::-1],
              "sadness/e.jpg": cv2.cvtColor(face, cv2.COLOR_BGR2GRAY),
              "sadness/f.jpg": group, "sadness/g.jpg": group[:, ::-1],
              "neutral/h.jpg": empty, "neutral/i.jpg": face[40:, 30:],
              "neutral/j.jpg": face[:, 20:-20], "surprise/k.jpg": small[20:, :],
              "surprise/l.jpg": empty[::2, ::2]}
    for rel, image in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / rel), image)
    (root / "surprise" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _exit_code(argv: list[str]) -> int:
    """``cli``'s exit code, whether returned or raised (argparse usage errors)."""
    try:
        return cli(argv)
    except SystemExit as exc:
        return int(exc.code)


def _prepare(photos: Path, out: Path, *extra: str) -> int:
    return cli(["prepare", "--folder", str(photos), "--out", str(out), "--workers", "1",
                "--quiet", *extra])


@pytest.fixture(scope="module")
def folder_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("folder") / "ds"
    assert _prepare(photos, out, "--holdout", "0.4") == 0
    return out


def test_folder_dataset_has_the_fer_schema_splits_and_labels(photos, folder_run):
    data = pd.read_parquet(folder_run / "dataset.parquet")
    assert list(data.columns) == FER_COLUMNS
    assert (data["preprocess"] == "raw").all() and not data["augmented"].any()
    assert set(data["landmarks"].map(len)) == {478 * 3 * 4}
    assert set(data["face"].map(len)) == {48 * 48}
    samples = pd.read_parquet(folder_run / "samples.parquet")
    assert len(samples) == 12 and samples["kept"].all()
    rel = samples["path"].map(lambda p: Path(p).relative_to(photos).as_posix())
    assert (samples["image_id"] == rel.map(stable_id)).all()
    expected = {"happiness": "happy", "sadness": "sad", "neutral": "unknown",
                "surprise": "unknown"}
    assert (samples["label"] == samples["source_label"].map(expected)).all()
    ids = samples["image_id"].to_numpy()
    test = holdout_mask(ids, 0.4)
    want = np.where(test, "test", np.where(val_mask(ids, 0.15), "val", "train"))
    assert samples["split"].tolist() == want.tolist()
    assert 0 < test.sum() < len(ids)  # both sides present in this folder
    # every image went through MediaPipe once: a dataset row or an undetected row
    undetected = pd.read_parquet(folder_run / "undetected.parquet")
    assert sorted([*data["image_id"], *undetected["image_id"]]) == sorted(ids)
    assert set(undetected["image_id"]) >= set(samples.loc[rel.str.startswith("neutral/h"),
                                                          "image_id"])
    labels = samples.set_index("image_id")["label"]
    assert (data["label"] == data["image_id"].map(labels)).all()
    report = json.loads((folder_run / "report.json").read_text())
    assert report["source"] == "folder" and report["folder"]["holdout"] == 0.4
    assert report["rows"]["dataset_by_split"] == data["split"].value_counts().reindex(
        ["train", "val", "test"], fill_value=0).to_dict()


def test_bad_image_is_listed_and_skipped(folder_run):
    report = json.loads((folder_run / "report.json").read_text())
    assert [(Path(b["path"]).name, b["reason"]) for b in report["bad_images"]] == \
        [("broken.jpg", "not a decodable image")]
    assert "broken.jpg" in (folder_run / "report.md").read_text()
    samples = pd.read_parquet(folder_run / "samples.parquet")
    assert not samples["path"].str.endswith("broken.jpg").any()


def test_held_out_rows_are_fixed_and_independent_of_val(photos, folder_run, tmp_path):
    out = tmp_path / "again"
    assert _prepare(photos, out, "--holdout", "0.4", "--val", "0.7") == 0
    first = pd.read_parquet(folder_run / "dataset.parquet")
    second = pd.read_parquet(out / "dataset.parquet")
    pd.testing.assert_frame_equal(first[first["split"] == "test"].reset_index(drop=True),
                                  second[second["split"] == "test"].reset_index(drop=True))
    # --val moved images between train and val, never into or out of test
    a = pd.read_parquet(folder_run / "samples.parquet").set_index("image_id")["split"]
    b = pd.read_parquet(out / "samples.parquet").set_index("image_id")["split"]
    assert ((a == "test") == (b == "test")).all()
    assert (b == "val").sum() > (a == "val").sum()


def test_resume_fingerprint_covers_the_files_and_the_options(photos, tmp_path):
    """A resumed run reuses shards only when the folder's files and the options are the same."""
    import os

    from emotion_estimator.training.augment import Preprocess
    from emotion_estimator.training.extract import ExtractConfig
    from emotion_estimator.training.prepare import PrepareOptions, _fingerprint, load_source

    def fingerprint(**options) -> str:
        opts = PrepareOptions(out=tmp_path, folder=photos, **options).resolved()
        source = load_source(opts)
        kept = source.samples["kept"].to_numpy()
        ids = source.samples["image_id"].to_numpy()[kept]
        config = ExtractConfig(variants=(Preprocess("raw"),), loader=source.loader,
                               extra_candidates=source.extra_candidates)
        return _fingerprint(opts, config, source, ids, np.zeros(len(ids), np.int64), kept)

    base = fingerprint()
    assert fingerprint() == base
    assert fingerprint(val=0.5) != base and fingerprint(holdout=0.2) != base
    image = photos / "happiness" / "a.jpg"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert fingerprint() != base
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint() == base


def test_stop_on_bad_image_exits_2_naming_it_and_writes_nothing(photos, tmp_path, capsys):
    out = tmp_path / "stopped"
    assert _prepare(photos, out, "--on-bad-image", "stop") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_unknown_labels_with_a_class_map_are_listed(photos, tmp_path):
    cmap = tmp_path / "map.json"
    cmap.write_text(json.dumps({"happiness": "happy", "sadness": "sad"}))
    from emotion_estimator.training.sources import folder_source

    source = folder_source(photos, class_map_path=str(cmap))
    assert set(source.samples["source_label"]) == {"happiness", "sadness"}
    reasons = {Path(b["path"]).name: b["reason"] for b in source.info["bad_images"]}
    assert len(reasons) == 6  # h..l and broken.jpg: neutral/surprise are not in the map
    assert reasons["h.jpg"].startswith("unknown label 'neutral'")


@pytest.mark.parametrize("case", ["missing", "empty", "not_json", "bad_class", "both",
                                  "neither", "fer_option", "folder_option", "not_raw"])
def test_bad_folder_input_is_one_line_exit_2(case, photos, fer_csv, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty" / "happiness"
    empty.mkdir(parents=True)
    (empty / "x.jpg").write_bytes(b"junk")
    (tmp_path / "map.txt").write_text("{happiness: happy")
    (tmp_path / "map.json").write_text(json.dumps({"happiness": "joy"}))
    base = ["prepare", "--out", str(out), "--quiet", "--workers", "1"]
    argv, needle = {
        "missing": (["--folder", str(tmp_path / "nope")], "not found"),
        "empty": (["--folder", str(tmp_path / "empty")], "no usable images"),
        "not_json": (["--folder", str(photos), "--class-map", str(tmp_path / "map.txt")],
                     "not valid JSON"),
        "bad_class": (["--folder", str(photos), "--class-map", str(tmp_path / "map.json")],
                      "'joy'"),
        "both": (["--folder", str(photos), "--fer2013", str(fer_csv)], "not allowed with"),
        "neither": ([], "one of the arguments --fer2013 --folder is required"),
        "fer_option": (["--folder", str(photos), "--caps", "none"], "--caps"),
        "folder_option": (["--fer2013", str(fer_csv), "--holdout", "0.2"], "--holdout"),
        "not_raw": (["--folder", str(photos), "--preprocess", "pad"], "raw"),
    }[case]
    assert _exit_code([*base, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


# -- FER+ votes as labels ----------------------------------------------------------------------

# vote rows (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF)
VOTES = [[0, 6, 0, 2, 0, 0, 0, 0, 2, 0],   # happy
         [3, 4, 3, 0, 0, 0, 0, 0, 0, 0],   # folded: unknown 6 > happy 4
         [0, 0, 0, 7, 0, 0, 0, 0, 3, 0],   # sad
         [0, 2, 0, 0, 0, 0, 0, 0, 2, 6],   # not a face: left out
         [0, 5, 0, 5, 0, 0, 0, 0, 0, 0],   # tie happy/sad: left out
         [8, 1, 0, 1, 0, 0, 0, 0, 0, 0],   # unknown (neutral)
         [0, 9, 0, 0, 0, 0, 0, 0, 1, 0],   # happy
         [1, 0, 0, 6, 0, 0, 2, 0, 1, 0]]   # sad
EXPECTED = ["happy", "unknown", "sad", None, "tie", "unknown", "happy", "sad"]
N_FER = 32


@pytest.fixture(scope="module")
def fer_votes(fer_csv, landmarker_model, tmp_path_factory):
    """The first 32 real FER2013 rows (temp copy; rows 20.. moved to PublicTest) and a
    matching vote table cycling through VOTES."""
    folder = tmp_path_factory.mktemp("ferplus")
    with gzip.open(fer_csv, "rt", newline="") as stream:
        lines = [next(stream) for _ in range(N_FER + 1)]
    usage = ["Training"] * 20 + ["PublicTest"] * (N_FER - 20)
    rows = [line.rsplit(",", 1)[0] + f",{u}\n" for line, u in zip(lines[1:], usage, strict=True)]
    (folder / "fer.csv").write_text(lines[0] + "".join(rows))
    votes = pd.DataFrame([VOTES[i % len(VOTES)] for i in range(N_FER)], columns=VOTE_NAMES)
    votes.insert(0, "Image name", [f"fer{i:07d}.png" for i in range(N_FER)])
    votes.insert(0, "Usage", usage)
    votes.to_csv(folder / "votes.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def ferplus_run(fer_votes):
    out = fer_votes / "ds"
    assert cli(["prepare", "--fer2013", str(fer_votes / "fer.csv"), "--labels", "ferplus",
                "--ferplus", str(fer_votes / "votes.csv"), "--out", str(out), "--quiet",
                "--workers", "1", "--preprocess", "raw", "--augment-copies", "0",
                "--caps", "none"]) == 0
    return out


def test_ferplus_labels_and_vote_columns(ferplus_run):
    samples = pd.read_parquet(ferplus_run / "samples.parquet")
    want = [EXPECTED[i % len(EXPECTED)] for i in range(N_FER)]
    labelled = [w not in (None, "tie") for w in want]
    assert samples["kept"].tolist() == labelled
    assert samples.loc[samples["kept"], "label"].tolist() == [w for w in want if w not in
                                                              (None, "tie")]
    data = pd.read_parquet(ferplus_run / "dataset.parquet")
    assert list(data.columns) == [*FER_COLUMNS, *(f"ferplus_{n}" for n in VOTE_NAMES)]
    assert len(data) > 10 and set(data["split"]) == {"train", "val"}
    for _, row in data.iterrows():
        votes = VOTES[row["image_id"] % len(VOTES)]
        assert [row[f"ferplus_{n}"] for n in VOTE_NAMES] == votes
        assert row["label"] == EXPECTED[row["image_id"] % len(EXPECTED)]
    assert all(data[f"ferplus_{n}"].dtype.kind == "i" for n in VOTE_NAMES)
    report = json.loads((ferplus_run / "report.json").read_text())
    assert report["labels"]["dropped"] == {"not_face_or_unknown": 4, "tie": 4}
    assert "FER+ majority" in (ferplus_run / "report.md").read_text()


def test_load_splits_takes_soft_targets_from_the_vote_columns(ferplus_run):
    from emotion_estimator.training.fusion.data import load_splits

    soft = load_splits(ferplus_run, ("blendshapes",), preprocess="raw", labels="ferplus")
    hard = load_splits(ferplus_run, ("blendshapes",), preprocess="raw", labels="fer")
    for split in ("train", "val"):
        votes = np.array([VOTES[i % len(VOTES)] for i in soft[split].image_id], float)
        folded = np.stack([votes[:, 1], votes[:, 3], votes[:, [0, 2, 4, 5, 6, 7]].sum(1)], 1)
        np.testing.assert_allclose(soft[split].target, folded / folded.sum(1, keepdims=True),
                                   rtol=1e-6)
        np.testing.assert_array_equal(hard[split].target, np.eye(3)[hard[split].y])
        np.testing.assert_array_equal(soft[split].y, hard[split].y)


def test_train_fusion_on_ferplus_dataset_needs_no_votes_csv(ferplus_run, tmp_path, capsys):
    pytest.importorskip("torch")
    losses = {}
    for labels in ("ferplus", "fer"):
        run = tmp_path / labels
        assert cli(["train", str(ferplus_run), "--out", str(run), "--kind", "fusion",
                    "--labels", labels, "--preprocess", "raw", "--epochs", "1",
                    "--batch-size", "8", "--width", "4", "--threads", "1",
                    "--device", "cpu"]) == 0
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["config"]["labels"] == labels and not metrics["config"]["ferplus"]
        losses[labels] = pd.read_csv(run / "history.csv")["train_loss"].iloc[0]
    # same seed and rows: only the targets differ (vote shares vs one-hot)
    assert losses["ferplus"] != pytest.approx(losses["fer"], rel=1e-4)
    capsys.readouterr()
    fer_only = tmp_path / "fer_only"
    fer_only.mkdir()
    data = pd.read_parquet(ferplus_run / "dataset.parquet")
    data.drop(columns=[f"ferplus_{n}" for n in VOTE_NAMES]).to_parquet(
        fer_only / "dataset.parquet")
    assert cli(["train", str(fer_only), "--out", str(tmp_path / "r2"), "--kind", "fusion",
                "--labels", "ferplus", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FER+ vote columns" in err[-1]


def _votes_file(tmp_path: Path, table: pd.DataFrame) -> Path:
    path = tmp_path / "v.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", ["no_votes", "missing_column", "rows", "usage", "not_int",
                                  "fer_labels"])
def test_bad_ferplus_input_is_one_line_exit_2(case, fer_votes, tmp_path, capsys):
    good = pd.read_csv(fer_votes / "votes.csv")
    fer = fer_votes / "fer.csv"
    out = tmp_path / "out"
    base = ["prepare", "--fer2013", str(fer), "--out", str(out), "--quiet", "--workers", "1"]
    if case == "no_votes":
        argv, needle = ["--labels", "ferplus"], "--ferplus"
    elif case == "missing_column":
        path = _votes_file(tmp_path, good.drop(columns=["NF"]))
        argv, needle = ["--labels", "ferplus", "--ferplus", str(path)], "missing NF"
    elif case == "rows":
        path = _votes_file(tmp_path, good.iloc[:30])
        argv, needle = ["--labels", "ferplus", "--ferplus", str(path)], "30 vote rows"
    elif case == "usage":
        path = _votes_file(tmp_path, good.assign(Usage="Training"))
        argv, needle = ["--labels", "ferplus", "--ferplus", str(path)], "line 22"
    elif case == "not_int":
        path = _votes_file(tmp_path, good.assign(fear=good["fear"].astype(float) + 0.5))
        argv, needle = ["--labels", "ferplus", "--ferplus", str(path)], "integers"
    else:
        argv, needle = ["--ferplus", str(fer_votes / "votes.csv")], "--labels ferplus"
    assert cli([*base, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()
