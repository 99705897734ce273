"""Node parameters and QoS profiles, parsed and validated without ROS.

QoS profiles are named, as Isaac ROS nodes take them (``input_qos:=SENSOR_DATA``):

=============== =========== =============== ======================================================
name            reliability durability      use
=============== =========== =============== ======================================================
SENSOR_DATA     best effort volatile        camera input (default for ``input_qos``): never blocks
DEFAULT         reliable    volatile        outputs (default for ``output_qos``)
SYSTEM_DEFAULT  (the middleware's own)
BEST_EFFORT     best effort volatile
RELIABLE        reliable    volatile
LATCHED         reliable    transient local ``~/label_info`` (always): late subscribers get the classes
=============== =========== =============== ======================================================

All keep the last ``qos_depth`` messages (default 1: with the latest-frame policy a queue only adds latency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radseg_edge.errors import InputError


@dataclass(frozen=True)
class QosSpec:
    """A QoS profile in plain values (converted to rclpy's QoSProfile by the node, to rosbags' Qos for bags)."""

    reliability: str  # "reliable" | "best_effort" | "system_default"
    durability: str  # "volatile" | "transient_local" | "system_default"
    depth: int = 1
    history: str = "keep_last"


QOS_PRESETS: dict[str, tuple[str, str]] = {
    "SENSOR_DATA": ("best_effort", "volatile"),
    "DEFAULT": ("reliable", "volatile"),
    "SYSTEM_DEFAULT": ("system_default", "system_default"),
    "BEST_EFFORT": ("best_effort", "volatile"),
    "RELIABLE": ("reliable", "volatile"),
    "LATCHED": ("reliable", "transient_local"),
}


def qos_profile(name: str, depth: int = 1) -> QosSpec:
    """A named QoS profile (case-insensitive, see the module table) with history depth ``depth``."""
    key = str(name).strip().upper()
    if key not in QOS_PRESETS:
        raise InputError(f"QoS profile {name!r}: expected one of {', '.join(QOS_PRESETS)}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise InputError(f"qos_depth {depth!r}: expected an integer >= 1")
    rel, dur = QOS_PRESETS[key]
    return QosSpec(rel, dur, depth)


def label_info_qos() -> QosSpec:
    """``~/label_info``: reliable, transient local (latched), depth 1, as vision_msgs recommends."""
    return qos_profile("LATCHED", 1)


def rosbags_qos(spec: QosSpec):
    """The rosbags ``Qos`` record of ``spec`` (offered QoS stored in a bag's metadata)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory[spec.history.upper()], depth=spec.depth,
               reliability=QosReliability[spec.reliability.upper()], durability=QosDurability[spec.durability.upper()],
               deadline=never, lifespan=never, liveliness=QosLiveliness.SYSTEM_DEFAULT,
               liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)


