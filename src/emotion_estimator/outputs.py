"""Row writers chosen by format (csv, jsonl, parquet); files are written atomically."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .atomic import atomic_path, resolve_output
from .errors import InputError

FORMATS = ("csv", "jsonl", "parquet")
FRAME_COLUMNS: dict[str, type] = {
    "frame": int, "timestamp_s": float, "face_id": int, "face_detected": bool,
    "x": float, "y": float, "w": float, "h": float, "label": str, "decided": bool,
}
# every column nullable (a frame without a face has no face_id, label, ...), the same in the
# API's DataFrame and in a Parquet file read back with pandas
PANDAS_DTYPES: dict[type, str] = {int: "Int64", float: "float64", bool: "boolean", str: "string"}


def frame_columns(classes: Sequence[str] = (), blendshapes: Sequence[str] = (),
                  expressions: Sequence[str] = ()) -> dict[str, type]:
    """Columns of the per-(frame, face) table: DESIGN.md's contract, in order, with types
    (the expression view's ``expression``, ``expr_<name>``, ``valence``, ``arousal`` after
    the class probabilities, where the model has it)."""
    columns = dict(FRAME_COLUMNS)
    if not classes:
        del columns["label"], columns["decided"]
    columns.update({f"p_{c}": float for c in classes})
    if expressions:
        columns["expression"] = str
        columns.update({f"expr_{e}": float for e in expressions})
        columns.update({"valence": float, "arousal": float})
    columns.update({name: float for name in blendshapes})
    return columns


SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


def format_for(path: str, fmt: str | None) -> str:
    """The format of an output: ``fmt``, else the one its suffix names.

    ``-`` and suffix-less devices / pipes (``/dev/stdout``) default to jsonl. A format that
    contradicts a known suffix, or a suffix that names no format, is a ``ValueError``: a
    table is never written silently in a format its name does not say.
    """
    if fmt and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if path == "-":
        return fmt or "jsonl"
    suffix = Path(path).suffix.lower()
    named = SUFFIXES.get(suffix)
    if fmt:
        if named and named != fmt:
            raise ValueError(f"--format {fmt} contradicts the suffix of {path} ({named}); "
                             "rename the file or drop --format")
        return fmt
    if named:
        return named
    with contextlib.suppress(OSError):
        if not suffix and resolve_output(path)[1]:
            return "jsonl"
    raise ValueError(f"cannot tell the format of {path} from its suffix; name it "
                     f"{', '.join(('.csv', '.jsonl', '.parquet'))} or pass --format")


def check_output(path: str | None, option: str = "--output") -> Path | None:
    """Refuse, before any work, an output that cannot be written or would destroy data.

    Returns the file the write will reach (links followed), None for stdout / no output.
    Raises :class:`InputError` for a folder, a missing or unwritable folder, an unwritable
    file, a symlink loop or an empty name.
    """
    if path is None or path == "-":
        return None
    if not path.strip():
        raise InputError(f"{option}: empty file name")
    try:
        target, in_place = resolve_output(path)
    except OSError as exc:
        raise InputError(f"{option}: {exc.strerror or exc}: {path}") from None
    if in_place:
        if target.exists() and not os.access(target, os.W_OK):
            raise InputError(f"{option}: {path} is not writable")
        return target
    if target.is_dir():
        raise InputError(f"{option}: {path} is a folder; name a file")
    folder = target.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"{option}: output folder {what}: {Path(path).parent}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write in {folder} (permission denied)")
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(f"{option}: {path} is not writable")
    return target


def check_table_output(path: str, fmt: str | None, option: str = "--output") -> str:
    """:func:`check_output` plus the format: named by the suffix or ``fmt``, never both at odds;
    Parquet only into a seekable file (not stdout, a pipe or a socket). Returns the format."""
    check_output(path, option)
    try:
        fmt = format_for(path, fmt)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from exc
    if fmt == "parquet":
        try:
            mode = os.stat(path).st_mode if path != "-" else stat.S_IFIFO
        except OSError:
            mode = 0
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise InputError(f"{option}: parquet needs a seekable file, not a pipe or stdout; "
                             "use jsonl or csv to stream")
    return fmt


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN -> None, numpy scalars -> Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class RowWriter:
    """Base writer: ``write(row)`` per (frame, face) row; ``close()`` publishes the file."""

    def __init__(self, path: str, columns: Mapping[str, type] | Sequence[str]) -> None:
        self.path = path
        self.types = dict(columns) if isinstance(columns, Mapping) else dict.fromkeys(columns, str)
        self.columns = list(self.types)
        self.rows_written = 0
        self._publish = contextlib.ExitStack()
        self._write_path: Path | None = None
        if path != "-":
            target = Path(path)
            if not resolve_output(target)[0].parent.is_dir():
                raise FileNotFoundError(f"output folder does not exist: {target.parent}")
            self._write_path = self._publish.enter_context(atomic_path(target))

    def write(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the format's handle."""

    def close(self) -> None:
        """Finish the file and move it into place (keeps what was written so far)."""
        self._finish()
        self._publish.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TextWriter(RowWriter):
    def __init__(self, path: str, columns: Mapping[str, type] | Sequence[str]) -> None:
        super().__init__(path, columns)
        self._fh: IO[str] = (sys.stdout if self.path == "-"
                             else open(self._write_path, "w", newline="", encoding="utf-8"))  # noqa: SIM115

    def _finish(self) -> None:
        if self._fh is sys.stdout:
            self._fh.flush()
        else:
            self._fh.close()


