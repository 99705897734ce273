"""Reading and writing image files with explicit, reported conversions."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np

from radseg_edge.errors import InputError

#: Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS), about 13,400 x 13,400 pixels.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def max_image_pixels() -> int:
    """Largest width x height decoded (default 178,956,970 = Pillow's decompression-bomb limit, about
    13,400 x 13,400; set RADSEG_EDGE_MAX_IMAGE_PIXELS to change it)."""
    try:
        return int(os.environ.get("RADSEG_EDGE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS))
    except ValueError:
        raise InputError("RADSEG_EDGE_MAX_IMAGE_PIXELS must be a whole number of pixels") from None


def check_image_size(path: Path) -> None:
    """Refuse, from the file header alone (nothing decoded), an image larger than :func:`max_image_pixels`:
    a few bytes of PNG can claim 60000 x 60000 pixels (a decompression bomb) and exhaust memory."""
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
            with Image.open(path) as im:
                width, height = im.size
        pixels, size = width * height, f"{width}x{height} = {width * height:,} pixels"
    except Image.DecompressionBombError as exc:  # over Pillow's own limit; its message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else limit + 1
        size = f"{pixels:,} pixels"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # a format Pillow does not know (or a broken header): OpenCV decides
    if pixels > limit:
        raise InputError(f"{path}: the image header claims {size}, over the limit of {limit:,} "
                         "(a decompression bomb or a corrupt file); set RADSEG_EDGE_MAX_IMAGE_PIXELS to allow larger images")


def load_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read an image file as H x W x 3 uint8 RGB.

    Conversions are explicit and reported in the returned note: grayscale -> RGB (replicated), RGBA ->
    RGB (alpha dropped), 16-bit -> 8-bit (value / 257, rounded).
    Raises:
        InputError: unreadable or not an image.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image not found: {p}")
    check_image_size(p)
    try:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError) as exc:
        raise InputError(f"{p}: not a readable image (OpenCV could not decode it: {type(exc).__name__})") from None
    if img is None:
        raise InputError(f"{p}: not a readable image (OpenCV could not decode it)")
    return decoded_to_rgb(img, str(p))


def to_8bit(img: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 the way every radseg-edge reader converts 16-bit images: value / 257, rounded."""
    return np.round(img.astype(np.float32) / 257.0).astype(np.uint8)


def decoded_to_rgb(img: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """An OpenCV-decoded image (H x W gray, H x W x 3 BGR or H x W x 4 BGRA; 8- or 16-bit) ->
    (H x W x 3 uint8 RGB, note of the conversions made). ``name`` names the image in errors."""
    notes = []
    if img.dtype == np.uint16:
        img = to_8bit(img)
        notes.append("16-bit converted to 8-bit")
    elif img.dtype != np.uint8:
        raise InputError(f"{name}: unsupported pixel type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        notes.append("grayscale replicated to RGB")
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        notes.append("alpha channel dropped")
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise InputError(f"{name}: {img.shape[2]} channels; expected 1, 3 or 4")
    return np.ascontiguousarray(img), ", ".join(notes)


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an H x W x 3 uint8 RGB image (format from the suffix)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise InputError(f"could not write {path}")


def save_palette_png(path: str | Path, labels: np.ndarray, palette_rgb: np.ndarray) -> None:
    """Write H x W uint8 labels as an indexed (palette) PNG, like VOC's SegmentationClass files."""
    from PIL import Image

    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette_rgb)] = palette_rgb[:256]
    img.putpalette(pal.flatten().tolist())
    img.save(str(path))
