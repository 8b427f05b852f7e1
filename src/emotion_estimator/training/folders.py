"""A labelled folder of images -> samples with a stable id and a 3-class label.

Two layouts, checked in this order:

- ``labels.csv`` with ``path`` (relative to the folder, or absolute) and ``label`` columns;
- ``<label>/<image>`` subfolders (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``).

A class map turns each source label into a class. The default: ``happiness``/``happy`` ->
``happy``, ``sadness``/``sad`` -> ``sad``, every other label -> ``unknown``. A JSON map file is
one object ``{"source label": "class", ...}``; the key ``"*"`` names the class of every label
not listed, and without it such labels are *unknown labels*. Lookups ignore case.

Images with an unknown label, missing or not decodable are listed in :attr:`LabelledFolder.bad`
and left out (``on_bad_image="skip"``), or stop the read with an :class:`InputError` naming the
path (``"stop"``). ``image_id`` is a stable 63-bit hash of the path relative to the folder:
the same file keeps its id whatever else is added or removed; :func:`holdout_mask` picks a
fixed held-out part from it (for a folder used in training or model choice), :func:`val_mask`
a fixed validation share by a second hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

CLASSES: tuple[str, ...] = ("happy", "sad", "unknown")
DEFAULT_CLASS_MAP: dict[str, str] = {"happiness": "happy", "happy": "happy",
                                     "sadness": "sad", "sad": "sad", "*": "unknown"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABELS_CSV = "labels.csv"
SAMPLE_COLUMNS = ("image_id", "path", "source_label", "label")
BAD_COLUMNS = ("path", "source_label", "reason")


@dataclass(frozen=True)
class LabelledFolder:
    """The usable ``samples`` (``image_id, path, source_label, label``; sorted by relative
    path) and the ``bad`` ones left out (``path, source_label, reason``)."""

    root: Path
    samples: pd.DataFrame
    bad: pd.DataFrame
    class_map: dict[str, str]

    def summary(self) -> dict:
        """Counts for a report: per class, per source label, and the bad images by reason."""
        return {"root": str(self.root), "images": len(self.samples),
                "classes": {str(k): int(v) for k, v in
                            self.samples["label"].value_counts().sort_index().items()},
                "source_labels": {str(k): int(v) for k, v in
                                  self.samples["source_label"].value_counts().sort_index().items()},
                "bad": len(self.bad),
                "bad_reasons": {str(k): int(v) for k, v in
                                self.bad["reason"].str.split(":").str[0].value_counts().items()}}


def stable_id(relative: str) -> int:
    """A 63-bit id from a relative POSIX path (first 8 bytes of its sha256)."""
    digest = hashlib.sha256(relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def holdout_mask(image_ids: Sequence[int] | np.ndarray, fraction: float) -> np.ndarray:
    """True for a folder's fixed held-out share (about ``fraction``). Decided by each image's
    id alone (a hash), so no image changes side when others are added or removed."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be between 0 and 1, not {fraction}")
    ids = np.asarray(image_ids, dtype=np.int64)
    return (ids % 10_000) < round(fraction * 10_000)


