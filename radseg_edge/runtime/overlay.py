"""Colour masks, legends and label PNGs for segmentation results.

Images here are H x W x 3 uint8 RGB numpy arrays; labels are H x W integer class indices
(IGNORE_INDEX or 255 = ignored, drawn black / left uncoloured).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IGNORE_VALUE_PNG = 255


def palette(num_classes: int) -> np.ndarray:
    """A deterministic, well-separated RGB palette: num_classes x 3 uint8 (the PASCAL VOC bit pattern)."""
    out = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for i in range(out.shape[0]):
        c, r, g, b = i + 1, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out[:num_classes]


def colorize(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """H x W labels -> H x W x 3 uint8 RGB; ignored pixels (<0 or >= num_classes) are black."""
    pal = np.concatenate([palette(num_classes), np.zeros((1, 3), np.uint8)])
    idx = np.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    return pal[idx]


def labels_to_png_array(labels: np.ndarray) -> np.ndarray:
    """H x W int labels -> uint8 (ignored -> 255); more than 255 classes -> uint16."""
    if labels.size and labels.max() >= IGNORE_VALUE_PNG:
        return np.where(labels < 0, 65535, labels).astype(np.uint16)
    return np.where(labels < 0, IGNORE_VALUE_PNG, labels).astype(np.uint8)


def draw_legend(image: np.ndarray, class_names: Sequence[str], present: Sequence[int] | None = None) -> np.ndarray:
    """Draw a legend box (colour swatch + name) at the top-left of an RGB image; returns a copy."""
    out = image.copy()
    pal = palette(len(class_names))
    ids = list(range(len(class_names))) if present is None else list(present)
    scale = max(0.35, min(out.shape[:2]) / 900.0)
    row = int(22 * scale / 0.5)
    for n, k in enumerate(ids):
        y = 4 + n * row
        if y + row > out.shape[0]:
            break
        color = tuple(int(v) for v in pal[k])
        cv2.rectangle(out, (4, y), (4 + row - 4, y + row - 4), color, thickness=-1)
        cv2.putText(out, class_names[k], (row + 4, y + row - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, class_names[k], (row + 4, y + row - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_text_lines(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Draw status lines (FPS, per-stage latency) at the bottom-left of an RGB image; returns a copy."""
    out = image.copy()
    scale = max(0.35, min(out.shape[:2]) / 900.0)
    row = int(22 * scale / 0.5)
    for n, text in enumerate(reversed(list(lines))):
        y = out.shape[0] - 6 - n * row
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    alpha: float = 0.5,
    legend: bool = True,
    text_lines: Sequence[str] = (),
) -> np.ndarray:
    """Blend colour masks over an RGB uint8 image; legend of the classes present; optional status text.

    Args:
        image: H x W x 3 uint8 RGB.
        labels: H x W class indices (same size as ``image``).
    Returns:
        H x W x 3 uint8 RGB.
    """
    if image.shape[:2] != labels.shape[:2]:
        raise ValueError(f"overlay: image {image.shape[:2]} and labels {labels.shape[:2]} differ in size")
    k = len(class_names)
    color = colorize(labels, k)
    valid = (labels >= 0) & (labels < k)
    blended = np.ascontiguousarray(image, dtype=np.uint8).copy()  # uint8 blend (rounded), unlabelled pixels kept
    np.copyto(blended, cv2.addWeighted(blended, 1.0 - alpha, color, alpha, 0.0), where=valid[..., None])
    if legend and k:
        counts = np.bincount(np.where(valid, labels, k).ravel().astype(np.int64), minlength=k + 1)[:k]
        blended = draw_legend(blended, class_names, np.flatnonzero(counts).tolist())
    if text_lines:
        blended = draw_text_lines(blended, text_lines)
    return blended
