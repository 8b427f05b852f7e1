"""``analyze``'s options for robot recordings: ``--topic``, ``--list-topics``, ``--ros-bag``.

Bags are opened like any input (:func:`emotion_estimator.sources.open_source`, which asks
:mod:`emotion_estimator.ros.bagsource`); this module adds the options and the REP-155 bag
output (:mod:`emotion_estimator.ros.bagwriter`) as one more sink.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_recording_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", metavar="TOPIC",
                   help="the image topic of a bag input (ROS 1 .bag, ROS 2 sqlite3/MCAP; "
                        "default: its only image topic)")
    p.add_argument("--list-topics", action="store_true",
                   help="list the image topics of the bag inputs and exit")
    p.add_argument("--ros-bag", metavar="OUT",
                   help="also write the REP-155 face messages, with the source stamps, into a "
                        "ROS 2 bag folder OUT (MCAP; sqlite3 when OUT ends in .db3)")


def recording_step(args: argparse.Namespace) -> int | None:
    """Check ``--ros-bag`` (exit 2 before any work); with ``--list-topics`` print the image
    topics of each bag input and return 0; else None (the run goes on)."""
    from ..errors import InputError

    if args.ros_bag is not None:
        from ..ros import require

        require("rosbags")
        if len(args.inputs) != 1:
            raise InputError("--ros-bag takes a single input (its stamps start the bag)")
        out = Path(args.ros_bag)
        if out.exists() and not (out.is_dir() and (out / "metadata.yaml").is_file()):
            raise InputError(f"--ros-bag {out}: exists and is not a bag folder; not replaced")
        if not out.resolve().parent.is_dir():
            raise InputError(f"--ros-bag {out}: no such folder: {out.resolve().parent}")
    if not args.list_topics:
        return None
    from ..ros.bagsource import image_topics, is_bag
    from ..video import SourceError

    if not args.inputs or not all(is_bag(i) for i in args.inputs):
        raise InputError("--list-topics takes bag inputs (.bag, .db3, .mcap or a bag folder)")
    for item in args.inputs:
        try:
            topics = image_topics(item)
        except SourceError as exc:
            raise InputError(str(exc)) from exc
        for topic, msgtype, count in topics:
            print(f"{item}\t{topic}\t{msgtype}\t{count}")
        if not topics:
            print(f"{item}: no image topics", file=sys.stderr)
    return 0


class RosBagSink:
    """The REP-155 messages of each result into ``--ros-bag OUT``, stamped like its source."""

    def __init__(self, path: str) -> None:
        from ..ros.bagwriter import BagWriter

        self.writer = BagWriter(path)

    def __call__(self, result: Any, source: Any) -> None:
        """``source``: the input; a bag's images keep their own stamps, a video's frames are
        stamped with their timestamps from 0 s."""
        stamp = getattr(source, "start_ns", 0) + round(result.timestamp_s * 1e9)
        self.writer.write(result, stamp, getattr(source, "frame_id", ""))

    def close(self) -> None:
        self.writer.close()


def open_ros_bag(args: argparse.Namespace) -> RosBagSink | None:
    return RosBagSink(args.ros_bag) if getattr(args, "ros_bag", None) else None