@dataclass
class NodeParams:
    """Parameters of the ``radseg_edge`` ROS 2 node (names as in ``ros2 run ... --ros-args -p name:=value``).

    Model: ``backend`` (auto, torch, onnxruntime, tensorrt, torch-tensorrt), ``export_dir`` (folder from
    ``radseg-edge export``; Isaac ROS calls the engine ``engine_file_path``), ``checkpoint`` (RADIO
    checkpoint, torch backend; ``model_file_path`` is accepted as an alias), ``device``, ``crop``,
    ``stride``, ``precision``, ``prediction_thresh``. Classes: ``vocab`` (vocabulary files, the first gives
    the initial classes), ``classes`` ("a, b, c"; changing it at run time switches classes),
    ``text_model`` ("" = the checkpoint's, "none" = only names from the vocab files). Topics: ``compressed``
    (subscribe sensor_msgs/CompressedImage), ``camera_info`` (republish the latest CameraInfo with each
    result), ``publish_overlay``, ``publish_confidence``, ``alpha``. QoS: ``input_qos``, ``output_qos``,
    ``qos_depth``. ``diagnostics_period`` seconds (0 = off).
    """

    backend: str = "auto"
    export_dir: str = ""
    checkpoint: str = ""
    device: str = "auto"
    crop: int = 336
    stride: int = 224
    precision: str = "fp32"
    prediction_thresh: float = 0.0
    vocab: list[str] = field(default_factory=list)
    classes: str = ""
    text_model: str = ""
    compressed: bool = False
    camera_info: bool = False
    publish_overlay: bool = True
    publish_confidence: bool = False
    alpha: float = 0.5
    input_qos: str = "SENSOR_DATA"
    output_qos: str = "DEFAULT"
    qos_depth: int = 1
    diagnostics_period: float = 1.0

    @property
    def input_qos_spec(self) -> QosSpec:
        return qos_profile(self.input_qos, self.qos_depth)

    @property
    def output_qos_spec(self) -> QosSpec:
        return qos_profile(self.output_qos, self.qos_depth)

    def radseg_options(self) -> dict[str, Any]:
        """Keyword arguments for ``RADSeg`` / ``make_segmenter`` (the rest stay at the paper defaults)."""
        return dict(crop=self.crop, stride=self.stride, precision=self.precision,
                    prediction_thresh=self.prediction_thresh)


#: parameter aliases (Isaac ROS names) -> our names.
ALIASES = {"engine_file_path": "export_dir", "model_file_path": "checkpoint"}


def _coerce(name: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [v for v in value if v]
    elif isinstance(value, str):
        return value
    shown = "a list of strings" if kind is list else kind.__name__
    raise InputError(f"parameter {name}: expected {shown}, got {value!r}")


def parse_params(values: Mapping[str, Any]) -> NodeParams:
    """Validate node parameters (unknown names, types, ranges, QoS names) -> :class:`NodeParams`.

    Raises:
        InputError: naming the parameter, what was expected and what was given.
    """
    from radseg_edge.backends import BACKENDS

    defaults = NodeParams()
    known = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(NodeParams)}
    out: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = ALIASES.get(raw_name, raw_name)
        if name not in known:
            raise InputError(f"unknown parameter {raw_name!r}; known: {', '.join(sorted(known))}")
        out[name] = _coerce(raw_name, value, known[name])
    p = NodeParams(**out)
    if p.backend not in ("auto", *BACKENDS):
        raise InputError(f"parameter backend {p.backend!r}: expected auto or one of {', '.join(BACKENDS)}")
    if p.precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"parameter precision {p.precision!r}: expected fp32, bf16 or fp16")
    if p.crop < 0 or (p.crop and not 0 < p.stride <= p.crop):
        raise InputError(f"parameters crop={p.crop}, stride={p.stride}: expected crop >= 0 and 0 < stride <= crop")
    if not 0.0 <= p.alpha <= 1.0:
        raise InputError(f"parameter alpha {p.alpha}: expected a value in [0, 1]")
    if not 0.0 <= p.prediction_thresh < 1.0:
        raise InputError(f"parameter prediction_thresh {p.prediction_thresh}: expected a value in [0, 1)")
    if p.diagnostics_period < 0:
        raise InputError(f"parameter diagnostics_period {p.diagnostics_period}: expected seconds >= 0 (0 = off)")
    p.input_qos_spec, p.output_qos_spec  # noqa: B018 - validates the QoS names and depth
    if p.backend not in ("auto", "torch") and not p.export_dir:
        raise InputError(f"backend {p.backend} runs a folder written by `radseg-edge export`: set export_dir")
    if not p.export_dir and not p.checkpoint:
        raise InputError("no model: set checkpoint (RADIO checkpoint, torch backend) or export_dir")
    if not p.vocab and not p.classes:
        raise InputError("no classes: set vocab (vocabulary files) or classes ('a, b, c')")
    return p


def declared_defaults() -> dict[str, Any]:
    """Every parameter with its default value (what the node declares)."""
    d = NodeParams()
    return {f.name: getattr(d, f.name) for f in dataclasses.fields(NodeParams)}
