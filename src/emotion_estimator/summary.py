"""A result table (one row per frame and face) summed up per face, as label episodes, and as
change events: what a researcher otherwise writes by hand after ``analyze`` or ``batch``.

Works on the API's DataFrame and on the CLI's files read back (CSV, JSON lines, Parquet, a
``batch`` rows folder); the classes are the table's ``p_<class>`` columns, and a ``source``
column, where there is one, keeps inputs apart. An undecided face (``decided`` false: its
filter has not chosen a label yet) belongs to no episode; an event is a face's label changing
from one decided label to another, never its first decision, as ``serve`` sends them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

UNDECIDED = "undecided"


def classes_of(table: pd.DataFrame) -> list[str]:
    """The classes, from the ``p_<class>`` columns in order."""
    return [c[2:] for c in table.columns if c.startswith("p_")]


def _keys(table: pd.DataFrame) -> list[str]:
    return ["source", "face_id"] if "source" in table.columns else ["face_id"]


def _faces(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with a face, in time order per face, with ``shown``: the label or
    ``undecided``."""
    for column in ("frame", "timestamp_s", "face_id", "label"):
        if column not in table.columns:
            raise ValueError(f"not a result table with labels: no {column!r} column")
    faces = table[table["face_id"].notna()].copy()
    faces["face_id"] = faces["face_id"].astype("Int64")  # float64 in a CSV read back
    decided = faces["decided"].fillna(True) if "decided" in faces else True
    faces["shown"] = faces["label"].astype("string").where(decided, UNDECIDED)
    return faces.sort_values([*_keys(faces), "frame"], kind="stable")


def episodes(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run of one decided label on one face: ``[source,] face_id, label,
    start_frame, end_frame, start_s, end_s, duration_s, frames, mean_p`` (the mean
    probability of that label over the run)."""
    import pandas as pd

    faces = _faces(table)
    keys = _keys(faces)
    columns = [*keys, "label", "start_frame", "end_frame", "start_s", "end_s", "duration_s",
               "frames", "mean_p"]
    if faces.empty:
        return pd.DataFrame(columns=columns)
    before = faces.groupby(keys, sort=False)["shown"].shift()  # NA at a face's first row
    new_run = before.isna() | (faces["shown"] != before).fillna(True)
    faces["run"] = new_run.astype(int).cumsum()
    faces = faces[faces["shown"] != UNDECIDED]
    rows: list[dict[str, Any]] = []
    for _, run in faces.groupby("run", sort=True):
        label = str(run["shown"].iloc[0])
        first, last = run.iloc[0], run.iloc[-1]
        p = f"p_{label}"
        rows.append({**{k: first[k] for k in keys}, "label": label,
                     "start_frame": int(first["frame"]), "end_frame": int(last["frame"]),
                     "start_s": float(first["timestamp_s"]), "end_s": float(last["timestamp_s"]),
                     "duration_s": round(float(last["timestamp_s"] - first["timestamp_s"]), 6),
                     "frames": len(run),
                     "mean_p": round(float(run[p].mean()), 5) if p in run else float("nan")})
    return pd.DataFrame(rows, columns=columns).astype({"face_id": "Int64"})


def events(table: pd.DataFrame) -> pd.DataFrame:
    """One row per label change of a face: ``[source,] face_id, frame, timestamp_s, from,
    to`` and the class probabilities at that frame (``p_<class>``)."""
    import pandas as pd

    runs = episodes(table)
    keys = _keys(runs) if not runs.empty else _keys(table)
    probs = [f"p_{c}" for c in classes_of(table)]
    columns = [*keys, "frame", "timestamp_s", "from", "to", *probs]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    before = runs.groupby(keys, sort=False)["label"].shift()  # NA at a face's first episode
    changes = runs[before.notna() & (before != runs["label"])]
    at = _faces(table).set_index([*keys, "frame"])
    rows = []
    for i, change in changes.iterrows():
        key = tuple(change[k] for k in keys) + (change["start_frame"],)
        row = at.loc[key]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        rows.append({**{k: change[k] for k in keys}, "frame": int(change["start_frame"]),
                     "timestamp_s": float(change["start_s"]), "from": before[i],
                     "to": change["label"], **{p: float(row[p]) for p in probs}})
    return pd.DataFrame(rows, columns=columns).astype({"face_id": "Int64"})


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per face: ``[source,] face_id, frames, first_s, last_s, seconds, label`` (the
    decided label shown most), ``share_<class>`` and ``share_undecided`` (of its frames),
    ``mean_p_<class>``, ``episodes`` and ``events`` (label changes)."""
    import pandas as pd

    faces = _faces(table)
    keys = _keys(faces)
    classes = classes_of(table)
    runs = episodes(table)
    rows = []
    for key, group in faces.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        shares = group["shown"].value_counts(normalize=True)
        decided = group.loc[group["shown"] != UNDECIDED, "shown"]
        mine = runs
        for k, v in zip(keys, key, strict=True):
            mine = mine[mine[k] == v]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row.update(frames=len(group), first_s=float(group["timestamp_s"].min()),
                   last_s=float(group["timestamp_s"].max()))
        row["seconds"] = round(row["last_s"] - row["first_s"], 6)
        row["label"] = str(decided.mode().iloc[0]) if len(decided) else UNDECIDED
        for name in [*classes, UNDECIDED]:
            row[f"share_{name}"] = round(float(shares.get(name, 0.0)), 5)
        for name in classes:
            row[f"mean_p_{name}"] = round(float(group[f"p_{name}"].mean()), 5)
        row["episodes"], row["events"] = len(mine), max(len(mine) - 1, 0)
        rows.append(row)
    columns = [*keys, "frames", "first_s", "last_s", "seconds", "label",
               *(f"share_{n}" for n in [*classes, UNDECIDED]),
               *(f"mean_p_{n}" for n in classes), "episodes", "events"]
    return pd.DataFrame(rows, columns=columns).astype({"face_id": "Int64"})


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A result table written by ``analyze`` (CSV, JSON lines, Parquet) or a ``batch`` rows
    folder (Hive-partitioned Parquet, ``source`` from the folder names)."""
    import pandas as pd

    from .outputs import SUFFIXES

    path = Path(path)
    if path.is_dir():
        return pd.read_parquet(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt == "csv":
        return pd.read_csv(path, dtype={"label": "string", "source": "string"})
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype={"label": "string", "source": "string"})
    if fmt == "parquet":
        return pd.read_parquet(path)
    raise ValueError(f"cannot tell the format of {path} from its suffix "
                     "(.csv, .jsonl, .parquet, or a batch rows folder)")
