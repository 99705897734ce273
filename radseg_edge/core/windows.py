"""Sliding windows: the pre-resize quirk, the window grid, window extraction and feature stitching.

All sizes are in pixels unless a name says ``patch``. Behaviour follows RADSEG.md "Sliding windows".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

Box = tuple[int, int, int, int]  # y1, x1, y2, x2 in pixels (end exclusive)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def preresize_size(height: int, width: int, crop: int, stride: int) -> tuple[int, int]:
    """Image size after the reference's pre-slide resize.

    Unchanged when both sides are multiples of ``stride`` (even if smaller than ``crop``). Otherwise the
    longer side L is rounded up to a multiple of stride (L'), both sides scaled by L'/L and truncated,
    each rounded UP to a multiple of stride, then raised to at least ``crop``. The aspect ratio may change.
    """
    if height % stride == 0 and width % stride == 0:
        return height, width
    longer = max(height, width)
    target = _round_up(longer, stride)
    new_h = int(height * target / longer)
    new_w = int(width * target / longer)
    new_h = max(_round_up(new_h, stride), crop)
    new_w = max(_round_up(new_w, stride), crop)
    return new_h, new_w


def preresize_image(image: Tensor, crop: int, stride: int) -> Tensor:
    """Apply :func:`preresize_size` to a B x 3 x H x W image (bilinear, align_corners=False, no antialias)."""
    h, w = image.shape[-2:]
    new_h, new_w = preresize_size(h, w, crop, stride)
    if (new_h, new_w) == (h, w):
        return image
    return F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False)


def grid_size(length: int, crop: int, stride: int) -> int:
    """Windows along one axis: max(L - crop + stride - 1, 0) // stride + 1."""
    return max(length - crop + stride - 1, 0) // stride + 1


def window_boxes(height: int, width: int, crop: int, stride: int) -> list[Box]:
    """Windows in row-major order; the last ones are shifted back to end at the border.

    Returns:
        list of (y1, x1, y2, x2) pixel boxes; every box has the same size, min(crop, side).
    """
    boxes: list[Box] = []
    for i in range(grid_size(height, crop, stride)):
        for j in range(grid_size(width, crop, stride)):
            y2 = min(i * stride + crop, height)
            x2 = min(j * stride + crop, width)
            boxes.append((max(y2 - crop, 0), max(x2 - crop, 0), y2, x2))
    return boxes


def extract_windows(image: Tensor, boxes: list[Box]) -> Tensor:
    """Cut the windows of ONE image (1 x 3 x H x W or 3 x H x W) into an nW x 3 x h x w batch."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"extract_windows takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    return torch.stack([image[:, y1:y2, x1:x2] for y1, x1, y2, x2 in boxes])


def stitch_windows(window_features: Tensor, boxes: list[Box], image_hw: tuple[int, int], patch: int = 16) -> Tensor:
    """Average per-patch window features into one map (features, not logits, are averaged).

    Args:
        window_features: nW x C x hp x wp features of the windows of ONE image, in ``boxes`` order.
        boxes: pixel boxes from :func:`window_boxes`.
        image_hw: (H, W) of the (pre-resized) image.
    Returns:
        1 x C x ceil(H/patch) x ceil(W/patch).
    """
    n, c = window_features.shape[:2]
    h, w = math.ceil(image_hw[0] / patch), math.ceil(image_hw[1] / patch)
    acc = window_features.new_zeros(1, c, h, w)
    count = window_features.new_zeros(1, 1, h, w)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        py1, px1, py2, px2 = y1 // patch, x1 // patch, y2 // patch, x2 // patch
        acc[:, :, py1:py2, px1:px2] += window_features[k]
        count[:, :, py1:py2, px1:px2] += 1
    return acc / count
