"""sensor_msgs/Image, CompressedImage and vision_msgs/LabelInfo <-> numpy arrays, without ROS.

Inputs (any message with the fields of sensor_msgs/Image or CompressedImage: rosbags or rclpy) become
H x W x 3 uint8 RGB frames:

- rgb8, bgr8, rgba8, bgra8, mono8 (and 8UC1 / 8UC3 read as mono8 / bgr8, as cv_bridge does);
- 16-bit rgb16, bgr16, rgba16, bgra16, mono16 (16UC1 = mono16): value / 257, rounded, like every
  image file radseg-edge reads (:func:`radseg_edge.runtime.image_io.to_8bit`); big-endian data is swapped;
- CompressedImage: anything OpenCV decodes (jpeg, png; 16-bit png as above).

Outputs (built through a :class:`~radseg_edge.ros2.types.Messages` namespace, with the input header):

- labels: mono8 class ids when the vocabulary has at most 255 classes, else mono16; pixels of no class
  (below ``prediction_thresh``) are the largest value of the type, :data:`NO_CLASS_MONO8` = 255 or
  :data:`NO_CLASS_MONO16` = 65535 - vision_msgs' "UNLABELED" id;
- overlay: rgb8 (:func:`radseg_edge.runtime.overlay.overlay`);
- confidence: 32FC1, the winning class's probability in [0, 1];
- LabelInfo: class_map id -> name in vocabulary order, threshold = the prediction threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from radseg_edge.errors import InputError
from radseg_edge.ros2.types import Messages
from radseg_edge.runtime.image_io import decoded_to_rgb, to_8bit

#: "no class" value of mono8 label images (vocabularies of up to 255 classes).
NO_CLASS_MONO8 = 255
#: "no class" value of mono16 label images (256 .. 65535 classes).
NO_CLASS_MONO16 = 65535

#: encoding -> (channels, bytes per channel, channel order of the data).
ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"), "bgr8": (3, 1, "bgr"), "rgba8": (4, 1, "rgba"), "bgra8": (4, 1, "bgra"),
    "mono8": (1, 1, "mono"), "8UC1": (1, 1, "mono"), "8UC3": (3, 1, "bgr"),
    "rgb16": (3, 2, "rgb"), "bgr16": (3, 2, "bgr"), "rgba16": (4, 2, "rgba"), "bgra16": (4, 2, "bgra"),
    "mono16": (1, 2, "mono"), "16UC1": (1, 2, "mono"),
}


def image_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> its pixels as H x W x C (or H x W) uint8/uint16 numpy, native byte order.

    Handles row padding (``step`` > width * pixel size). Raises :class:`InputError` for an unsupported
    encoding or a data buffer of the wrong size.
    """
    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise InputError(f"image encoding {enc!r} is not supported; expected one of {', '.join(ENCODINGS)} "
                         "(or publish sensor_msgs/CompressedImage)")
    ch, nbytes, _ = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * ch * nbytes
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if step < row or data.size < step * h or h == 0 or w == 0:
        raise InputError(f"{enc} image {w}x{h}: step {step} and {data.size} data bytes do not fit "
                         f"(expected step >= {row} and {step * h} bytes)")
    rows = data[: step * h].reshape(h, step)[:, :row]
    if nbytes == 2:
        dt = np.dtype(">u2" if msg.is_bigendian else "<u2")
        arr = np.ascontiguousarray(rows).view(dt).astype(np.uint16)
    else:
        arr = rows
    return arr.reshape(h, w, ch) if ch > 1 else arr.reshape(h, w)


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (16-bit: value / 257 rounded; mono replicated; alpha dropped)."""
    arr = image_to_array(msg)
    order = ENCODINGS[str(msg.encoding)][2]
    if arr.dtype == np.uint16:
        arr = to_8bit(arr)
    if order == "rgb":
        return np.array(arr, copy=True, order="C")  # message buffers are read-only: the model gets its own copy
    code = {"bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB, "bgra": cv2.COLOR_BGRA2RGB,
            "mono": cv2.COLOR_GRAY2RGB}[order]
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> H x W x 3 uint8 RGB."""
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise InputError(f"CompressedImage (format {msg.format!r}, {buf.size} bytes): OpenCV could not decode it")
    return decoded_to_rgb(img, f"CompressedImage ({msg.format})")[0]


def message_to_rgb(msg: Any) -> np.ndarray:
    """Image or CompressedImage -> H x W x 3 uint8 RGB (told apart by their fields)."""
    return compressed_to_rgb(msg) if hasattr(msg, "format") and not hasattr(msg, "encoding") else image_to_rgb(msg)