class CsvWriter(_TextWriter):
    """Comma-separated, header first; missing values are empty cells."""

    def __init__(self, path: str, columns: Mapping[str, type] | Sequence[str]) -> None:
        super().__init__(path, columns)
        self._csv = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: ("" if (v := _clean(row.get(k))) is None else v)
                            for k in self.columns})
        self.rows_written += 1


class JsonlWriter(_TextWriter):
    """One JSON object per line, flushed per line (safe to tail while running)."""

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _clean(row.get(k)) for k in self.columns}) + "\n")
        self._fh.flush()
        self.rows_written += 1


class ParquetWriter(RowWriter):
    """Parquet in row groups of ``batch`` rows (constant memory on long inputs)."""

    def __init__(self, path: str, columns: Mapping[str, type] | Sequence[str],
                 batch: int = 4096) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if path == "-":
            raise ValueError("parquet cannot stream to stdout; give a file name")
        super().__init__(path, columns)
        arrow = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
        self._schema = pa.schema([(c, arrow[t]) for c, t in self.types.items()],
                                 metadata=_pandas_metadata(self.types))
        self._batch = batch
        self._rows: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(str(self._write_path), self._schema)

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append({k: _clean(row.get(k)) for k in self.columns})
        self.rows_written += 1
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def _finish(self) -> None:
        self._flush()
        self._writer.close()


def _pandas_metadata(types: Mapping[str, type]) -> dict[bytes, bytes]:
    """Parquet's pandas metadata for ``types``: read back, the columns get the API's dtypes
    (``face_id`` Int64 with nulls, not float64)."""
    import pandas as pd
    import pyarrow as pa

    empty = pd.DataFrame({c: pd.Series([], dtype=PANDAS_DTYPES[t]) for c, t in types.items()})
    return pa.Schema.from_pandas(empty, preserve_index=False).metadata


WRITERS: dict[str, type[RowWriter]] = {"csv": CsvWriter, "jsonl": JsonlWriter,
                                       "parquet": ParquetWriter}


def open_writer(path: str, fmt: str | None,
                columns: Mapping[str, type] | Sequence[str]) -> RowWriter:
    """A writer for ``path`` (``-`` = stdout) in ``fmt`` (None: from the suffix).

    ``columns`` maps names to Python types (int, float, bool, str) for typed Parquet; rows are
    dicts, missing keys or NaN become empty/null.
    """
    return WRITERS[format_for(path, fmt)](path, columns)
