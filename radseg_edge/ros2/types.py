"""Message types without ROS: rosbags typestores, and the namespaces message builders use.

The plain converters build messages through a :class:`Messages` namespace (``msgs.Image(...)``,
``msgs.byte_array(np_array)``), so that the same code makes rosbags dataclasses (bags, tests,
benchmark) and rclpy messages (the node; see :func:`radseg_edge.ros2.node.rclpy_messages`).

vision_msgs is not part of the rosbags typestores: LabelInfo and VisionClass are registered here from
their .msg definitions (vision_msgs 4.x, the version shipped for Humble and Jazzy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from radseg_edge.errors import InputError, require

#: distributions with a typestore here (the message definitions the node and bags use are identical in both).
DISTROS = ("humble", "jazzy")

#: vision_msgs definitions (github.com/ros-perception/vision_msgs, ros2 branch), field for field.
VISION_MSGS = {
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"


@functools.cache
def typestore(distro: str = "humble"):
    """The rosbags typestore of ``distro`` ("humble" or "jazzy") with vision_msgs registered."""
    require("rosbags", "ros", "reading and writing ROS 2 messages without ROS")
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if distro not in DISTROS:
        raise InputError(f"ROS 2 distribution {distro!r}: expected one of {', '.join(DISTROS)}")
    store = get_typestore(Stores.ROS2_HUMBLE if distro == "humble" else Stores.ROS2_JAZZY)
    missing: dict[str, Any] = {}
    for name, text in VISION_MSGS.items():
        if name not in store.types:
            missing.update(get_types_from_msg(text, name))
    if missing:
        store.register(missing)
    return store


@dataclass(frozen=True)
class Messages:
    """Message classes by short name, and adapters for the two field kinds that differ between
    rosbags dataclasses and rclpy classes (``uint8[]`` and ``byte``)."""

    classes: dict[str, type]
    byte_array: Callable[[np.ndarray], Any]  # contiguous uint8 numpy -> what a uint8[] field takes
    byte_value: Callable[[int], Any]  # 0..255 -> what a ``byte`` field takes

    def __getattr__(self, name: str) -> type:
        try:
            return self.classes[name]
        except KeyError:
            raise AttributeError(name) from None


_SHORT = {
    "Time": "builtin_interfaces/msg/Time",
    "Header": "std_msgs/msg/Header",
    "String": "std_msgs/msg/String",
    "Image": IMAGE,
    "CompressedImage": COMPRESSED_IMAGE,
    "CameraInfo": "sensor_msgs/msg/CameraInfo",
    "VisionClass": "vision_msgs/msg/VisionClass",
    "LabelInfo": LABEL_INFO,
    "KeyValue": "diagnostic_msgs/msg/KeyValue",
    "DiagnosticStatus": "diagnostic_msgs/msg/DiagnosticStatus",
    "DiagnosticArray": DIAGNOSTIC_ARRAY,
}


@functools.cache
def rosbags_messages(distro: str = "humble") -> Messages:
    """Message classes of the rosbags typestore of ``distro`` (numpy arrays for ``uint8[]``, ints for ``byte``)."""
    store = typestore(distro)
    return Messages({k: store.types[v] for k, v in _SHORT.items()},
                    byte_array=lambda a: np.ascontiguousarray(a, dtype=np.uint8).reshape(-1), byte_value=int)


def serialize(msg: Any, distro: str = "humble") -> memoryview:
    """A rosbags message -> CDR bytes (what a ROS 2 publisher sends, little endian)."""
    return typestore(distro).serialize_cdr(msg, msg.__msgtype__)


def deserialize(data: bytes | memoryview, msgtype: str, distro: str = "humble") -> Any:
    """CDR bytes -> a rosbags message of ``msgtype`` (e.g. "sensor_msgs/msg/Image")."""
    return typestore(distro).deserialize_cdr(data, msgtype)
