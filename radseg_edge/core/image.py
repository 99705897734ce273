"""Turning user images into the model's input: B x 3 x H x W float RGB in [0,1]."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from radseg_edge.errors import InputError


def to_image_tensor(image: Tensor | np.ndarray, channel_order: str = "rgb") -> Tensor:
    """Validate and convert an image.

    Accepts:
        * a float torch tensor, 1 x 3 x H x W (or B x 3 x H x W, or 3 x H x W), RGB in [0,1];
        * a numpy uint8 array H x W x 3 with ``channel_order`` "rgb" (default) or "bgr" (OpenCV).
    Grayscale, RGBA, 16-bit or float numpy arrays are refused with a sentence saying how to convert them
    (:func:`radseg_edge.runtime.image_io.load_image` converts files explicitly).
    Returns:
        B x 3 x H x W fp32 RGB in [0,1].
    """
    order = channel_order.lower()
    if order not in ("rgb", "bgr"):
        raise InputError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            hint = " (16-bit: use image_io.load_image or (img >> 8).astype(np.uint8))" if image.dtype == np.uint16 else ""
            raise InputError(f"expected an H x W x 3 uint8 array, got dtype {image.dtype}{hint}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            raise InputError(f"got a grayscale image {image.shape}; convert it: np.repeat(img[..., None], 3, axis=2)")
        if image.ndim != 3 or image.shape[2] != 3:
            extra = "; drop the alpha channel: img[..., :3]" if image.ndim == 3 and image.shape[2] == 4 else ""
            raise InputError(f"expected an H x W x 3 uint8 array, got shape {image.shape}{extra}")
        if order == "bgr":
            image = image[..., ::-1]
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
        return t.float().div_(255.0)
    if not isinstance(image, Tensor):
        raise InputError(f"expected a torch.Tensor or numpy array image, got {type(image).__name__}")
    if not image.is_floating_point():
        raise InputError(f"expected a float image tensor with values in [0,1], got dtype {image.dtype} (divide uint8 by 255)")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise InputError(f"expected a B x 3 x H x W RGB tensor, got shape {tuple(image.shape)}")
    if order == "bgr":
        image = image.flip(1)
    return image.float()
