"""Batch inputs: files, folders and manifest CSVs -> ``BatchInput`` items with stable ids.

An id names the input's Hive partition (``rows/source=<id>/``), so it is kept to letters,
digits, ``.``, ``_`` and ``-``, and never looks like a number. Ids come from a CSV's id
column, else from the file name; two inputs with the same name get a short hash of their path
appended; an input already in the previous manifest keeps the id it had there.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

PATH_COLUMNS = ("path", "file", "filename", "video")
ID_COLUMNS = ("id", "source", "source_id", "video_id")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NUMERIC = re.compile(r"[0-9._-]+")


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch: its partition id and absolute path."""

    id: str
    path: str


def safe_id(text: str) -> str:
    """``text`` reduced to a partition-safe id (unsafe runs become ``_``).

    An id of only digits and separators gets the prefix ``id``: readers infer partition types,
    and would read ``001`` as the number 1 (or ``2024-01-02`` as a date).
    """
    cleaned = _UNSAFE.sub("_", text.strip()).strip("._") or "input"
    if _NUMERIC.fullmatch(cleaned):
        cleaned = f"id{cleaned}"
    return cleaned[:120]


def _path_hash(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:8]


def read_manifest_csv(path: Path) -> list[tuple[str, str | None]]:
    """``(path, id or None)`` per row of a CSV with a path column and an optional id column.

    Relative paths are taken relative to the CSV's folder.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {f.strip().lower(): f for f in reader.fieldnames or []}
            path_col = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
            if path_col is None:
                raise InputError(f"{path}: CSV needs a column named one of "
                                 f"{', '.join(PATH_COLUMNS)}")
            id_col = next((fields[c] for c in ID_COLUMNS if c in fields), None)
            rows = []
            for row in reader:
                value = (row.get(path_col) or "").strip()
                if not value:
                    continue
                target = Path(value).expanduser()
                if not target.is_absolute():
                    target = path.parent / target
                ident = (row.get(id_col) or "").strip() if id_col else ""
                rows.append((str(target), ident or None))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read manifest CSV {path}: {exc}") from exc
    return rows


MAX_NAMED = 3  # paths named per kind of skipped entry


def scan_folder(folder: Path, recursive: bool = False) -> tuple[list[Path], list[str]]:
    """The image and video files in ``folder`` (sorted; below it too when ``recursive``) and
    one line per kind of entry left out: subfolders (without ``recursive``), files of other
    kinds, FIFOs / sockets / devices, broken links, link loops, unreadable folders."""
    from ..video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, not_found

    found: list[Path] = []
    skipped: dict[str, list[str]] = {}
    seen = {os.path.realpath(folder)}
    todo = [folder]
    while todo:
        here = todo.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            skipped.setdefault(f"unreadable folder ({exc.strerror or exc})", []).append(str(here))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                reason = str(not_found(path)).partition(":")[0]
                skipped.setdefault(reason, []).append(str(path))
                continue
            if stat.S_ISDIR(mode):
                real = os.path.realpath(path)
                if not recursive:
                    skipped.setdefault("subfolder (use --recursive)", []).append(str(path))
                elif real in seen:
                    skipped.setdefault("folder seen before (a link loop)", []).append(str(path))
                else:
                    seen.add(real)
                    todo.append(path)
            elif not stat.S_ISREG(mode):
                skipped.setdefault("not a regular file (FIFO, socket or device)",
                                   []).append(str(path))
            elif path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                found.append(path)
            else:
                skipped.setdefault("not an image or video suffix", []).append(str(path))
    lines = []
    for reason, paths in skipped.items():
        more = len(paths) - MAX_NAMED
        lines.append(f"skipped {len(paths)} in {folder}: {reason}: "
                     + ", ".join(paths[:MAX_NAMED]) + (f" and {more} more" if more > 0 else ""))
    return sorted(found), lines


def collect(items: Iterable[str], recursive: bool = False,
            report: Callable[[str], None] | None = None) -> list[tuple[str, str | None]]:
    """Expand files, folders (their images and videos; subfolders too when ``recursive``) and
    ``.csv`` lists into paths + ids; ``report`` gets one line per kind of entry a folder scan
    left out.

    A listed path that does not exist is kept: its task fails and is recorded, the others run.
    """
    from ..ros.bagsource import is_bag
    from ..video import not_found

    out: list[tuple[str, str | None]] = []
    for item in items:
        p = Path(item).expanduser()
        if p.suffix.lower() == ".csv" and p.is_file():
            out.extend(read_manifest_csv(p))
        elif p.is_dir() and not is_bag(p):  # a ROS 2 bag folder is one input
            found, skipped = scan_folder(p, recursive)
            for line in skipped:
                if report is not None:
                    report(line)
            if not found:
                raise InputError(f"{p} holds no image or video files"
                                 + (f" ({'; '.join(skipped)})" if skipped else ""))
            out.extend((str(f), None) for f in found)
        elif not os.path.lexists(p):
            raise InputError(f"no such file or folder: {p}")
        elif not p.exists():
            raise InputError(str(not_found(p)))
        else:
            out.append((str(p), None))
    return out


def assign_ids(found: list[tuple[str, str | None]],
               known: Mapping[str, str] | None = None) -> list[BatchInput]:
    """Unique ids for ``(path, id)`` pairs; ``known`` maps paths to ids of an earlier run.

    The same path listed twice is kept once; two explicit ids that clash are an error.
    """
    known = dict(known or {})
    seen: dict[str, str] = {}  # absolute path -> id
    explicit: dict[str, str] = {}
    for raw, ident in found:
        path = str(Path(raw).resolve())
        if path in seen or path in explicit:
            continue
        if ident is not None:
            ident = safe_id(ident)
            if ident in explicit.values():
                raise InputError(f"manifest CSV: id {ident!r} is given to two inputs")
            explicit[path] = ident
        else:
            seen[path] = ""
    taken = set(explicit.values())
    ids = dict(explicit)
    for path in seen:  # earlier ids first: a rerun names each input as before
        if path in known and known[path] not in taken:
            ids[path] = known[path]
            taken.add(known[path])
    stems: dict[str, int] = {}
    for path in seen:
        if path not in ids:
            stem = safe_id(Path(path).stem)
            stems[stem] = stems.get(stem, 0) + 1
    for path in seen:
        if path in ids:
            continue
        stem = safe_id(Path(path).stem)
        ident = stem if stems[stem] == 1 and stem not in taken else f"{stem}-{_path_hash(path)}"
        ids[path] = ident
        taken.add(ident)
    order = [str(Path(raw).resolve()) for raw, _ in found]
    return [BatchInput(ids[p], p) for p in dict.fromkeys(order)]

