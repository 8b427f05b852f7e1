"""The batch manifest: one record per input, and the options that made its rows.

``manifest.parquet`` beside ``rows/`` says, per input: id, path, size and modification time
(ns; a rerun redoes an input whose size or time changed), status (``done``:
processed in this run; ``skipped``: done by an earlier run with the same options and model,
rows kept; ``failed``), the error line, frames, frames with a face, rows, processing fps,
wall and CPU seconds (the worker process, all its threads), attempts, model sha256, options,
package version, worker and finish time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from .store import Store

MANIFEST = "manifest.parquet"
ROWS = "rows"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BatchOptions:
    """What decides the rows of an input (``analyze``'s options), plus the landmarker file."""

    model: str | None = None
    max_faces: int = 1
    smoothing: str = "ema"
    smoothing_params: tuple[tuple[str, float], ...] = ()
    forget_s: float = 1.0
    blendshapes: bool = False
    landmarker: str | None = None
    operating_point: str = "balanced"
    expressions: bool | None = None
    topic: str | None = None  # the image topic of bag inputs (None: each bag's only one)

    def signature(self) -> str:
        """The options as canonical JSON (the model is compared by its sha256 instead)."""
        data = asdict(self)
        del data["model"], data["landmarker"]  # model: by content; landmarker: sha-verified
        # signatures from before these options existed stay valid at their defaults
        for key, default in (("topic", None), ("operating_point", "balanced"),
                             ("expressions", None)):
            if data[key] == default:
                del data[key]
        data["smoothing_params"] = dict(sorted(self.smoothing_params))
        return json.dumps(data, sort_keys=True)

    def estimator_kwargs(self) -> dict[str, Any]:
        return {"model": self.model, "max_faces": self.max_faces, "smoothing": self.smoothing,
                "smoothing_params": dict(self.smoothing_params), "forget_s": self.forget_s,
                "landmarker": self.landmarker, "operating_point": self.operating_point,
                "expressions": self.expressions}


@dataclass
class Record:
    """One input's line in the manifest."""

    id: str
    path: str
    size: int | None = None
    mtime_ns: int | None = None
    status: str = FAILED
    error: str | None = None
    frames: int = 0
    frames_with_face: int = 0
    rows: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    cpu_s: float = 0.0
    attempts: int = 0
    model_sha256: str = ""
    options: str = ""
    version: str = ""
    worker: str = ""
    finished_at: str = field(default_factory=now_utc)

    @property
    def finished(self) -> bool:
        return self.status in (DONE, SKIPPED)


TYPES = {"id": "string", "path": "string", "size": "int64", "mtime_ns": "int64",
         "status": "string",
         "error": "string", "frames": "int64", "frames_with_face": "int64", "rows": "int64",
         "fps": "double", "seconds": "double", "cpu_s": "double", "attempts": "int64",
         "model_sha256": "string", "options": "string", "version": "string",
         "worker": "string", "finished_at": "string"}
assert list(TYPES) == [f.name for f in fields(Record)]


def partition(input_id: str) -> str:
    """The input's Hive partition folder, relative to the output root."""
    return f"{ROWS}/source={input_id}"


def part_path(input_id: str) -> str:
    """The input's rows, relative to the output root (one part per input)."""
    return f"{partition(input_id)}/part-0.parquet"


def read_manifest(store: Store) -> dict[str, Record]:
    """The earlier run's records by id (empty when there is none)."""
    if not store.exists(MANIFEST):
        return {}
    table = store.read_table(MANIFEST)
    names = [f.name for f in fields(Record)]
    out = {}
    for row in table.to_pylist():
        rec = Record(**{k: row.get(k) for k in names if k in row})
        out[rec.id] = rec
    return out


def write_manifest(store: Store, records: dict[str, Record]) -> None:
    """All records, sorted by id, written atomically."""
    import pyarrow as pa

    schema = pa.schema([(name, pa.type_for_alias(t))
                        for name, t in TYPES.items()])
    rows = [asdict(records[k]) for k in sorted(records)]
    store.write_table(pa.Table.from_pylist(rows, schema=schema), MANIFEST)
