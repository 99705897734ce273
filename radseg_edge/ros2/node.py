"""The ``radseg_edge`` ROS 2 node: a thin rclpy adapter over :mod:`radseg_edge.ros2` (NOT RUN: this
repository's machines have no ROS 2; everything except the rclpy calls below is tested without ROS).

    ros2 run radseg_edge_ros radseg_node --ros-args -p checkpoint:=c-radio_v3-b -p vocab:="['v.safetensors']" \
        -r image:=/camera/image_raw

Subscribes ``image`` (sensor_msgs/Image; ``image/compressed`` CompressedImage with ``compressed:=true``),
optionally ``camera_info``, and ``~/classes`` (std_msgs/String, "a, b, c"). Publishes ``~/labels``,
``~/overlay``, ``~/confidence`` (optional), ``~/camera_info`` (optional), ``~/label_info`` (latched)
and ``/diagnostics``. A capture callback keeps only the newest image (the latest-frame policy); one
worker thread segments it. See docs/ros2.md.
"""

from __future__ import annotations

import array
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from radseg_edge.errors import RadsegError
from radseg_edge.ros2.diagnostics import TimingWindow, diagnostic_array, diagnostic_status
from radseg_edge.ros2.params import NodeParams, QosSpec, declared_defaults, label_info_qos, parse_params
from radseg_edge.ros2.processor import FrameProcessor, segmenter_from_params
from radseg_edge.ros2.types import Messages


def rclpy_messages() -> Messages:
    """The ROS 2 Python message classes (``uint8[]`` fields take array('B'), ``byte`` fields bytes)."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header, String
    from vision_msgs.msg import LabelInfo, VisionClass

    classes = dict(Time=Time, Header=Header, String=String, Image=Image, CompressedImage=CompressedImage,
                   CameraInfo=CameraInfo, VisionClass=VisionClass, LabelInfo=LabelInfo, KeyValue=KeyValue,
                   DiagnosticStatus=DiagnosticStatus, DiagnosticArray=DiagnosticArray)
    return Messages(classes, byte_array=lambda a: array.array("B", np.ascontiguousarray(a, np.uint8).tobytes()),
                    byte_value=lambda v: bytes([v]))


def rclpy_qos(spec: QosSpec):
    """:class:`QosSpec` -> rclpy QoSProfile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy[spec.history.upper()], depth=spec.depth,
                      reliability=ReliabilityPolicy[spec.reliability.upper()],
                      durability=DurabilityPolicy[spec.durability.upper()])