def array_to_image(msgs: Messages, array: np.ndarray, encoding: str, header: Any) -> Any:
    """H x W (x C) numpy -> sensor_msgs/Image with ``header`` (little-endian, no row padding).

    ``encoding`` must match the array: rgb8/bgr8 (H x W x 3 uint8), mono8 (H x W uint8), mono16
    (H x W uint16), 32FC1 (H x W float32).
    """
    kinds = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
             "mono8": (np.uint8, 1), "mono16": (np.uint16, 1), "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3),
             "32FC1": (np.float32, 1)}
    if encoding not in kinds:
        raise InputError(f"cannot write encoding {encoding!r}; expected one of {', '.join(kinds)}")
    dtype, ch = kinds[encoding]
    if array.dtype != dtype or (array.ndim == 2 and ch != 1) or (array.ndim == 3 and array.shape[2] != ch):
        raise InputError(f"{encoding}: expected {'H x W' if ch == 1 else f'H x W x {ch}'} {np.dtype(dtype)}, "
                         f"got {array.shape} {array.dtype}")
    a = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    h, w = a.shape[:2]
    return msgs.Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                      step=w * ch * a.dtype.itemsize, data=msgs.byte_array(a.view(np.uint8).reshape(-1)))


def labels_encoding(num_classes: int) -> str:
    """mono8 for up to 255 classes (255 = no class), mono16 for up to 65535 (65535 = no class)."""
    if num_classes <= NO_CLASS_MONO8:
        return "mono8"
    if num_classes <= NO_CLASS_MONO16:
        return "mono16"
    raise InputError(f"{num_classes} classes do not fit a mono16 label image (at most {NO_CLASS_MONO16})")


def labels_to_array(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """H x W int class ids (-1 = no class) -> uint8 (no class 255) or uint16 (no class 65535) by class count."""
    if labels_encoding(num_classes) == "mono8":
        return np.where(labels < 0, NO_CLASS_MONO8, labels).astype(np.uint8)
    return np.where(labels < 0, NO_CLASS_MONO16, labels).astype(np.uint16)


def labels_to_image(msgs: Messages, labels: np.ndarray, num_classes: int, header: Any) -> Any:
    """H x W int class ids -> mono8 / mono16 sensor_msgs/Image (see :func:`labels_encoding`)."""
    return array_to_image(msgs, labels_to_array(labels, num_classes), labels_encoding(num_classes), header)


def image_to_labels(msg: Any) -> np.ndarray:
    """A labels image (mono8 / mono16) -> H x W int64 class ids, -1 = no class."""
    arr = image_to_array(msg).astype(np.int64)
    no_class = NO_CLASS_MONO8 if str(msg.encoding) in ("mono8", "8UC1") else NO_CLASS_MONO16
    return np.where(arr == no_class, -1, arr)


def image_to_array_f32(msg: Any) -> np.ndarray:
    """A 32FC1 image (e.g. confidence) -> H x W float32."""
    if str(msg.encoding) != "32FC1":
        raise InputError(f"expected a 32FC1 image, found {msg.encoding!r}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    rows = np.ascontiguousarray(data[: step * h].reshape(h, step)[:, : w * 4])
    return rows.view(">f4" if msg.is_bigendian else "<f4").astype(np.float32).reshape(h, w)


def confidence_to_image(msgs: Messages, probs: Any, header: Any) -> Any:
    """1 x K x H x W (or K x H x W) class probabilities -> 32FC1 image of the winning class's probability."""
    p = probs.detach().float().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs, np.float32)
    p = p[0] if p.ndim == 4 else p
    return array_to_image(msgs, p.max(axis=0).astype(np.float32), "32FC1", header)


def label_info(msgs: Messages, class_names: Sequence[str], header: Any, threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo: class_map [(0, names[0]), (1, names[1]), ...], threshold in [0, 1]."""
    labels_encoding(len(class_names))  # refuses more classes than a label image can hold
    class_map = [msgs.VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    return msgs.LabelInfo(header=header, class_map=class_map, threshold=float(threshold))


def class_map(info: Any) -> dict[int, str]:
    """LabelInfo -> {class id: name}."""
    return {int(c.class_id): str(c.class_name) for c in info.class_map}


def header(msgs: Messages, sec: int, nanosec: int, frame_id: str) -> Any:
    """std_msgs/Header with stamp (sec, nanosec) and frame_id."""
    return msgs.Header(stamp=msgs.Time(sec=int(sec), nanosec=int(nanosec)), frame_id=str(frame_id))


def stamp_ns(msg_header: Any) -> int:
    """A header's stamp in integer nanoseconds."""
    return int(msg_header.stamp.sec) * 1_000_000_000 + int(msg_header.stamp.nanosec)
