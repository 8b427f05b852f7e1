"""Atomic file writes: write a temp file beside the target, then ``os.replace`` it.

Links are followed: the file a symlink names is replaced, never the link. Devices, FIFOs and
``/proc`` / ``/dev/fd`` links (``/dev/stdout``) are written in place. A temp file is held
under an advisory lock while it is written; one left by a killed run (no lock) is removed by
the next write to the same target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, stale temps stay
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pandas as pd

IN_PLACE_PREFIXES = ("/proc/", "/dev/fd/")
TEMP_INFIX = ".part"


def is_special(path: Path) -> bool:
    """True for an existing path that is not a regular file or folder (device, FIFO)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def resolve_output(path: str | os.PathLike) -> tuple[Path, bool]:
    """The file a write to ``path`` should reach, and whether to write it in place.

    Symlinks are followed hop by hop; a hop into ``/proc`` or ``/dev/fd`` (``/dev/stdout``)
    or a device / FIFO means "write in place". Raises ``OSError(ELOOP)`` on a link loop.
    """
    current = Path(os.path.abspath(path))
    for _ in range(40):
        parent = Path(os.path.realpath(current.parent))
        current = parent / current.name
        if str(current).startswith(IN_PLACE_PREFIXES):
            return current, True
        if not current.is_symlink():
            return current, is_special(current)
        current = Path(os.path.abspath(parent / os.readlink(current)))
    raise OSError(errno.ELOOP, "symbolic link loop", str(path))


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _stale_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}{TEMP_INFIX}(\.\w+)?")


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temp files of ``path`` that no live writer holds (left by kill -9); list them."""
    if fcntl is None or not path.parent.is_dir():
        return []
    pattern, removed = _stale_pattern(path), []
    for entry in os.scandir(path.parent):
        if not pattern.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a run writing it now
            continue
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


class TempFile:
    """A new, locked, hidden temp file beside ``target``: :meth:`publish` or :meth:`discard`.

    It gets the permissions of the file it replaces, else those a plain ``open`` would give
    (``mkstemp`` alone makes it 0600).
    """

    def __init__(self, target: Path, suffix: str = "") -> None:
        self.target = target
        remove_stale_temps(target)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_INFIX + suffix,
                                    dir=target.parent)
        self.path = Path(name)
        self._fd: int | None = fd
        try:
            _lock(fd)
            try:
                mode = stat.S_IMODE(os.stat(target).st_mode)
            except OSError:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(fd, mode)
        except BaseException:
            self.discard()
            raise

    def publish(self) -> None:
        """Move the temp file over the target (then release the lock)."""
        os.replace(self.path, self.target)
        self._release()

    def discard(self) -> None:
        """Delete the temp file (if still there) and release the lock."""
        self.path.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def temp_beside(path: Path, suffix: str = ".part") -> Path:
    """A new empty hidden file beside ``path``, with the permissions ``open`` would give.

    (``mkstemp`` makes it 0600; a published output should not be.) Unlocked: prefer
    :class:`TempFile` or :func:`atomic_path`.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``'s target; it replaces the target when the block ends.

    Symlinks are followed (the link stays, the file it names is replaced). A special file
    such as ``/dev/null``, a FIFO or ``/dev/stdout`` is yielded as is: renaming over it would
    destroy it. On an exception the temp file is removed and the target kept.
    """
    target, in_place = resolve_output(path)
    if in_place:
        yield Path(path)
        return
    tmp = TempFile(target)
    try:
        yield tmp.path
        tmp.publish()
    finally:
        tmp.discard()


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
