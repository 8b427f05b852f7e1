"""Robot recordings as input: one image topic of a bag as a :class:`FrameSource`.

Reads ROS 2 bags (a folder with ``metadata.yaml``, sqlite3 or MCAP; or a bare ``.mcap`` /
``.db3`` file) and ROS 1 ``.bag`` files with ``rosbags`` (pure Python, no ROS install), topics
of ``sensor_msgs/Image`` or ``CompressedImage`` (:mod:`.images`). Timestamps come from the
recording: each image's header stamp (its receive time where the stamp is zero), as seconds
since the topic's first image; :class:`BagFrame` keeps the absolute stamp and frame id so the
results can be written back with the source stamps (:mod:`.bagwriter`); ``start_ns`` is the
first image's stamp, so ``start_ns + round(timestamp_s * 1e9)`` is any frame's own stamp.

Opened through :func:`emotion_estimator.sources.open_source` (``analyze BAG --topic T``,
``batch``); ``analyze --list-topics BAG`` prints :func:`image_topics`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..video import Frame, FrameSource, SourceError
from .images import BadImage, to_bgr

BAG_SUFFIXES = frozenset({".bag", ".db3", ".mcap"})
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass(frozen=True)
class BagFrame(Frame):
    """A frame with the recording's absolute stamp (ns) and the image's frame id."""

    stamp_ns: int = 0
    frame_id: str = ""


def is_bag(path: str | os.PathLike) -> bool:
    """A ROS 2 bag folder (``metadata.yaml``) or a file named ``.bag``, ``.db3``, ``.mcap``."""
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").is_file()
    return p.suffix.lower() in BAG_SUFFIXES


def _open_reader(path: Path) -> Any:
    """An open ``AnyReader``; :class:`SourceError` (or the missing-extra error) when not."""
    from . import require

    require("rosbags")
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise SourceError(f"no such file: {path}")
    reader = AnyReader([path])
    try:
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds: one line
        raise SourceError(f"cannot read bag {path}: {_reason(exc)} (truncated or not a "
                          "bag?)") from None
    return reader


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def bag_problem(path: str | os.PathLike) -> str | None:
    """Why a bag cannot be read (missing, truncated, not a bag), or None; the topic is
    checked when it is opened."""
    try:
        _open_reader(Path(path)).close()
    except SourceError as exc:
        return str(exc)
    return None


def image_topics(path: str | os.PathLike) -> list[tuple[str, str, int]]:
    """``(topic, type, message count)`` of the image topics in a bag, sorted by topic."""
    reader = _open_reader(Path(path))
    try:
        found: dict[tuple[str, str], int] = {}
        for conn in reader.connections:
            if conn.msgtype in IMAGE_TYPES:
                key = (conn.topic, conn.msgtype)
                found[key] = found.get(key, 0) + conn.msgcount
        return sorted((t, m, n) for (t, m), n in found.items())
    finally:
        reader.close()


class BagSource(FrameSource):
    """The images of one topic of a bag, in recording order.

    ``topic=None`` takes the bag's only image topic (several: :class:`SourceError` naming
    them). The first image is decoded on opening, so an unsupported encoding is refused before
    any output is written; a later undecodable image is skipped and reported in ``warnings``.
    """

    def __init__(self, path: str | os.PathLike, topic: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(path)
        self.start_ns, self.frame_id = 0, ""  # the first image's stamp and frame id
        self._reader = _open_reader(self.path)
        try:
            self._connections = self._choose(topic)
            self.topic = self._connections[0].topic
            self.frame_count = sum(c.msgcount for c in self._connections) or None
            self.fps = self._rate()
            self._pending = self._messages()
            self._first = next(self._pending, None)
            if self._first is None:
                raise SourceError(f"{self.name}: topic {self.topic} holds no messages")
            to_bgr(self._first[1])
        except BadImage as exc:
            self._reader.close()
            raise SourceError(f"{self.name} {self.topic}: {exc}") from None
        except BaseException:
            self._reader.close()
            raise

    def _choose(self, topic: str | None) -> list[Any]:
        images = [c for c in self._reader.connections if c.msgtype in IMAGE_TYPES]
        names = sorted({c.topic for c in images})
        if topic is None:
            if len(names) != 1:
                listed = ", ".join(names) if names else "none"
                raise SourceError(f"{self.name}: choose an image topic with --topic "
                                  f"(image topics: {listed})")
            topic = names[0]
        chosen = [c for c in self._reader.connections if c.topic == topic]
        if not chosen:
            raise SourceError(f"{self.name} has no topic {topic} (image topics: "
                              f"{', '.join(names) or 'none'})")
        wrong = [c.msgtype for c in chosen if c.msgtype not in IMAGE_TYPES]
        if wrong:
            raise SourceError(f"{self.name}: {topic} carries {wrong[0]}, not "
                              "sensor_msgs/Image or CompressedImage")
        return chosen

    def _rate(self) -> float | None:
        count = self.frame_count or 0
        span = (self._reader.end_time - self._reader.start_time) / 1e9
        return (count - 1) / span if count > 1 and span > 0 else None

    def _messages(self) -> Iterator[tuple[int, Any]]:
        for conn, t, raw in self._reader.messages(connections=self._connections):
            yield t, self._reader.deserialize(raw, conn.msgtype)

    def __iter__(self) -> Iterator[BagFrame]:
        if self._first is None:
            raise SourceError(f"{self.name} can be read only once")
        first, self._first = self._first, None
        messages = self._pending
        index, t0, last, skipped = 0, None, None, 0
        item: tuple[int, Any] | None = first
        while item is not None:
            received, msg = item
            stamp = (int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                     or received)
            try:
                image = to_bgr(msg)
            except BadImage as exc:
                skipped += 1
                if skipped == 1:
                    self.warnings.append(f"{self.name} {self.topic}: {exc}")
                image = None
            if image is not None and (last is None or stamp > last):
                t0 = stamp if t0 is None else t0
                last = stamp
                if index == 0:
                    self.start_ns, self.frame_id = stamp, str(msg.header.frame_id)
                yield BagFrame(index, (stamp - t0) / 1e9, image, stamp, str(msg.header.frame_id))
                index += 1
            elif image is not None:
                skipped += 1
                if skipped == 1:
                    self.warnings.append(f"{self.name} {self.topic}: stamps go backwards")
            try:
                item = next(messages, None)
            except Exception as exc:  # noqa: BLE001 - a cut-off bag: keep what was read
                self.warnings.append(f"{self.name}: read {index} images, then: {_reason(exc)} "
                                     "(truncated bag?)")
                item = None
        if skipped:
            self.warnings.append(f"{self.name} {self.topic}: {skipped} image(s) skipped")

    def close(self) -> None:
        self._reader.close()


def open_bag(source: Any, options: Any) -> BagSource | None:
    """The :mod:`emotion_estimator.sources` opener: a :class:`BagSource` for a bag, else None."""
    if isinstance(source, int) or not is_bag(source):
        return None
    return BagSource(source, options.topic)
