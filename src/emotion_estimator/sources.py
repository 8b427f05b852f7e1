"""The choice of frame source: what a name, path, URL or camera index opens as.

:mod:`emotion_estimator.video` holds the file and camera sources and
:mod:`emotion_estimator.live` the newest-frame live ones; this module alone decides which of
them an input opens as (``analyze``, ``blendshapes``, ``batch``, ``serve`` and the API all ask
here), so neither of those modules imports the other's chooser.

To add a kind of input (a robot recording, say), register an opener: a function of
``(source, options)`` that returns a :class:`FrameSource` for inputs it recognises and None
for the others. Openers are asked in order; files and cameras are the last resort::

    register_opener(open_bag)              # asked before the built-in ones
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .live import LiveCamera, ReplaySource, StreamSource
from .ros.bagsource import is_bag, open_bag
from .video import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    CameraSource,
    FrameSource,
    ImageSource,
    SourceError,
    VideoSource,
    looks_like_image,
    not_found,
)

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
Source = str | os.PathLike | int


@dataclass(frozen=True)
class SourceOptions:
    """How to open an input: ``realtime`` replays a video file at its frame rate as a live
    source (``loop``: over and over); ``topic``: the image topic of a robot recording."""

    realtime: bool = False
    loop: bool = False
    topic: str | None = None


Opener = Callable[[Source, SourceOptions], FrameSource | None]


def is_url(source: object) -> bool:
    """Whether ``source`` names a network stream (``scheme://...``)."""
    return (isinstance(source, str) and "://" in source
            and source.split("://", 1)[0].lower() in URL_SCHEMES)


def _open_live(source: Source, options: SourceOptions) -> FrameSource | None:
    """A camera index, a stream URL or (``realtime``) a video file: newest frame wins."""
    if isinstance(source, int):
        return LiveCamera(source)
    if is_url(source):
        return StreamSource(str(source))
    if options.realtime:
        path = Path(source)
        if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
            return ReplaySource(path, loop=options.loop)
    return None


def _open_file(source: Source, options: SourceOptions) -> FrameSource:
    """An image or video file, told apart by content (an mp4 named .jpg is a video)."""
    if isinstance(source, int):
        return CameraSource(source)
    path = Path(source)
    if path.is_dir():
        raise SourceError(f"{path} is a directory; pass its files (see expand_inputs)")
    if not path.is_file():
        raise not_found(path)
    if looks_like_image(path):
        return ImageSource(path)
    try:
        return VideoSource(path)
    except SourceError:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise SourceError(f"cannot decode image: {path}") from None
        raise


OPENERS: list[Opener] = [open_bag, _open_live]  # bags: ROS 1/2 recordings (ros/bagsource.py)


def register_opener(opener: Opener, *, first: bool = True) -> None:
    """Ask ``opener`` too (before the others with ``first``); files and cameras stay last."""
    if opener not in OPENERS:
        OPENERS.insert(0 if first else len(OPENERS), opener)


def open_source(source: Source, realtime: bool = False, loop: bool = False,
                topic: str | None = None) -> FrameSource:
    """Open a camera (int), a stream URL, or an image or video file.

    Cameras, stream URLs and, with ``realtime``, video files open as live newest-frame
    sources (:mod:`emotion_estimator.live`); raises :class:`SourceError` when it cannot.
    """
    options = SourceOptions(realtime=realtime, loop=loop, topic=topic)
    for opener in OPENERS:
        if (opened := opener(source, options)) is not None:
            return opened
    return _open_file(source, options)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Expand folders into their image and video files (sorted); keep files and URLs.

    A link in a folder that points nowhere but is named like a medium is kept: opening it
    then fails with its own clear error instead of the input vanishing unnoticed."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if is_url(item):  # a network stream (kept as the string): open_source opens it
            paths.append(item)  # type: ignore[arg-type]
        elif p.is_dir() and not is_bag(p):  # a ROS 2 bag folder is one input
            found = sorted(
                f for f in p.iterdir()
                if (f.is_file() or (f.is_symlink() and not f.exists()))
                and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise SourceError(f"{p} holds no image or video files")
            paths.extend(found)
        elif not p.exists():
            raise not_found(p)
        else:
            paths.append(p)
    return paths
