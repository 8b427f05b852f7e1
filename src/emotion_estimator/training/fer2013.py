"""Load FER2013 (Kaggle CSV, plain or gzip, or ``<split>/<class>/*.png`` folders).

Every image gets a stable ``image_id``: the 0-based CSV row (header excluded), or the index in
the sorted file list of a folder layout. It follows the image through every later file.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIDE = 48
HEADER = ("emotion", "pixels", "Usage")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# folder names accepted for the splits of an image-folder layout
_FOLDER_SPLITS = {"training": "train", "train": "train", "publictest": "val", "val": "val",
                  "validation": "val", "privatetest": "test", "test": "test"}
_FOLDER_CLASSES = {"afraid": "fear", "angry": "angry", "disgust": "disgust", "fear": "fear",
                   "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise"}


@dataclass
class BadRow:
    """A rejected input row: its file line (1-based, header = line 1) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Fer2013:
    """The loaded images: a table (image_id, split, source_label) and aligned 48x48 pixels."""

    samples: pd.DataFrame  # image_id (int64), split, source_label
    pixels: np.ndarray  # (n, H, W) uint8, row i belongs to samples.iloc[i]
    bad_rows: list[BadRow] = field(default_factory=list)


def load(path: str | Path, *, limit: int | None = None, on_bad_row: str = "stop") -> Fer2013:
    """Load a Kaggle CSV (``.csv`` / ``.csv.gz``) or an image-folder tree.

    ``limit`` keeps only the first N rows. ``on_bad_row="stop"`` raises :class:`InputError` on the
    first malformed row (with its line number); ``"skip"`` drops such rows and lists them in
    ``bad_rows`` (image ids of the other rows are unchanged).
    """
    if on_bad_row not in ("stop", "skip"):
        raise ValueError("on_bad_row must be 'stop' or 'skip'")
    path = Path(path)
    if not path.exists():
        raise InputError(f"FER2013 input not found: {path}")
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    if path.is_dir():
        return _load_folder(path, limit=limit, on_bad_row=on_bad_row)
    return _load_csv(path, limit=limit, on_bad_row=on_bad_row)


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            stream = gzip.open(path, "rt", encoding="utf-8", newline="")  # noqa: SIM115
            stream.readline()  # fail here, on a non-gzip file, rather than inside pandas
            stream.seek(0)
            return stream
        return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - returned to caller
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _load_csv(path: Path, *, limit: int | None, on_bad_row: str) -> Fer2013:
    with _open_text(path) as stream:
        try:
            header = next(csv.reader([stream.readline()]), [])
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from exc
        header = [h.strip() for h in header]
        if sorted(header) != sorted(HEADER):
            raise InputError(f"{path}: line 1: expected the header 'emotion,pixels,Usage' "
                             f"(Kaggle FER2013 layout), got {','.join(header)!r}")
        try:
            table = pd.read_csv(stream, names=header, header=None, nrows=limit, dtype=str,
                                keep_default_na=False, skip_blank_lines=False)
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
            raise InputError(f"{path}: {_one_line(exc)}") from exc
    bad: list[BadRow] = []
    keep_ids: list[int] = []
    splits: list[str] = []
    labels: list[str] = []
    images: list[np.ndarray] = []
    for row_id, (emotion, pixels, usage) in enumerate(
            zip(table["emotion"], table["pixels"], table["Usage"], strict=True)):
        parsed = _parse_row(emotion, pixels, usage)
        if isinstance(parsed, str):
            problem = BadRow(line=row_id + 2, reason=parsed)
            if on_bad_row == "stop":
                raise InputError(f"{path}: {problem} (use --on-bad-row skip to drop such rows)")
            bad.append(problem)
            continue
        label, split, image = parsed
        keep_ids.append(row_id)
        labels.append(label)
        splits.append(split)
        images.append(image)
    if not keep_ids:
        raise InputError(f"{path}: no usable rows")
    samples = pd.DataFrame({"image_id": np.asarray(keep_ids, dtype=np.int64),
                            "split": splits, "source_label": labels})
    return Fer2013(samples=samples, pixels=np.stack(images), bad_rows=bad)


def _parse_row(emotion: str, pixels: str, usage: str) -> tuple[str, str, np.ndarray] | str:
    """(source_label, split, 48x48 image) or the reason the row is rejected."""
    emotion, usage = emotion.strip(), usage.strip()
    if not emotion.isdigit() or int(emotion) >= len(EMOTIONS):
        return f"emotion must be an integer 0..6, got {emotion[:20]!r}"
    if usage not in USAGE_TO_SPLIT:
        return f"Usage must be one of {', '.join(USAGE_TO_SPLIT)}, got {usage[:20]!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns and stops at a bad token
            values = np.fromstring(pixels, dtype=np.int64, sep=" ")
    except ValueError:  # numpy >= 2.3 raises on a bad token
        values = None
    tokens = len(pixels.split())
    if values is None or values.size != tokens:
        return "pixels contain a value that is not an integer"
    if tokens != SIDE * SIDE:
        return f"pixels must be {SIDE * SIDE} space-separated integers, got {tokens} values"
    if values.min() < 0 or values.max() > 255:
        return f"pixel values must be in 0..255, got {values.min()}..{values.max()}"
    image = values.astype(np.uint8).reshape(SIDE, SIDE)
    return EMOTIONS[int(emotion)], USAGE_TO_SPLIT[usage], image


def _folder_images(root: Path) -> Iterator[tuple[str, str, Path]]:
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        split = _FOLDER_SPLITS.get(split_dir.name.lower())
        if split is None:
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = _FOLDER_CLASSES.get(class_dir.name.lower())
            if label is None:
                raise InputError(f"{class_dir}: unknown class folder (expected one of "
                                 f"{', '.join(sorted(_FOLDER_CLASSES))})")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    yield split, label, file


def _load_folder(root: Path, *, limit: int | None, on_bad_row: str) -> Fer2013:
    import cv2

    from ..admission import ImageRejected, read_file

    rows, images, bad = [], [], []
    for image_id, (split, label, file) in enumerate(_folder_images(root)):
        if limit is not None and image_id >= limit:
            break
        try:  # the image-admission rule: the declared size first, then the decode
            image, reason = read_file(file, flag=cv2.IMREAD_GRAYSCALE), ""
        except (ImageRejected, OSError) as exc:
            image, reason = None, getattr(exc, "reason", None) or "unreadable"
        if image is None:
            problem = BadRow(line=image_id + 1, reason=f"unreadable image {file} ({reason})")
            if on_bad_row == "stop":
                raise InputError(f"{root}: {problem}")
            bad.append(problem)
            continue
        if image.shape != (SIDE, SIDE):
            image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        rows.append((image_id, split, label))
        images.append(image)
    if not rows:
        raise InputError(f"{root}: no images found in <split>/<class>/*.png|jpg folders "
                         f"(splits: Training/PublicTest/PrivateTest or train/val/test)")
    samples = pd.DataFrame(rows, columns=["image_id", "split", "source_label"])
    samples["image_id"] = samples["image_id"].astype(np.int64)
    return Fer2013(samples=samples, pixels=np.stack(images), bad_rows=bad)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
