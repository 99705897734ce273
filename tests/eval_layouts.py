"""Miniature benchmark folders on disk, in each dataset's standard layout (for tests/test_eval_*.py).

Label maps are written as the real datasets store them: PASCAL VOC as palette PNGs (the VOC colour
map), the others as 8-bit grayscale PNGs. Images are small random JPEG/PNG files.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: 256 x 3 uint8 (index bits spread over the R, G, B high bits)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def write_palette_png(path: Path, indices: np.ndarray, palette: np.ndarray | None = None) -> None:
    """An 8-bit palette ("P" mode) PNG, encoded by hand (filter 0 rows, one IDAT)."""
    palette = voc_palette() if palette is None else palette
    h, w = indices.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in indices)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", palette.astype(np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def write_gray_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels.astype(np.uint8))


def write_image(path: Path, shape: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)


def make_voc(root: Path, labels: dict[str, np.ndarray], extra_unlisted: bool = True) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, palette SegmentationClass and ImageSets/Segmentation/val.txt."""
    base = root / "VOCdevkit" / "VOC2012"
    for i, (name, lab) in enumerate(labels.items()):
        write_image(base / "JPEGImages" / f"{name}.jpg", lab.shape, i)
        write_palette_png(base / "SegmentationClass" / f"{name}.png", lab)
    if extra_unlisted:  # a train image that is not in val.txt must not be read
        write_image(base / "JPEGImages" / "2007_train.jpg", (8, 8), 99)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(labels) + "\n")
    return base


def make_context(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """VOCdevkit/VOC2010 with JPEGImages, grayscale SegmentationClassContext and SegmentationContext/val.txt."""
    base = root / "VOCdevkit" / "VOC2010"
    for i, (name, lab) in enumerate(labels.items()):
        write_image(base / "JPEGImages" / f"{name}.jpg", lab.shape, i)
        write_gray_png(base / "SegmentationClassContext" / f"{name}.png", lab)
    (base / "ImageSets" / "SegmentationContext").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(labels) + "\n")
    return base


def _write_pairs(labels: dict[str, np.ndarray], image_dir: Path, image_suffix: str, label_dir: Path, label_suffix: str):
    for i, (name, lab) in enumerate(labels.items()):
        write_image(image_dir / f"{name}{image_suffix}", lab.shape, i)
        write_gray_png(label_dir / f"{name}{label_suffix}", lab)


def make_coco_stuff(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """coco_stuff164k with images/val2017/*.jpg and annotations/val2017/*_labelTrainIds.png."""
    base = root / "coco_stuff164k"
    _write_pairs(labels, base / "images" / "val2017", ".jpg", base / "annotations" / "val2017", "_labelTrainIds.png")
    return base


def make_cityscapes(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """cityscapes with leftImg8bit/val/<city>/*_leftImg8bit.png and gtFine/val/<city>/*_gtFine_labelTrainIds.png.

    ``labels`` keys are ``<city>/<city>_<seq>_<frame>``.
    """
    base = root / "cityscapes"
    gt = base / "gtFine" / "val"
    _write_pairs(labels, base / "leftImg8bit" / "val", "_leftImg8bit.png", gt, "_gtFine_labelTrainIds.png")
    for name, lab in labels.items():  # the other gtFine files of the real layout must not be taken for labels
        write_gray_png(gt / f"{name}_gtFine_labelIds.png", lab + 7)
    return base


def make_ade(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """ADEChallengeData2016 with images/validation/*.jpg and annotations/validation/*.png."""
    base = root / "ADEChallengeData2016"
    _write_pairs(labels, base / "images" / "validation", ".jpg", base / "annotations" / "validation", ".png")
    return base
