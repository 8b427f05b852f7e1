"""Where a batch writes: a local folder, or any URL pyarrow (or fsspec) can open (``s3://``).

Local files are written to a temp file and renamed into place; on an object store a file
appears when its upload completes, which is atomic for readers too.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa


def is_url(root: str) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for a plain path."""
    return "://" in root


class Store:
    """Files under one root, addressed by ``/``-separated paths relative to it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.local: Path | None = None if is_url(root) else Path(root).expanduser().resolve()
        self._fs: Any = None
        self._base = ""
        if self.local is None:
            self._fs, self._base = _filesystem(root)

    def local_path(self, rel: str) -> Path | None:
        """The local file for ``rel`` (None on a remote store)."""
        return None if self.local is None else self.local / rel

    def uri(self, rel: str) -> str:
        """A printable location of ``rel``."""
        return str(self.local / rel) if self.local is not None else f"{self.root.rstrip('/')}/{rel}"

    def exists(self, rel: str) -> bool:
        if self.local is not None:
            return (self.local / rel).exists()
        from pyarrow import fs

        return self._fs.get_file_info(self._remote(rel)).type != fs.FileType.NotFound

    def makedirs(self, rel: str = "") -> None:
        if self.local is not None:
            (self.local / rel).mkdir(parents=True, exist_ok=True)
        else:
            self._fs.create_dir(self._remote(rel), recursive=True)

    def delete_dir(self, rel: str) -> None:
        """Remove a folder and all below it (nothing if absent)."""
        if self.local is not None:
            shutil.rmtree(self.local / rel, ignore_errors=True)
        elif self.exists(rel):
            self._fs.delete_dir(self._remote(rel))

    def discard_partial(self, rel: str) -> int:
        """Remove the temp files (``.*.part``) killed writers left below ``rel`` (local
        stores; an object store never shows a partial upload); how many."""
        if self.local is None or not (self.local / rel).is_dir():
            return 0
        count = 0
        for stale in (self.local / rel).rglob(".*.part"):
            with contextlib.suppress(OSError):
                stale.unlink()
                count += 1
        return count

    def read_table(self, rel: str) -> pa.Table:
        import pyarrow.parquet as pq

        if self.local is not None:
            return pq.read_table(self.local / rel)
        return pq.read_table(self._remote(rel), filesystem=self._fs)

    def write_table(self, table: pa.Table, rel: str) -> None:
        """Write a Parquet file atomically."""
        import pyarrow.parquet as pq

        with self.writing(rel) as path:
            pq.write_table(table, path)

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        """A local file path to write ``rel`` to; published when the block succeeds."""
        if self.local is not None:
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            for stale in target.parent.glob(f".*{target.name}.*.part"):  # a killed writer's
                stale.unlink(missing_ok=True)
            with atomic_path(target) as tmp:
                yield str(tmp)
            return
        from pyarrow import fs

        with tempfile.TemporaryDirectory(prefix="emotion-batch-") as tmp:
            local = Path(tmp) / Path(rel).name
            yield str(local)
            self.makedirs(rel.rpartition("/")[0])
            fs.copy_files(str(local), self._remote(rel),
                          source_filesystem=fs.LocalFileSystem(), destination_filesystem=self._fs)

    def _remote(self, rel: str) -> str:
        return f"{self._base.rstrip('/')}/{rel}" if rel else self._base


def _filesystem(root: str) -> tuple[Any, str]:
    """A pyarrow filesystem and base path for a URL; fsspec for schemes pyarrow lacks."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(root)
    except Exception as pa_error:  # noqa: BLE001 - pyarrow raises ArrowInvalid and others
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"cannot open {root}: {pa_error}") from None
        filesystem, path = fsspec.core.url_to_fs(root)
        return fs.PyFileSystem(fs.FSSpecHandler(filesystem)), path
