"""Results into a recording: the REP-155 messages, with the source stamps, in a ROS 2 bag.

``analyze INPUT --ros-bag OUT`` writes ``OUT`` (a ROS 2 bag folder; MCAP storage, or sqlite3
when OUT ends in ``.db3``) holding ``/humans/faces/tracked``, ``/humans/faces/<id>/roi``,
``/humans/faces/<id>/expression`` and ``/emotion_estimator/expression_changes``, each message
stamped (header and bag time) with its source image's stamp: a bag input's own stamps, a
video's timestamps from 0 s. Played beside the camera bag (``ros2 bag play CAMERA OUT``), rviz
or Foxglove show the camera and the faces together. Written with ``rosbags`` (no ROS
install), into a temporary folder that replaces OUT when the run ends (also when it is
stopped by Ctrl-C, like the table): a crash leaves no half-written bag at OUT.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..estimator import FrameResult
from .rep155 import DEFAULT_NAMESPACE, Rep155, Update, topic

MSG_DIR = Path(__file__).resolve().parent / "msg" / "hri_msgs" / "msg"
HRI_TYPES = ("Expression", "IdsList", "NormalizedRegionOfInterest2D")
CHANGES_TOPIC = "/emotion_estimator/expression_changes"


def typestore() -> Any:
    """A rosbags typestore (ROS 2 Kilted) with the vendored ``hri_msgs`` types added."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name in HRI_TYPES:
        text = (MSG_DIR / f"{name}.msg").read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"hri_msgs/msg/{name}"))
    store.register(types)
    return store


class BagWriter:
    """Writes each frame result's REP-155 messages; :meth:`close` publishes the bag."""

    def __init__(self, path: str | os.PathLike, namespace: str = DEFAULT_NAMESPACE) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.target = Path(path)
        self.namespace = namespace.rstrip("/")
        # rosbags names the storage file after the folder: write OUT inside a temp folder
        self.tmp_parent = self.target.with_name(f".{self.target.name}.part-{os.getpid()}")
        shutil.rmtree(self.tmp_parent, ignore_errors=True)
        self.tmp_parent.mkdir()
        self.tmp = self.tmp_parent / self.target.name
        plugin = (StoragePlugin.SQLITE3 if self.target.suffix.lower() == ".db3"
                  else StoragePlugin.MCAP)
        self.store = typestore()
        self.writer = Writer(self.tmp, version=9, storage_plugin=plugin)
        self.writer.open()
        self.rep = Rep155()
        self._conns: dict[str, Any] = {}
        self._last_stamp = 0
        self.messages = 0

    def _conn(self, name: str, msgtype: str) -> Any:
        if name not in self._conns:
            self._conns[name] = self.writer.add_connection(name, msgtype, typestore=self.store)
        return self._conns[name]

    def _write(self, name: str, msgtype: str, msg: Any, stamp: int) -> None:
        data = self.store.serialize_cdr(msg, msgtype)
        self.writer.write(self._conn(name, msgtype), stamp, data)
        self.messages += 1

    def write(self, result: FrameResult, stamp_ns: int, frame_id: str = "") -> None:
        """The messages of one frame, stamped ``stamp_ns`` (the source image's stamp)."""
        if result.image is None:
            raise ValueError("the frame result has no image (its size is needed)")
        height, width = result.image.shape[:2]
        self._last_stamp = stamp_ns
        self._emit(self.rep(result, width, height), stamp_ns, frame_id)

    def _emit(self, update: Update, stamp: int, frame_id: str) -> None:
        t = self.store.types
        header = t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 1_000_000_000,
                                                   nanosec=stamp % 1_000_000_000),
            frame_id=frame_id)
        self._write(f"{self.namespace}/tracked", "hri_msgs/msg/IdsList",
                    t["hri_msgs/msg/IdsList"](header=header, ids=list(update.tracked)), stamp)
        for roi in update.rois:
            self._write(topic(self.namespace, roi.face, "roi"),
                        "hri_msgs/msg/NormalizedRegionOfInterest2D",
                        t["hri_msgs/msg/NormalizedRegionOfInterest2D"](
                            header=header, xmin=roi.xmin, ymin=roi.ymin, xmax=roi.xmax,
                            ymax=roi.ymax, c=roi.c), stamp)
        for ex in update.expressions:
            self._write(topic(self.namespace, ex.face, "expression"), "hri_msgs/msg/Expression",
                        t["hri_msgs/msg/Expression"](
                            header=header, expression=ex.expression, valence=ex.valence,
                            arousal=ex.arousal, confidence=ex.confidence), stamp)
        for change in update.changes:
            text = json.dumps({**change, "stamp": stamp / 1e9, "frame_id": frame_id})
            self._write(CHANGES_TOPIC, "std_msgs/msg/String",
                        t["std_msgs/msg/String"](data=text), stamp)

    def close(self) -> None:
        """Retire the faces still tracked, finish the bag and move it to its place."""
        if self.rep.announced:
            self._emit(self.rep.retire_all(), self._last_stamp, "")
        self.writer.close()
        if self.target.is_dir():
            shutil.rmtree(self.target)
        elif self.target.exists():
            self.target.unlink()
        os.replace(self.tmp, self.target)
        self.tmp_parent.rmdir()
