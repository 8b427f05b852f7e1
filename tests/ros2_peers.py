"""Peer processes for the ROS 2 tests and benchmark: a camera publisher and a REP-155 listener.

``python tests/ros2_peers.py publish VIDEO --topic T --kind image|compressed|png|string``
publishes the video's frames (real frames, 30 fps by default) stamped with the wall clock, or
with ``--lockstep`` stamped with the video's own timestamps, each once the node has answered
the last (a busy machine then drops nothing, and the node's labels are those of the video);
the ``--encoding`` of raw frames is chosen (rgb8, bgr8, mono8, ...); ``--corrupt N`` sends N
broken frames first.
``python tests/ros2_peers.py listen --seconds S --out FILE.json`` records every message of the
REP-155 face topics (found on the graph as they appear), ``/diagnostics`` and the change
topic, with the receive time, and the per-face topics that existed over time, until SIGINT /
SIGTERM or ``--seconds``; it prints ``listening`` once subscribed.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time


def publish(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import rclpy
    from hri_msgs.msg import IdsList
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header, String

    from emotion_estimator.video import VideoSource

    rclpy.init()
    node = rclpy.create_node("test_camera")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    cls = {"image": Image, "compressed": CompressedImage, "png": CompressedImage,
           "string": String}[args.kind]
    pub = node.create_publisher(cls, args.topic, qos)
    seen: set[int] = set()  # --lockstep: the stamps the node has answered on tracked
    node.create_subscription(IdsList, "/humans/faces/tracked", lambda m: seen.add(
        m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec), 50)
    frames, times = [], []
    with VideoSource(args.video) as src:
        for f in src:
            if f.index % args.every:
                continue
            image = f.image if args.scale == 1.0 else cv2.resize(
                f.image, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA)
            frames.append(image)
            times.append(f.timestamp_s)
    deadline = time.monotonic() + args.wait_s  # until the node has subscribed
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    period = 1.0 / args.fps
    sent, stamps = 0, []
    start = time.monotonic()
    for _ in range(args.corrupt):
        msg = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not really a jpeg")
        if args.kind == "image":
            msg = Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(16))
        pub.publish(msg)
        time.sleep(max(period, 0.1))
    if args.kind in ("compressed", "png"):  # encoded once: the publisher's CPU is not the node's
        ext = ".png" if args.kind == "png" else ".jpg"
        encoded = [cv2.imencode(ext, f)[1].tobytes() for f in frames]
    elif args.kind == "image":
        encoded = [_encode_raw(f, args.encoding, cv2, np).tobytes() for f in frames]
    else:
        encoded = [b""] * len(frames)
    base = node.get_clock().now().nanoseconds
    for k in range(args.repeat):
        for bgr, data, t in zip(frames, encoded, times, strict=True):
            if args.lockstep:  # the video's own timing, each frame once the last is answered
                ns = base + round((k * (times[-1] + period) + t) * 1e9)
            else:
                ns = node.get_clock().now().nanoseconds
            stamp = _time(ns)
            stamps.append(ns)
            header = Header(stamp=stamp, frame_id="camera")
            if args.kind == "string":
                pub.publish(String(data="not an image"))
            elif args.kind in ("compressed", "png"):
                fmt = "png" if args.kind == "png" else "jpeg"
                pub.publish(CompressedImage(format=fmt, data=data, header=header))
            else:
                pub.publish(Image(height=bgr.shape[0], width=bgr.shape[1],
                                  encoding=args.encoding, step=len(data) // bgr.shape[0],
                                  data=data, header=header))
            sent += 1
            if args.lockstep:
                until = time.monotonic() + args.lockstep_timeout_s
                while ns not in seen and time.monotonic() < until:
                    rclpy.spin_once(node, timeout_sec=0.05)
                continue
            delay = start + (sent + args.corrupt) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    end = time.monotonic() + args.linger_s
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start, "stamps": stamps,
                      "answered": sorted(seen & set(stamps))}))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _time(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _encode_raw(bgr, encoding, cv2, np):
    conv = {"bgr8": None, "rgb8": cv2.COLOR_BGR2RGB, "mono8": cv2.COLOR_BGR2GRAY,
            "bgra8": cv2.COLOR_BGR2BGRA, "rgba8": cv2.COLOR_BGR2RGBA}
    if encoding == "yuv422":  # UYVY from YUV 4:4:4
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
        y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
        out = np.empty((bgr.shape[0], bgr.shape[1] * 2), np.uint8)
        out[:, 0::4], out[:, 2::4] = u[:, 0::2], v[:, 0::2]
        out[:, 1::2] = y
        return out
    return bgr if conv[encoding] is None else cv2.cvtColor(bgr, conv[encoding])


def listen(args: argparse.Namespace) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import String

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("test_listener")
    ns = args.namespace.rstrip("/")
    face_topic = re.compile(rf"^{re.escape(ns)}/([^/]+)/(roi|expression)$")
    record: dict = {"tracked": [], "roi": [], "expression": [], "diagnostics": [],
                    "changes": [], "face_topics": []}

    def stamp(h):
        return h.stamp.sec * 1_000_000_000 + h.stamp.nanosec

    def on_tracked(m):
        record["tracked"].append({"stamp": stamp(m.header), "ids": list(m.ids),
                                  "frame_id": m.header.frame_id, "t": time.time_ns()})

    subs = {}
    node.create_subscription(IdsList, f"{ns}/tracked", on_tracked, 50)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: record["diagnostics"]
                             .append({s.name: {kv.key: kv.value for kv in s.values}
                                      for s in m.status}), 50)
    node.create_subscription(String, "/emotion_estimator/expression_changes",
                             lambda m: record["changes"].append(json.loads(m.data)), 50)

    def watch(topic, face, leaf):
        cls = Expression if leaf == "expression" else NormalizedRegionOfInterest2D

        def cb(m):
            item = {"face": face, "stamp": stamp(m.header), "frame_id": m.header.frame_id,
                    "t": time.time_ns()}
            if leaf == "expression":
                item.update(expression=m.expression, confidence=m.confidence,
                            valence=m.valence, arousal=m.arousal)
            else:
                item.update(xmin=m.xmin, ymin=m.ymin, xmax=m.xmax, ymax=m.ymax, c=m.c)
            record[leaf].append(item)

        subs[topic] = node.create_subscription(cls, topic, cb, 50)

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + args.seconds
    last_graph = 0.0
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("listening", flush=True)
    while time.monotonic() < end and not stop:
        executor.spin_once(timeout_sec=0.02)
        if time.monotonic() - last_graph > 0.05:
            last_graph = time.monotonic()
            names = sorted(n for n, types in node.get_topic_names_and_types()
                           if face_topic.match(n) and node.count_publishers(n) > 0)
            if not record["face_topics"] or record["face_topics"][-1]["topics"] != names:
                record["face_topics"].append({"t": time.time_ns(), "topics": names})
            for n in names:
                if n not in subs:
                    m = face_topic.match(n)
                    watch(n, m.group(1), m.group(2))
    with open(args.out, "w") as fh:
        json.dump(record, fh)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def camera_bag(video: str, out: str, storage: str = "mcap", kind: str = "image",
               topic: str = "/camera/image_raw", base_ns: int = 1_700_000_000_000_000_000,
               extra_topic: bool = False, repeat: int = 1) -> int:
    """Write a video's frames into a bag with ``rosbags``: ``storage`` mcap, sqlite3 or ros1;
    ``kind`` image (raw bgr8), png or jpeg (CompressedImage). Stamps: ``base_ns`` + the
    video's own timestamps (``repeat``: the video again and again). Returns the number of
    frames."""
    import cv2
    import numpy as np
    from rosbags.typesys import Stores, get_typestore

    from emotion_estimator.video import VideoSource

    ros1 = storage == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    t = store.types
    msgtype = "sensor_msgs/msg/Image" if kind == "image" else "sensor_msgs/msg/CompressedImage"
    if ros1:
        from rosbags.rosbag1 import Writer

        writer = Writer(out)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(out, version=9, storage_plugin=plugin)
    n = 0
    with writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        if extra_topic:
            other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        with VideoSource(video) as src:
            frames = list(src)
        step = frames[-1].timestamp_s + (frames[-1].timestamp_s / max(len(frames) - 1, 1))
        for k in range(repeat):
            for frame in frames:
                stamp = base_ns + round((k * step + frame.timestamp_s) * 1e9)
                time = t["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                        nanosec=stamp % 10**9)
                header = (t["std_msgs/msg/Header"](seq=n, stamp=time, frame_id="camera")
                          if ros1 else t["std_msgs/msg/Header"](stamp=time, frame_id="camera"))
                img = frame.image
                if kind == "image":
                    msg = t[msgtype](header=header, height=img.shape[0], width=img.shape[1],
                                     encoding="bgr8", is_bigendian=0, step=img.shape[1] * 3,
                                     data=np.ascontiguousarray(img).reshape(-1))
                else:
                    ok, buf = cv2.imencode(".png" if kind == "png" else ".jpg", img)
                    msg = t[msgtype](header=header, format=kind, data=buf.reshape(-1))
                data = (store.serialize_ros1(msg, msgtype) if ros1
                        else store.serialize_cdr(msg, msgtype))
                writer.write(conn, stamp, data)
                if extra_topic:
                    text = t["std_msgs/msg/String"](data="hello")
                    writer.write(other, stamp, store.serialize_ros1(text, "std_msgs/msg/String")
                                 if ros1 else store.serialize_cdr(text, "std_msgs/msg/String"))
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish")
    pub.add_argument("video")
    pub.add_argument("--topic", default="/camera/image_raw")
    pub.add_argument("--kind", choices=("image", "compressed", "png", "string"),
                     default="image")
    pub.add_argument("--lockstep", action="store_true",
                     help="stamps from the video's own timestamps; each frame sent once the "
                          "node has answered the last on /humans/faces/tracked")
    pub.add_argument("--lockstep-timeout-s", type=float, default=15.0)
    pub.add_argument("--encoding", default="bgr8")
    pub.add_argument("--fps", type=float, default=30.0)
    pub.add_argument("--scale", type=float, default=1.0)
    pub.add_argument("--every", type=int, default=1, help="send every Nth frame of the video")
    pub.add_argument("--repeat", type=int, default=1)
    pub.add_argument("--corrupt", type=int, default=0)
    pub.add_argument("--wait-s", type=float, default=20.0)
    pub.add_argument("--linger-s", type=float, default=0.5)
    lis = sub.add_parser("listen")
    lis.add_argument("--namespace", default="/humans/faces")
    lis.add_argument("--seconds", type=float, default=10.0)
    lis.add_argument("--out", required=True)
    args = p.parse_args(argv)
    return publish(args) if args.cmd == "publish" else listen(args)


if __name__ == "__main__":
    sys.exit(main())
