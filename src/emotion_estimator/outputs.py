"""Row writers chosen by format (csv, jsonl, parquet); files are written atomically."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .atomic import atomic_path

FORMATS = ("csv", "jsonl", "parquet")
FRAME_COLUMNS: dict[str, type] = {
    "frame": int, "timestamp_s": float, "face_id": int, "face_detected": bool,
    "x": float, "y": float, "w": float, "h": float, "label": str,
}


def frame_columns(classes: Sequence[str] = (), blendshapes: Sequence[str] = ()) -> dict[str, type]:
    """Columns of the per-(frame, face) table: DESIGN.md's contract, in order, with types."""
    columns = dict(FRAME_COLUMNS)
    if not classes:
        del columns["label"]
    columns.update({f"p_{c}": float for c in classes})
    columns.update({name: float for name in blendshapes})
    return columns


def format_for(path: str, fmt: str | None) -> str:
    """The explicit format, else the one the file suffix names (``-`` means jsonl)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"json": "jsonl", "ndjson": "jsonl"}.get(suffix, suffix if suffix in FORMATS else "csv")


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
            if not target.parent.is_dir():
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
        self._schema = pa.schema([(c, arrow[t]) for c, t in self.types.items()])
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


WRITERS: dict[str, type[RowWriter]] = {"csv": CsvWriter, "jsonl": JsonlWriter,
                                       "parquet": ParquetWriter}


def open_writer(path: str, fmt: str | None,
                columns: Mapping[str, type] | Sequence[str]) -> RowWriter:
    """A writer for ``path`` (``-`` = stdout) in ``fmt`` (None: from the suffix).

    ``columns`` maps names to Python types (int, float, bool, str) for typed Parquet; rows are
    dicts, missing keys or NaN become empty/null.
    """
    return WRITERS[format_for(path, fmt)](path, columns)
