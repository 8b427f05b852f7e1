"""The rclpy node: a camera topic in, the REP-155 face topics out.

The subscription (sensor-data QoS: best effort, depth 1) drops each message into a one-slot
mailbox (:class:`~emotion_estimator.live.NewestFrame`: the newest frame wins, replaced frames
are counted as dropped); one worker thread takes the newest, converts it
(:mod:`.images`), runs the per-frame step every front end runs
(:meth:`EmotionEstimator.process`, stamps relative to the first frame) and publishes what
:class:`~.rep155.Rep155` says, stamped with the source image's header.
``/diagnostics`` gets fps, latency, dropped and bad frames once a second. SIGINT and SIGTERM
stop it cleanly: faces retired, empty ``tracked`` sent.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..estimator import EmotionEstimator
from ..live import NewestFrame
from .images import BadImage, to_bgr
from .rep155 import DEFAULT_NAMESPACE, Rep155, Update, topic
from .stats import NodeStats

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
INPUT_TYPES = {"image": IMAGE, "compressed": COMPRESSED}
RESET_AFTER_S = 1.0  # stamps jumping back further than this (a bag replayed again): new state


@dataclass
class NodeConfig:
    """What the command line gives; ROS parameters of the same names override it."""

    topic: str = "image"
    input_type: str = "auto"  # auto (from the graph), image, compressed
    namespace: str = DEFAULT_NAMESPACE
    model: str = ""
    operating_point: str = "balanced"
    smoothing: str = "ema"
    max_faces: int = 1
    forget_after: float = 1.0
    diagnostics_period_s: float = 1.0


def _qos() -> tuple[Any, Any]:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    sensor = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
    out = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    return sensor, out


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class EmotionNode:
    """The node's state: subscription, worker, per-face publishers, diagnostics."""

    def __init__(self, node: Any, config: NodeConfig,
                 make_estimator: Callable[[NodeConfig], EmotionEstimator]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from hri_msgs.msg import IdsList
        from std_msgs.msg import String

        self.node, self.log = node, node.get_logger()
        self.config = self._parameters(config)
        self.estimator = make_estimator(self.config)
        self.sensor_qos, self.out_qos = _qos()
        ns = self.config.namespace.rstrip("/") or DEFAULT_NAMESPACE
        self.namespace = ns
        self.tracked_pub = node.create_publisher(IdsList, f"{ns}/tracked", self.out_qos)
        self.changes_pub = node.create_publisher(String, "~/expression_changes", self.out_qos)
        self.diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.face_pubs: dict[str, tuple[Any, Any]] = {}
        self.stats = NodeStats()
        self.mailbox = NewestFrame()
        self.input_topic = node.resolve_topic_name(self.config.topic)
        self.input_type: str | None = None
        self.subscription = None
        self.error: BaseException | None = None
        self._wrong_types: tuple[str, ...] = ()
        self._pub_lock = threading.Lock()
        # MediaPipe's import and graph start (seconds on a busy machine) happen here, before
        # the node says it is up, not on the first camera frame: one blank frame at t = 0
        # (stamps are made relative to the first image, so they start at 0 too)
        self.estimator.process(np.zeros((64, 64, 3), np.uint8), 0.0)
        self._worker = threading.Thread(target=self._work, name="emotion-estimator", daemon=True)
        self._worker.start()
        if self.config.input_type != "auto":
            self._subscribe(INPUT_TYPES[self.config.input_type])
        self._graph_timer = node.create_timer(0.5, self._check_graph)
        node.create_timer(self.config.diagnostics_period_s, self._diagnostics)

    def _parameters(self, config: NodeConfig) -> NodeConfig:
        """Declare the parameters (CLI values as defaults) and read them back."""
        from rcl_interfaces.msg import ParameterDescriptor

        out = NodeConfig()
        loose = ParameterDescriptor(dynamic_typing=True)  # forget_after:=2 is a float too
        for name, default in vars(config).items():
            value = self.node.declare_parameter(name, default, loose).value
            try:
                setattr(out, name, type(default)(value))
            except (TypeError, ValueError):
                from ..errors import InputError

                raise InputError(f"parameter {name}: {value!r} is not a "
                                 f"{type(default).__name__}") from None
        if out.input_type not in ("auto", *INPUT_TYPES):
            from ..errors import InputError

            raise InputError(f"input_type must be auto, image or compressed, not "
                             f"{out.input_type!r}")
        return out

    # input ---------------------------------------------------------------------------------

    def _subscribe(self, type_name: str) -> None:
        from sensor_msgs.msg import CompressedImage, Image

        cls = Image if type_name == IMAGE else CompressedImage
        self.input_type = type_name
        self.subscription = self.node.create_subscription(
            cls, self.config.topic, self._on_image, self.sensor_qos)
        self._say(f"subscribed to {self.input_topic} ({type_name})", error=False)

    def _check_graph(self) -> None:
        """Find the input topic's type (auto), or say once that its publishers send another."""
        types = dict(self.node.get_topic_names_and_types()).get(self.input_topic, [])
        if not types:
            return
        if self.subscription is None:
            chosen = next((t for t in types if t in (IMAGE, COMPRESSED)), None)
            if chosen is not None:
                self._subscribe(chosen)
                return
        if self.input_type in types or tuple(types) == self._wrong_types:
            return
        self._wrong_types = tuple(types)  # counted once per change of the topic's types
        if self.stats.bad_frame("wrong_type"):
            self._say(f"{self.input_topic} carries {', '.join(types)}, not "
                      f"{self.input_type or 'sensor_msgs/msg/Image or CompressedImage'}; "
                      "waiting for an image publisher")

    def _on_image(self, msg: Any, info: Any) -> None:
        """Into the mailbox; gaps in a publisher's sequence numbers count as lost frames."""
        seq, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        key = bytes((gid or {}).get("data", b"")) if gid else b""
        self.stats.frame_received(key, seq)
        self.mailbox.put(msg)

    def _say(self, text: str, error: bool = True) -> None:
        """To /rosout, and to the terminal (the CLI sends native stderr to /dev/null)."""
        if error:  # (rclpy wants one severity per call site)
            self.log.error(text)
        else:
            self.log.info(text)
        if sys.stderr.fileno() != 2:
            print(f"emotion-estimator ros2: {'error: ' if error else ''}{text}",
                  file=sys.stderr)

    # the per-frame step ------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported by run_node, node stops
            self.error = exc

    def _loop(self) -> None:
        est, rep, t0, last = self.estimator, Rep155(), 0, None
        try:
            while (msg := self.mailbox.take()) is not None:
                try:
                    image = to_bgr(msg)
                except BadImage as exc:
                    self._bad(exc.kind, str(exc))
                    continue
                stamp = _stamp_ns(msg.header.stamp) or self.node.get_clock().now().nanoseconds
                if last is None:
                    t0 = stamp
                elif stamp <= last:
                    if (last - stamp) / 1e9 <= RESET_AFTER_S:
                        self._bad("out_of_order", f"stamp {stamp} ns not after {last} ns")
                        continue
                    self._publish(rep.retire_all(), msg.header)  # replayed from the start
                    est.reset()
                    rep, t0 = Rep155(), stamp
                last = stamp
                result = est.process(image, (stamp - t0) / 1e9)  # the shared per-frame step
                self._publish(rep(result, image.shape[1], image.shape[0]), msg.header)
                now = self.node.get_clock().now().nanoseconds
                self.stats.frame_done((now - stamp) / 1e6)
            self._publish(rep.retire_all(), None)
        finally:
            est.reset()  # releases the VIDEO landmarker in the thread that used it

    def _bad(self, kind: str, text: str) -> None:
        if self.stats.bad_frame(kind):
            self._say(f"{self.input_topic}: {text} (counted in /diagnostics as bad_{kind}; "
                      "said once)")

    # output --------------------------------------------------------------------------------

    def _publish(self, update: Update, header: Any) -> None:
        from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D
        from std_msgs.msg import Header, String

        if header is None:
            header = Header(stamp=self.node.get_clock().now().to_msg())
        with self._pub_lock:
            for face in update.retired:
                for pub in self.face_pubs.pop(face, ()):
                    self.node.destroy_publisher(pub)
            for face in update.appeared:
                self.face_pubs[face] = (
                    self.node.create_publisher(NormalizedRegionOfInterest2D,
                                               topic(self.namespace, face, "roi"), self.out_qos),
                    self.node.create_publisher(Expression,
                                               topic(self.namespace, face, "expression"),
                                               self.out_qos))
            self.tracked_pub.publish(IdsList(header=header, ids=update.tracked))
            for roi in update.rois:
                self.face_pubs[roi.face][0].publish(NormalizedRegionOfInterest2D(
                    header=header, xmin=roi.xmin, ymin=roi.ymin, xmax=roi.xmax, ymax=roi.ymax,
                    c=roi.c))
            for ex in update.expressions:
                self.face_pubs[ex.face][1].publish(Expression(
                    header=header, expression=ex.expression, valence=ex.valence,
                    arousal=ex.arousal, confidence=ex.confidence))
            stamp = round(_stamp_ns(header.stamp) / 1e9, 9)
            for change in update.changes:
                self.changes_pub.publish(String(data=json.dumps(
                    {**change, "stamp": stamp, "frame_id": header.frame_id})))

    def _diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        values = self.stats.snapshot(self.mailbox.dropped)
        if self.subscription is None:
            level, text = DiagnosticStatus.WARN, f"waiting for an image topic {self.input_topic}"
        elif values["frames_unsupported"]:
            level, text = DiagnosticStatus.WARN, "some frames could not be used"
        else:
            level, text = DiagnosticStatus.OK, "running"
        status = DiagnosticStatus(
            level=level, name=f"{self.node.get_name()}: emotion estimation", message=text,
            hardware_id=self.input_topic,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]
            + [KeyValue(key="faces_tracked", value=str(len(self.face_pubs))),
               KeyValue(key="input_type", value=self.input_type or "")])
        self.diag_pub.publish(DiagnosticArray(
            header=self._now_header(), status=[status]))

    def _now_header(self) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=self.node.get_clock().now().to_msg())

    def stop(self) -> None:
        """Finish the worker (it retires every face) and wait for it."""
        self.mailbox.finish()
        self._worker.join(timeout=10)


def run_node(config: NodeConfig, ros_args: list[str],
             make_estimator: Callable[[NodeConfig], EmotionEstimator]) -> int:
    """Spin the node until SIGINT / SIGTERM (exit 0) or a failure in the worker (exit 1)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=["emotion-estimator", *ros_args],
               signal_handler_options=SignalHandlerOptions.NO)
    node = app = None
    try:
        node = rclpy.create_node("emotion_estimator")
        app = EmotionNode(node, config, make_estimator)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        app._say(f"publishing REP-155 faces under {app.namespace}/", error=False)
        while not stop.is_set() and app.error is None and app._worker.is_alive():
            executor.spin_once(timeout_sec=0.1)
        app.stop()
        if app.error is not None:
            raise app.error
        return 0
    finally:
        if app is not None and app._worker.is_alive():
            app.stop()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
