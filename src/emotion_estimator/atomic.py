"""Atomic file writes: write a temp file beside the target, then ``os.replace`` it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def is_special(path: Path) -> bool:
    """True for an existing path that is not a regular file or folder (device, FIFO)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def temp_beside(path: Path, suffix: str = ".part") -> Path:
    """A new empty hidden file beside ``path``, with the permissions ``open`` would give.

    (``mkstemp`` makes it 0600; a published output should not be.)
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only when the block succeeds.

    The temp file gets the permissions a plain ``open`` would give. A special file such as
    ``/dev/null`` or a FIFO is yielded as is: renaming over it would destroy it.
    """
    path = Path(path)
    if is_special(path):
        yield path
        return
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) atomically, creating missing parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_parquet(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame as Parquet (no index) atomically, creating missing parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
