"""Frame sources: image files, video files and cameras, yielded lazily."""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
MAX_STILL_SIDE = 2048  # larger stills are downscaled before detection (memory stays bounded)


class SourceError(RuntimeError):
    """A frame source could not be opened or read."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame (BGR uint8) with its index and time in seconds."""

    index: int
    timestamp_s: float
    image: np.ndarray


class FrameSource:
    """Base class: iterate to get :class:`Frame` objects; ``warnings`` collects soft errors."""

    name: str = ""
    fps: float | None = None
    frame_count: int | None = None
    is_live: bool = False

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying device or file."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSource(FrameSource):
    """A single still image as a one-frame source.

    A still larger than ``max_side`` pixels is decoded reduced and downscaled (an 8000x8000
    photo would need ~0.8 GB in MediaPipe); ``scale`` is the factor applied (frame pixels per
    original pixel, 1.0 when not reduced).
    """

    def __init__(self, path: str | os.PathLike, max_side: int | None = MAX_STILL_SIDE) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(path)
        self.frame_count = 1
        self.image, self.scale = read_still(self.path, max_side)

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self.image)


def read_still(path: Path, max_side: int | None) -> tuple[np.ndarray, float]:
    """An image as BGR uint8 no larger than ``max_side`` per side, and its scale factor.

    A large JPEG is decoded at 1/2, 1/4 or 1/8 size (never whole), then resized if needed.
    """
    import cv2

    if max_side is None:
        return read_image(path), 1.0
    if not path.is_file():
        raise not_found(path)
    side = max(_admitted(path))
    data = np.fromfile(path, dtype=np.uint8)
    reduce, flag = 1, cv2.IMREAD_COLOR
    if side > max_side:
        reduce, flag = next(((k, f) for k, f in ((2, cv2.IMREAD_REDUCED_COLOR_2),
                                                  (4, cv2.IMREAD_REDUCED_COLOR_4))
                             if side / k <= max_side), (8, cv2.IMREAD_REDUCED_COLOR_8))
    try:
        image = cv2.imdecode(data, flag)
    except cv2.error:
        image = None
    del data
    if image is None:
        raise SourceError(f"cannot decode image: {path}")
    scale = 1.0 / reduce
    if max(image.shape[:2]) > max_side:
        f = max_side / max(image.shape[:2])
        image = cv2.resize(image, (max(1, round(image.shape[1] * f)),
                                   max(1, round(image.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        scale *= f
    return image, scale


def _admitted(path: Path) -> tuple[int, int]:
    """The declared width and height, after the image-admission rule (:mod:`.admission`)."""
    from .admission import ImageRejected, admit_file

    try:
        declared = admit_file(path)
    except ImageRejected as exc:
        raise SourceError(str(exc)) from exc
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return declared.width, declared.height


def not_found(path: Path) -> SourceError:
    """The error for a path that cannot be opened: missing, a broken link or a link loop."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SourceError(f"symbolic link loop: {path}")
        if path.is_symlink():
            return SourceError(f"broken symbolic link: {path} -> {os.readlink(path)}")
        if exc.errno == errno.EACCES:
            return SourceError(f"permission denied: {path}")
        return SourceError(f"no such file: {path}")
    if not path.is_file() and not path.is_dir():
        return SourceError(f"not a regular file: {path}")
    return SourceError(f"no such file: {path}")


def looks_like_image(path: Path) -> bool:
    """True when the file's content (not its suffix) is an image format OpenCV reads."""
    import cv2

    try:
        return bool(cv2.haveImageReader(str(path)))
    except cv2.error:
        return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path) -> np.ndarray:
    """Read an image as BGR uint8, raising :class:`SourceError` with a readable reason."""
    import cv2

    if not path.is_file():
        raise not_found(path)
    _admitted(path)
    data = np.fromfile(path, dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:
        image = None
    if image is None:
        raise SourceError(f"cannot decode image: {path}")
    return image


class VideoSource(FrameSource):
    """A video file decoded with OpenCV; timestamps from the container, else index / fps.

    Decoding runs in a background thread (bounded queue: constant memory). A stream that
    ends before its announced frame count is reported in ``warnings``.
    """

    def __init__(self, path: str | os.PathLike, *, prefetch: int = 8) -> None:
        import cv2

        super().__init__()
        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise not_found(self.path)
        self._cap = cv2.VideoCapture(str(self.path))
        ok, first = (self._cap.read() if self._cap.isOpened() else (False, None))
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"cannot decode video: {self.path}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self._first = first
        self._first_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        self._prefetch = prefetch

    def _timestamp(self, index: int, pos_ms: float, previous: float) -> float:
        if pos_ms > 0 or index == 0:
            ts = pos_ms / 1000.0
        else:
            ts = index / self.fps if self.fps else float(index)
        if self.fps and ts <= previous:  # containers without timestamps repeat 0
            ts = index / self.fps
        return ts

    def _decode(self) -> Iterator[tuple[np.ndarray, float]]:
        import cv2

        yield self._first, self._first_ms
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                return
            yield image, self._cap.get(cv2.CAP_PROP_POS_MSEC)

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise SourceError(f"{self.name} can be read only once")
        q: queue.Queue = queue.Queue(maxsize=self._prefetch)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            """Queue ``item``; False once the consumer has stopped reading (never blocks)."""
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def worker() -> None:
            try:
                for item in self._decode():
                    if not put(item):
                        return
            finally:
                put(done)

        thread = threading.Thread(target=worker, name="decode", daemon=True)
        thread.start()
        index, previous = 0, -1.0
        try:
            while (item := q.get()) is not done:
                image, pos_ms = item
                previous = self._timestamp(index, pos_ms, previous)
                yield Frame(index, previous, image)
                index += 1
        finally:
            stop.set()
            thread.join(timeout=2)
            self._first = None
        if self.frame_count and index < self.frame_count - 1:
            self.warnings.append(
                f"{self.name}: decoded {index} of {self.frame_count} frames; "
                "the rest is unreadable (truncated file?)"
            )

    def close(self) -> None:
        self._cap.release()


class CameraSource(FrameSource):
    """A live camera by index; timestamps from the wall clock since the first frame."""

    is_live = True

    def __init__(self, index: int, *, read_timeout_s: float = 5.0) -> None:
        import cv2

        super().__init__()
        if index < 0:  # OpenCV segfaults on some negative indices
            raise SourceError(f"camera index must be 0 or more, not {index}")
        self.name = f"camera {index}"
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"camera {index} is not available")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.read_timeout_s = read_timeout_s

    def __iter__(self) -> Iterator[Frame]:
        import time

        start = None
        index = 0
        last_ok = time.monotonic()
        while True:
            ok, image = self._cap.read()
            now = time.monotonic()
            if not ok or image is None:
                if now - last_ok > self.read_timeout_s:
                    raise SourceError(f"{self.name} stopped delivering frames")
                time.sleep(0.01)
                continue
            last_ok = now
            start = now if start is None else start
            yield Frame(index, now - start, image)
            index += 1

    def close(self) -> None:
        self._cap.release()
