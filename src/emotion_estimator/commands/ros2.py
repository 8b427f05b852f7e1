"""``emotion-estimator ros2``: a ROS 2 node, camera topic in, REP-155 face topics out."""

from __future__ import annotations

import argparse
from typing import Any

from ..temporal import SMOOTHING
from .view_options import add_view_options

MAX_FACES = 100


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", default="image", metavar="TOPIC",
                   help="input image topic (default: image, remappable with --ros-args -r)")
    p.add_argument("--type", dest="input_type", choices=("auto", "image", "compressed"),
                   default="auto", help="sensor_msgs/Image or CompressedImage (default: the "
                                        "type the topic has on the graph)")
    p.add_argument("--namespace", default="/humans/faces",
                   help="where the REP-155 face topics go (default: /humans/faces)")
    p.add_argument("--model", default="", metavar="ONNX|NAME",
                   help="classifier (default: shipped)")
    add_view_options(p)
    p.add_argument("--smoothing", choices=SMOOTHING, default="ema",
                   help="temporal filter per face (default: ema)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--forget-after", type=float, default=1.0, metavar="S",
                   help="seconds a face may be missing before its id is retired (1.0)")
    p.add_argument("--landmarker", metavar="PATH", help="face_landmarker.task to use")
    p.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                   help="everything after it goes to ROS (-r remaps, -p name:=value "
                        "parameters: topic, input_type, namespace, model, operating_point, "
                        "smoothing, max_faces, forget_after)")


def run(args: argparse.Namespace) -> int:
    from ..ros import require

    require("rclpy", "sensor_msgs.msg", "diagnostic_msgs.msg", "hri_msgs.msg")
    from ..ros.node import NodeConfig, run_node

    config = NodeConfig(topic=args.topic, input_type=args.input_type,
                        namespace=args.namespace, model=args.model or "",
                        operating_point=args.operating_point,
                        smoothing=args.smoothing, max_faces=args.max_faces,
                        forget_after=args.forget_after)

    def make_estimator(cfg: NodeConfig) -> Any:
        from ..errors import InputError
        from ..estimator import EmotionEstimator

        if not 1 <= cfg.max_faces <= MAX_FACES:
            raise InputError(f"max_faces must be between 1 and {MAX_FACES}")
        if cfg.smoothing not in SMOOTHING:
            raise InputError(f"smoothing must be one of {', '.join(SMOOTHING)}")
        if not cfg.forget_after >= 0:
            raise InputError("forget_after must be a number of seconds >= 0")
        try:
            return EmotionEstimator(cfg.model or None, max_faces=cfg.max_faces,
                                    smoothing=cfg.smoothing, forget_s=cfg.forget_after,
                                    landmarker=args.landmarker,
                                    operating_point=cfg.operating_point,
                                    expressions=args.expressions)
        except (ValueError, OSError) as exc:
            raise InputError(str(exc)) from exc

    return run_node(config, ["--ros-args", *args.ros_args] if args.ros_args else [],
                    make_estimator)
