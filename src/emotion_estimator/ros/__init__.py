"""ROS 2 front end: a real rclpy node on the REP-155 (ROS4HRI) topics, and bags as input/output.

Modules, one concern each: :mod:`.images` (``sensor_msgs`` images -> BGR arrays),
:mod:`.rep155` (per-frame results -> the REP-155 messages, ids, appear/retire, change events),
:mod:`.bagsource` (a bag's image topic as a :class:`~emotion_estimator.video.FrameSource`),
:mod:`.bagwriter` (REP-155 messages into a bag with the source stamps), :mod:`.stats`
(the numbers ``/diagnostics`` reports) and :mod:`.node` (the rclpy node). The node and the
bag paths run the same per-frame step as every front end (``EmotionEstimator.analyzer()``).

Face ids on the ROS side are strings ``face_<n>`` (``n``: the integer ``face_id`` of the
tables), valid as a ROS topic name token.
"""

from __future__ import annotations

import importlib

from ..errors import InputError

INSTALL_HINT = ("pip install 'emotion-estimator[ros]' and build the message types with "
                "scripts/build_ros_msgs.sh (scripts/setup.sh does both)")


class MissingRos(InputError):
    """The ``[ros]`` extra (or the built ``hri_msgs``) is not installed: exit 2 with a hint."""


def require(*modules: str) -> None:
    """Import ``modules`` or raise :class:`MissingRos` naming the first missing one."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MissingRos(f"{name} is not installed ({exc.name or name} missing); "
                             f"{INSTALL_HINT}") from None


def face_key(face_id: int) -> str:
    """The ROS face id of table face id ``face_id``: ``face_<n>``."""
    return f"face_{face_id}"
