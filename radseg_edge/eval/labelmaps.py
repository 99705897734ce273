"""Reading and writing single-channel label maps (PNG) without losing palette indices.

OpenCV expands palette ("P"-mode) PNGs such as PASCAL VOC's ``SegmentationClass`` files to colours.
:func:`read_label_png` reads the PNG's own palette (PLTE chunk) and maps the colours back to their
indices, so the class ids come out exactly as stored, without Pillow.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from radseg_edge.errors import RadsegError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PALETTE_COLOUR_TYPE = 3


class LabelMapError(RadsegError):
    """A label map or image file cannot be read, or is not a single-channel class-id map."""


def _png_palette(path: Path) -> np.ndarray | None:
    """The PLTE chunk of a palette PNG as P x 3 uint8 RGB, or None for any other kind of PNG."""
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        colour_type = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR":
                data = f.read(length)
                colour_type = data[9]
                if colour_type != _PALETTE_COLOUR_TYPE:
                    return None
                f.seek(4, 1)
            elif kind == b"PLTE" and colour_type == _PALETTE_COLOUR_TYPE:
                return np.frombuffer(f.read(length), dtype=np.uint8).reshape(-1, 3)
            elif kind in (b"IDAT", b"IEND"):
                return None
            else:
                f.seek(length + 4, 1)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label map as stored: H x W integer array (uint8 or uint16) of raw label values.

    Grayscale PNGs (8 or 16 bit) are returned as is; palette PNGs return their palette indices.
    Raises :class:`LabelMapError` for a missing/unreadable file or a colour (non-palette RGB) image.
    """
    path = Path(path)
    palette = _png_palette(path)
    flag = cv2.IMREAD_COLOR if palette is not None else cv2.IMREAD_UNCHANGED
    array = cv2.imread(str(path), flag)
    if array is None:
        raise LabelMapError(f"cannot read the label map {path}: expected a readable single-channel PNG")
    if palette is None:
        if array.ndim != 2:
            raise LabelMapError(
                f"the label map {path} has {array.shape[2]} colour channels; expected one channel of class ids "
                "(a grayscale or palette PNG)"
            )
        return array
    keys = _pack_rgb(palette)
    order = np.argsort(keys, kind="stable")  # a colour listed twice maps to its first index
    sorted_keys = keys[order]
    pixels = _pack_rgb(array[..., ::-1])
    pos = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(sorted_keys) - 1)
    if not np.all(sorted_keys[pos] == pixels):
        raise LabelMapError(f"the palette PNG {path} has pixel colours that are not in its own palette")
    return order[pos].astype(np.uint8 if len(palette) <= 256 else np.uint16)


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write an H x W label map as a grayscale PNG: 8-bit when every value fits in 0..255, else 16-bit.

    Negative values (no class) are written as 255. Parent folders are created.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise LabelMapError(f"a label map must be H x W, got shape {tuple(labels.shape)} for {path}")
    labels = np.where(labels < 0, 255, labels)
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), labels.astype(dtype)):
        raise LabelMapError(f"cannot write the label map {path}")


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read a photo as H x W x 3 uint8 RGB (decoded by OpenCV, like the reference's mmcv loader).

    EXIF orientation is ignored: ground-truth label maps are drawn on the stored pixel grid.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise LabelMapError(f"cannot read the image {path}: expected a readable JPEG or PNG file")
    return np.ascontiguousarray(image[..., ::-1])
