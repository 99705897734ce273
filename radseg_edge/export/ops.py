"""Exportable variants of the RADSeg operators (ONNX / TensorRT / AOTInductor friendly).

Each function here mirrors one reference operator in :mod:`radseg_edge.core` and is tested against it
(tests/test_export_ops.py). What changes for export (EDGE.md, "Known breakages"):

- attention is explicit MatMul -> Softmax -> MatMul (never ``scaled_dot_product_attention``, which
  some TensorRT versions mis-compute when it arrives as one op);
- masking uses ``where(score < 0, NEG, score)`` with a finite negative :data:`MASK_VALUE` that is safe
  in fp16, instead of ``masked_fill(-inf)``; the diagonal of every self-correlation is >= 0, so a row
  always keeps at least one entry and ``exp(NEG - rowmax)`` underflows to exactly 0 (fp32 and fp16):
  the softmax rows equal the reference's;
- windows are cut and stitched with static slices and pads (no host loops over boxes at run time,
  no scatter with in-place indexing);
- interpolation is bilinear, ``align_corners=False``, never antialiased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from radseg_edge.core.predict import LOGIT_SCALE
from radseg_edge.core.scra import merge_heads, split_qkv

#: finite "minus infinity" for masked scores: representable in fp16 (|x| < 65504) with headroom so
#: that ``NEG - rowmax`` does not overflow; exp() of it is exactly 0 in fp16 and fp32.
MASK_VALUE = -3.0e4

#: the epsilon of ``F.normalize`` (reference row normalisation).
NORM_EPS = 1e-12

Box = tuple[int, int, int, int]


def l2_normalize(x: Tensor, dim: int = -1, eps: float = NORM_EPS) -> Tensor:
    """``x / max(||x||_2, eps)`` along ``dim`` (same as ``F.normalize``), written as ReduceL2 + Max + Div."""
    norm = torch.linalg.vector_norm(x, ord=2, dim=dim, keepdim=True)
    return x / norm.clamp_min(eps)


def masked_softmax(scores: Tensor, dim: int = -1) -> Tensor:
    """softmax over ``dim`` of the scores with every negative entry masked out.

    Equals ``softmax(scores.masked_fill(scores < 0, -inf))`` whenever each row has an entry >= 0
    (the self-correlation diagonal). Exports as Less + Where + Softmax.
    """
    masked = torch.where(scores < 0, MASK_VALUE, scores)
    return torch.softmax(masked, dim=dim)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v as MatMul -> Softmax -> MatMul. q, k, v: B x H x N x d -> B x H x N x d."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    return torch.softmax(torch.matmul(q * scale, k.transpose(-2, -1)), dim=-1).matmul(v)


def attention_export(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
) -> Tensor:
    """Exportable :func:`radseg_edge.core.scra.standard_attention_reference`. x: B x N x C -> B x N x C."""
    q, k, v = split_qkv(x, qkv_weight, qkv_bias, num_heads)
    return F.linear(merge_heads(explicit_attention(q, k, v)), proj_weight, proj_bias)


def self_correlation_export(o: Tensor, v: Tensor, tau: float) -> Tensor:
    """Exportable :func:`radseg_edge.core.scra.self_correlation_attention`.

    Args:
        o: B x N x C projected output of the first attention.
        v: B x H x N x d original values.
    Returns:
        B x N x C = concat_h(masked_softmax(tau * Ô_h Ô_h^T) V_h), before the output projection.
    """
    b, n, c = o.shape
    h = v.shape[1]
    oh = l2_normalize(o.reshape(b, n, h, c // h).transpose(1, 2), dim=-1)
    sim = torch.matmul(oh, oh.transpose(-2, -1)) * tau
    return merge_heads(masked_softmax(sim).matmul(v))


def scra_attention_export(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    tau: float = 10.0,
) -> Tensor:
    """Exportable :func:`radseg_edge.core.scra.scra_attention_reference`. x: B x N x C (all tokens) -> B x N x C."""
    q, k, v = split_qkv(x, qkv_weight, qkv_bias, num_heads)
    o = F.linear(merge_heads(explicit_attention(q, k, v)), proj_weight, proj_bias)
    return F.linear(self_correlation_export(o, v, tau), proj_weight, proj_bias)


def scga_export(features: Tensor, tau: float = 10.0) -> Tensor:
    """Exportable :func:`radseg_edge.core.scga.scga_reference` (per-image threshold).

    The statistics (normalisation, similarities, their mean) are computed in fp32 whatever the input
    dtype, so an fp16 graph keeps them exact enough; the output has the input's dtype.

    Args:
        features: B x N x C stitched patch features.
    Returns:
        B x N x C aggregated features.
    """
    f32 = features.float()
    t = l2_normalize(f32, dim=-1)
    sim = torch.matmul(t, t.transpose(-2, -1))
    sim = (sim - sim.mean(dim=(-2, -1), keepdim=True)) * tau
    return masked_softmax(sim).matmul(f32).to(features.dtype)


def class_probabilities_export(features: Tensor, text_embeddings: Tensor, logit_scale: float = LOGIT_SCALE) -> Tensor:
    """Exportable :func:`radseg_edge.core.predict.class_probabilities`.

    Args:
        features: B x D x h x w language-aligned features.
        text_embeddings: K x D class embeddings (any norm).
    Returns:
        B x K x h x w probabilities, fp32.
    """
    b, d, h, w = features.shape
    f = l2_normalize(features.float(), dim=1).reshape(b, d, h * w)
    t = l2_normalize(text_embeddings.float(), dim=-1)
    logits = torch.matmul(t, f) * logit_scale  # B x K x (h*w)
    return torch.softmax(logits, dim=1).reshape(b, -1, h, w)


def denoise_export(probs: Tensor, threshold: float = 0.5) -> Tensor:
    """Exportable :func:`radseg_edge.core.predict.denoise_prompts`: zero classes whose image maximum < threshold."""
    if threshold <= 0:
        return probs
    keep = (probs.amax(dim=(-2, -1), keepdim=True) >= threshold).to(probs.dtype)
    return probs * keep


def labels_export(probs: Tensor, prediction_thresh: float = 0.0, ignore_index: int = -1) -> Tensor:
    """Exportable :func:`radseg_edge.core.predict.labels_from_probs`: B x K x H x W -> B x H x W int64."""
    labels = torch.argmax(probs, dim=1)
    if prediction_thresh > 0:
        below = probs.amax(dim=1) < prediction_thresh
        labels = torch.where(below, torch.full_like(labels, ignore_index), labels)
    return labels


def resize_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize, align_corners=False, no antialias (ONNX Resize linear / half_pixel). B x C x H x W."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=False)


def extract_windows_static(image: Tensor, boxes: Sequence[Box]) -> Tensor:
    """Exportable :func:`radseg_edge.core.windows.extract_windows` for boxes fixed at trace time.

    Args:
        image: 1 x 3 x H x W.
    Returns:
        nW x 3 x h x w, windows in ``boxes`` order.
    """
    return torch.cat([image[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in boxes], dim=0)


def overlap_counts(boxes: Sequence[Box], grid_hw: tuple[int, int], patch: int) -> Tensor:
    """How many windows cover each patch: 1 x 1 x h x w fp32 (a constant of the fixed graph)."""
    count = torch.zeros(1, 1, *grid_hw)
    for y1, x1, y2, x2 in boxes:
        count[:, :, y1 // patch : y2 // patch, x1 // patch : x2 // patch] += 1
    return count


def stitch_static(window_features: Tensor, boxes: Sequence[Box], grid_hw: tuple[int, int], patch: int = 16) -> Tensor:
    """Exportable :func:`radseg_edge.core.windows.stitch_windows` for boxes fixed at trace time.

    Each window's features are zero-padded into place (ONNX Pad) and summed, then divided by the
    constant overlap count. Args: window_features nW x C x hp x wp; grid_hw = (ceil(H/patch), ceil(W/patch)).
    Returns 1 x C x h x w.
    """
    gh, gw = grid_hw
    acc = None
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        py1, px1, py2, px2 = y1 // patch, x1 // patch, y2 // patch, x2 // patch
        placed = F.pad(window_features[k : k + 1], (px1, gw - px2, py1, gh - py2))
        acc = placed if acc is None else acc + placed
    count = overlap_counts(boxes, grid_hw, patch).to(window_features.dtype)
    return acc / count