class RadsegNode:
    """Wires an rclpy node to a :class:`FrameProcessor` and a :class:`VocabularyController`."""

    def __init__(self, node: Any, params: NodeParams, msgs: Messages | None = None,
                 qos: Callable[[QosSpec], Any] | None = None) -> None:
        """``msgs`` / ``qos``: message classes and QoS converter (default rclpy's; the tests pass rosbags'
        classes and a fake node to exercise this wiring without ROS)."""
        from radseg_edge.runtime.live_vocab import VocabularyController
        from radseg_edge.runtime.pipeline import FrameSlot

        self.node, self.params = node, params
        self.msgs = msgs if msgs is not None else rclpy_messages()
        to_qos = qos if qos is not None else rclpy_qos
        log = node.get_logger()
        segmenter, bank = segmenter_from_params(params, log=log.info)
        self.controller = VocabularyController(segmenter, bank, log=log.info)
        self.processor = FrameProcessor(segmenter, self.msgs, params.publish_overlay, params.publish_confidence,
                                        params.alpha)
        self.backend = getattr(segmenter, "name", None) or type(segmenter).__name__
        out, m = to_qos(params.output_qos_spec), self.msgs
        pub = node.create_publisher
        self.pubs = {"labels": pub(m.Image, "~/labels", out)}
        if params.publish_overlay:
            self.pubs["overlay"] = pub(m.Image, "~/overlay", out)
        if params.publish_confidence:
            self.pubs["confidence"] = pub(m.Image, "~/confidence", out)
        if params.camera_info:
            self.pubs["camera_info"] = pub(m.CameraInfo, "~/camera_info", out)
            node.create_subscription(m.CameraInfo, "camera_info", self._on_camera_info, to_qos(params.input_qos_spec))
        self.info_pub = pub(m.LabelInfo, "~/label_info", to_qos(label_info_qos()))
        self.diag_pub = pub(m.DiagnosticArray, "/diagnostics", 10) if params.diagnostics_period > 0 else None
        image_type, image_topic = (m.CompressedImage, "image/compressed") if params.compressed else (m.Image, "image")
        node.create_subscription(image_type, image_topic, self._on_image, to_qos(params.input_qos_spec))
        node.create_subscription(m.String, "~/classes", self._on_classes, 10)
        node.add_on_set_parameters_callback(self._on_parameters)
        self.slot = FrameSlot(keep_latest=True)
        self.window = TimingWindow()
        self.camera_info = None
        self._info_version = -1
        self._fps_mark = (time.monotonic(), 0)
        if self.diag_pub is not None:
            node.create_timer(params.diagnostics_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="radseg-infer", daemon=True)
        self._worker.start()

    # ----- callbacks (executor thread) -----
    def _on_image(self, msg: Any) -> None:
        dropped = self.slot.dropped
        self.slot.put(msg)
        self.window.dropped += self.slot.dropped - dropped

    def _on_camera_info(self, msg: Any) -> None:
        self.camera_info = msg

    def _on_classes(self, msg: Any) -> None:
        self.controller.submit(msg.data, origin="topic")

    def _on_parameters(self, changes: list) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        for p in changes:
            if p.name != "classes":
                return SetParametersResult(successful=False, reason=f"{p.name} is read at start: restart the node")
            fut = self.controller.submit(str(p.value), origin="parameter")
            if fut.done() and fut.exception() is not None:  # names rejected at once (unknown, empty, ...)
                return SetParametersResult(successful=False, reason=str(fut.exception()))
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        t0, n0 = self._fps_mark
        fps = (self.window.frames - n0) / (now - t0) if now > t0 else None
        self._fps_mark = (now, self.window.frames)
        status = diagnostic_status(self.msgs, self.window, f"{self.node.get_name()}: segmentation", self.backend,
                                   extra={"backend": self.backend, "classes": len(self.processor.segmenter.class_names),
                                          "vocabulary_version": self.controller.version}, fps=fps)
        hdr = self.msgs.Header(stamp=self.node.get_clock().now().to_msg(), frame_id="")
        self.diag_pub.publish(diagnostic_array(self.msgs, hdr, [status]))

    # ----- worker thread -----
    def _work(self) -> None:
        while True:
            msg = self.slot.get(timeout=0.1)
            if self.slot.finished:
                return
            if msg is None:
                continue
            self.controller.apply_pending()  # between two frames, never during one
            if self.controller.version != self._info_version:
                self._info_version = self.controller.version
                self.info_pub.publish(self.processor.label_info(msg.header, self.params.prediction_thresh))
            try:
                out = self.processor(msg)
            except Exception as exc:  # a bad frame (RadsegError) or a backend failure: report, keep running
                why = str(exc) if isinstance(exc, RadsegError) else f"{type(exc).__name__}: {exc}"
                self.window.errors += 1
                self.window.last_error = why
                self.node.get_logger().warning(f"frame skipped: {why}", throttle_duration_sec=5.0)
                continue
            t0 = time.perf_counter()
            self.pubs["labels"].publish(out.labels)
            for key in ("overlay", "confidence"):
                if key in self.pubs and getattr(out, key) is not None:
                    self.pubs[key].publish(getattr(out, key))
            if "camera_info" in self.pubs and self.camera_info is not None:
                info = self.camera_info
                info.header = msg.header
                self.pubs["camera_info"].publish(info)
            out.timings["publish"] = (time.perf_counter() - t0) * 1e3
            self.window.last_error = ""
            self.window.add({k: v for k, v in out.timings.items() if k != "total"})

    def shutdown(self) -> None:
        self.slot.stop()
        self.controller.cancel_pending()


def read_parameters(node: Any) -> NodeParams:
    """Declare every parameter (and the Isaac ROS aliases) on ``node`` and parse their values."""
    values = {}
    for name, default in {**declared_defaults(), "engine_file_path": "", "model_file_path": ""}.items():
        # [""]: rclpy cannot infer the type of an empty list; empty entries are dropped by parse_params
        node.declare_parameter(name, [""] if isinstance(default, list) else default)
        value = node.get_parameter(name).value
        if value is not None and not (name.endswith("_path") and value == ""):
            values[name] = list(value) if isinstance(default, list) else value
    return parse_params(values)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run radseg_edge_ros radseg_node``."""
    try:
        import rclpy
    except ImportError:
        print("error: the ROS 2 node needs rclpy: source a ROS 2 installation (e.g. /opt/ros/humble/setup.bash); "
              "without ROS use `radseg-edge bag`", file=sys.stderr)
        return 1
    rclpy.init(args=args)
    node = rclpy.create_node("radseg_edge")
    adapter = None
    try:
        adapter = RadsegNode(node, read_parameters(node))
        rclpy.spin(node)
    except RadsegError as exc:
        node.get_logger().error(str(exc))
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if adapter is not None:
            adapter.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


__all__ = ["RadsegNode", "main", "rclpy_messages", "rclpy_qos", "read_parameters"]