def val_mask(image_ids: Sequence[int] | np.ndarray, fraction: float) -> np.ndarray:
    """True for a fixed share (about ``fraction``) picked by a second, salted hash of each id:
    independent of :func:`holdout_mask` and of any seed (``prepare --folder`` takes ``val``
    from the rows outside the held-out part this way)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), not {fraction}")
    keys = [int.from_bytes(hashlib.sha256(b"val:" + int(i).to_bytes(8, "big")).digest()[:8],
                           "big") % 10_000 for i in np.asarray(image_ids, dtype=np.int64)]
    return np.asarray(keys, dtype=np.int64) < round(fraction * 10_000)


def load_class_map(source: str | os.PathLike | Mapping[str, str] | None,
                   classes: Sequence[str] = CLASSES) -> dict[str, str]:
    """The default map (``None``), a mapping, or a JSON file; keys lower-cased, values checked."""
    if source is None:
        raw: object = DEFAULT_CLASS_MAP
    elif isinstance(source, Mapping):
        raw = source
    else:
        path = Path(source)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(f"class map not found: {path}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"class map is not valid JSON: {path} ({exc})") from exc
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"class map must be a non-empty JSON object of label -> class: {source}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(f"class map entries must be strings: {key!r}: {value!r}")
        if value not in classes:
            raise InputError(f"class map sends {key!r} to {value!r}, not one of {list(classes)}")
        out[key.strip().lower()] = value
    return out


def map_label(label: str, class_map: Mapping[str, str]) -> str | None:
    """The class of a source label, or ``None`` when the map does not cover it."""
    return class_map.get(str(label).strip().lower(), class_map.get("*"))


def _from_csv(root: Path, csv: Path) -> list[tuple[Path, str]]:
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {csv}: {exc}") from exc
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise InputError(f"{csv} needs columns path,label (missing {', '.join(missing)})")
    return [(root / p, lab) for p, lab in zip(table["path"], table["label"], strict=True)]


def _from_subfolders(root: Path) -> list[tuple[Path, str]]:
    """``(path, label)`` per entry of each label folder that is, or claims to be, an image:
    image-named entries that are not regular files (a FIFO, a broken link, a link loop) and
    nested folders are kept too, so the read lists them as bad instead of dropping them
    without a word."""
    items = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        items += [(f, sub.name) for f in sorted(sub.iterdir())
                  if f.suffix.lower() in IMAGE_SUFFIXES or f.is_dir()
                  or (f.is_symlink() and not f.exists())]
    return items


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file to read (None when it is)."""
    import errno
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return "broken symbolic link" if path.is_symlink() else "missing"
    if stat.S_ISDIR(mode):
        return "a folder (label folders are read one level deep)"
    return None if stat.S_ISREG(mode) else "not a regular file (FIFO, socket or device)"


def image_problem(path: Path) -> str | None:
    """Why an image file cannot be used (``None`` when it decodes), after the image-admission
    rule (:mod:`emotion_estimator.admission`: size declared in the header, then decode)."""
    from ..admission import ImageRejected, read_file

    if not path.is_file():
        return "missing"
    try:
        read_file(path)
    except ImageRejected as exc:  # too large / too small say so; the rest is one reason
        return "not a decodable image" if exc.reason.startswith(("cannot", "empty")) \
            else exc.reason
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None


def read_labelled_folder(root: str | os.PathLike,
                         class_map: str | os.PathLike | Mapping[str, str] | None = None, *,
                         on_bad_image: str = "skip", verify: bool = True,
                         classes: Sequence[str] = CLASSES) -> LabelledFolder:
    """Read a labelled folder; see the module docstring. ``verify=False`` skips decoding each
    image (missing files are still caught)."""
    if on_bad_image not in ("skip", "stop"):
        raise ValueError(f"on_bad_image must be 'skip' or 'stop', not {on_bad_image!r}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"labelled folder not found: {root}")
    cmap = load_class_map(class_map, classes)
    csv = root / LABELS_CSV
    items = _from_csv(root, csv) if csv.is_file() else _from_subfolders(root)
    if not items:
        raise InputError(f"no images in {root} (expected {LABELS_CSV} or <label>/*.jpg|png)")
    rows, bad, seen = [], [], set()
    for path, source in items:
        label = map_label(source, cmap) if str(source).strip() else None
        reason = ("empty label" if not str(source).strip()
                  else f"unknown label {source!r} (not in the class map)" if label is None
                  else file_problem(path) or (image_problem(path) if verify else None))
        if reason is None and path.resolve() in seen:
            reason = "duplicate path"
        if reason is not None:
            if on_bad_image == "stop":
                raise InputError(f"{path}: {reason}")
            bad.append((str(path), source, reason))
            continue
        seen.add(path.resolve())
        full, base = path.resolve(), root.resolve()
        rel = (full.relative_to(base) if full.is_relative_to(base) else full).as_posix()
        rows.append((stable_id(rel), str(path), source, label, rel))
    if not rows:
        raise InputError(f"no usable images in {root}: all {len(bad)} left out "
                         f"(first: {bad[0][0]}: {bad[0][2]})")
    samples = pd.DataFrame(rows, columns=[*SAMPLE_COLUMNS, "_rel"])
    samples = samples.sort_values("_rel", kind="stable").drop(columns="_rel")
    samples = samples.reset_index(drop=True).astype({"image_id": "int64"})
    if samples["image_id"].duplicated().any():  # 2**-63 per pair; checked, never assumed
        raise InputError(f"image id collision in {root}")
    return LabelledFolder(root, samples, pd.DataFrame(bad, columns=list(BAD_COLUMNS)), cmap)
