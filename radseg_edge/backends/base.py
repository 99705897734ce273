"""What every backend returns, and the host-side part of the split (variable image size) pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from radseg_edge.core.image import to_image_tensor
from radseg_edge.core.predict import probabilities_and_labels
from radseg_edge.core.windows import extract_windows, preresize_image, stitch_windows, window_boxes
from radseg_edge.errors import InputError, VocabularyError
from radseg_edge.models.text import check_finite_embeddings


@dataclass
class BackendResult:
    """Output of a backend for one image (same field names as :class:`radseg_edge.pipeline.SegmentationResult`).

    Attributes:
        probs: 1 x K x H x W fp32 class probabilities after prompt denoising.
        labels: 1 x H x W int64 class indices (-1 below the prediction threshold).
        features: 1 x C x h x w stitched backbone features (split graphs only, else None).
        lowres_probs: 1 x K x h x w probabilities before upsampling (split graphs only, else None).
        class_names: names of the K classes when known.
        backend: the backend's name (and execution provider / precision).
    """

    probs: Tensor
    labels: Tensor
    features: Tensor | None = None
    lowres_probs: Tensor | None = None
    class_names: list[str] | None = None
    backend: str = ""

    def labels_numpy(self, index: int = 0) -> np.ndarray:
        return self.labels[index].cpu().numpy()


@dataclass(frozen=True)
class WindowSettings:
    """The RADSeg settings the host side of the split pipeline needs (from the export manifest)."""

    crop: int
    stride: int
    patch: int = 16
    denoise: float = 0.5
    prediction_thresh: float = 0.0

    @classmethod
    def from_manifest(cls, windows: dict) -> WindowSettings:
        return cls(
            crop=int(windows["crop"]),
            stride=int(windows["stride"]),
            patch=int(windows.get("patch", 16)),
            denoise=float(windows.get("denoise", 0.5)),
            prediction_thresh=float(windows.get("prediction_thresh", 0.0)),
        )


def frame_tensor(image, channel_order: str = "rgb") -> Tensor:
    """H x W x 3 uint8 numpy (or 1 x 3 x H x W float tensor) -> 1 x 3 x H x W fp32 RGB in [0,1]."""
    x = to_image_tensor(image, channel_order)
    if x.shape[0] != 1:
        raise InputError(f"exported backends take one image at a time, got a batch of {x.shape[0]}")
    return x


def frame_uint8(image, channel_order: str = "rgb") -> np.ndarray:
    """1 x H x W x 3 uint8 RGB frame for the fixed-resolution graph."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        rgb = image[..., ::-1] if channel_order.lower() == "bgr" else image
        return np.ascontiguousarray(rgb)[None]
    x = frame_tensor(image, channel_order)
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()[None]


def run_split(
    x: Tensor,
    text: Tensor,
    settings: WindowSettings,
    backbone: Callable[[Tensor], Tensor],
    head: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    """The split pipeline with exported backbone/head callables and the reference host-side operators.

    Args:
        x: 1 x 3 x H x W fp32 RGB in [0,1]; text: K x D class embeddings.
        backbone: windows nW x 3 x crop x crop -> features nW x C x h x w.
        head: (stitched features 1 x C x h x w, text K x D) -> probabilities 1 x K x h x w.
    Returns:
        dict with probs, labels, features, lowres_probs (torch tensors on x's device).
    """
    p = settings.patch
    if settings.crop == 0:
        if x.shape[-2] % p or x.shape[-1] % p:
            raise InputError(f"crop=0 needs image sides that are multiples of {p}, got {tuple(x.shape[-2:])}")
        feats = backbone(x)
    else:
        resized = preresize_image(x, settings.crop, settings.stride)
        boxes = window_boxes(resized.shape[-2], resized.shape[-1], settings.crop, settings.stride)
        windows = extract_windows(resized, boxes)
        if tuple(windows.shape[-2:]) != (settings.crop, settings.crop):
            raise InputError(
                f"this {x.shape[-2]}x{x.shape[-1]} image gives {windows.shape[-2]}x{windows.shape[-1]} windows, and the "
                f"exported backbone takes {settings.crop}x{settings.crop}: resize the image so that both sides are at "
                "least the crop size, or use the torch backend"
            )
        window_feats = backbone(windows)
        feats = stitch_windows(window_feats.float(), boxes, tuple(resized.shape[-2:]), p)
    lowres = head(feats.float(), text).float()
    probs, labels = probabilities_and_labels(lowres, tuple(x.shape[-2:]), settings.denoise, settings.prediction_thresh)
    return dict(probs=probs, labels=labels, features=feats, lowres_probs=lowres)


def resolve_text(text, default, default_names: list[str] | None) -> tuple[Tensor, list[str] | None]:
    """(K x D fp32 embeddings, names) from a Vocabulary, a tensor, or the export folder's vocabulary."""
    text = default if text is None else text
    if text is None:
        raise VocabularyError("no class embeddings: pass a Vocabulary or K x D tensor, or export with --vocab")
    if hasattr(text, "embeddings") and hasattr(text, "names"):
        check_finite_embeddings(text.embeddings, names=list(text.names))
        return text.embeddings.float(), list(text.names)
    if isinstance(text, np.ndarray):
        text = torch.from_numpy(text)
    if not isinstance(text, Tensor) or text.dim() != 2:
        raise VocabularyError(f"text must be a Vocabulary or a K x D tensor, got {type(text).__name__}")
    check_finite_embeddings(text)
    return text.float(), (default_names if text is default else None)
