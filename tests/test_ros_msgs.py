"""The vendored hri_msgs types hash like upstream's (hri_msgs 2.0.0, humble-devel).

The expected field lists below are upstream's, written out independently of the vendored
``.msg`` files; their RIHS01 type hashes (computed by rosbags) must equal those of the types
the set-up built with rosidl (and of the definitions the bag writer registers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

UPSTREAM = {
    "Expression": "std_msgs/Header header\nstring expression\nfloat32 valence\n"
                  "float32 arousal\nfloat32 confidence\n",
    "IdsList": "std_msgs/Header header\nstring[] ids\n",
    "NormalizedRegionOfInterest2D": "std_msgs/Header header\nfloat32 xmin\nfloat32 ymin\n"
                                    "float32 xmax\nfloat32 ymax\nfloat32 c\n",
}


def upstream_hashes() -> dict[str, str]:
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
    for name, text in UPSTREAM.items():
        store.register(typesys.get_types_from_msg(text, f"hri_msgs/msg/{name}"))
    return {name: store.hash_rihs01(f"hri_msgs/msg/{name}") for name in UPSTREAM}


def test_vendored_definitions_hash_like_upstream() -> None:
    from emotion_estimator.ros.bagwriter import typestore

    ours = typestore()
    assert {n: ours.hash_rihs01(f"hri_msgs/msg/{n}") for n in UPSTREAM} == upstream_hashes()


def test_built_types_hash_like_upstream() -> None:
    pytest.importorskip("hri_msgs.msg")
    share = Path(sys.prefix) / "share" / "hri_msgs" / "msg"  # where build_ros_msgs.sh put it
    built = {}
    for name in UPSTREAM:
        hashes = json.loads((share / f"{name}.json").read_text())["type_hashes"]
        built[name] = next(h["hash_string"] for h in hashes
                           if h["type_name"] == f"hri_msgs/msg/{name}")
    assert built == upstream_hashes()
