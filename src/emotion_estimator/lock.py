"""An advisory lock on an output folder: two runs never write into the same one.

The lock is ``fcntl.flock`` on ``FOLDER/.lock``, so the kernel drops it when its process ends,
however it ends (kill -9 included): there is no stale lock to clean up. The file holds the pid
of the holder, for the error message; it stays in the folder, except that a folder this run
created and left empty (a run that failed early) is removed again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class FolderBusyError(InputError):
    """Another run holds the folder's lock: exit 2."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) for the block; yield the folder.

    Raises :class:`FolderBusyError` at once when another process holds it, and
    :class:`InputError` when the folder cannot be created or is not a folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{option} {folder}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise FolderBusyError(f"{option} {folder} is in use by another run{who}; "
                                      "wait for it to finish or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
        locked = True
    except BaseException:
        locked = fcntl is None or _holds(fd)
        raise
    finally:
        if created and locked:  # still held: no other run can be inside
            with contextlib.suppress(OSError):
                if [p.name for p in folder.iterdir()] == [LOCK_NAME]:
                    (folder / LOCK_NAME).unlink()
                    folder.rmdir()
        os.close(fd)  # releases the lock


def _holds(fd: int) -> bool:
    """Whether this process holds the lock on ``fd`` (it may have failed to take it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # re-locking our own lock succeeds
    except OSError:
        return False
    return True
