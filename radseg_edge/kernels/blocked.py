"""Memory-bounded SCGA and SCRA in plain PyTorch: query rows in blocks, never N x N.

Mirrors :func:`radseg_edge.core.scga.scga_reference` and
:func:`radseg_edge.core.scra.scra_attention_reference` (same results within fp32 round-off).
For each block of query rows the ``rows x N`` similarity slab is built, thresholded in place,
softmaxed (one more slab) and multiplied with the values, so the extra memory is two slabs,
O(rows * N), plus the O(N * C) normalised features, instead of several N x N copies. The per-image SCGA threshold is the mean of
all similarities, ``||sum_i F^_i||^2 / N^2`` (:func:`radseg_edge.core.scga.scga_threshold`).

Runs on any device; it is the default on CPU. Computation is fp32 whatever the input dtype; the
result has the input dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from radseg_edge.core.scga import scga_threshold
from radseg_edge.core.scra import merge_heads, split_qkv

#: the largest float32 below zero: ``x > _BELOW_ZERO`` is ``not x < 0`` (keeps +-0, as the reference)
_BELOW_ZERO = -1.401298464324817e-45

#: elements of one similarity slab (rows x N, per image and head): 4 Mi fp32 = 16 MiB.
SLAB_ELEMENTS = 4 * 1024 * 1024


def rows_per_block(n: int, groups: int = 1, slab_elements: int = SLAB_ELEMENTS) -> int:
    """Query rows per block so that ``groups x rows x n`` stays within ``slab_elements`` (16 <= rows <= n)."""
    return max(1, min(n, max(16, slab_elements // max(1, groups * n))))


def thresholded_attention(
    q: Tensor, values: Tensor, threshold: Tensor | float, tau: float, rows: int | None = None
) -> Tensor:
    """``softmax(mask(tau * (q q^T - m))) @ values`` over query blocks; masked = entries below 0.

    Args:
        q: G x N x D row-normalised keys/queries (fp32).
        values: G x N x Dv (fp32).
        threshold: m, a scalar or a G x 1 x 1 tensor (0 for SCRA, the mean similarity for SCGA).
        tau: temperature.
        rows: query rows per block (default: :func:`rows_per_block`).
    Returns:
        G x N x Dv fp32.
    """
    g, n, _ = q.shape
    rows = rows or rows_per_block(n, g)
    out = values.new_empty(g, n, values.shape[-1])
    keys_t = q.transpose(-2, -1)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        slab = torch.matmul(q[:, start:stop], keys_t)  # G x rows x N
        slab.sub_(threshold).mul_(tau)
        F.threshold_(slab, _BELOW_ZERO, float("-inf"))  # entries < 0 -> -inf, one in-place pass
        out[:, start:stop] = torch.matmul(torch.softmax(slab, dim=-1), values)
    return out


def scga_blocked(
    features: Tensor, tau: float = 10.0, batch_mean: bool = False, rows: int | None = None
) -> Tensor:
    """SCGA (see :func:`radseg_edge.core.scga.scga_reference`) in query blocks.

    Args:
        features: B x N x C stitched patch features.
        tau: SCGA temperature.
        batch_mean: one threshold for the whole batch (the official code's batch behaviour).
        rows: query rows per block (default: a 16 MiB slab).
    Returns:
        B x N x C, dtype of ``features``.
    """
    x = features.float()
    threshold = scga_threshold(x)
    if batch_mean:
        threshold = threshold.mean().expand_as(threshold)
    out = thresholded_attention(F.normalize(x, dim=-1), x, threshold, tau, rows)
    return out.to(features.dtype)


def self_correlation_blocked(o: Tensor, v: Tensor, tau: float, rows: int | None = None) -> Tensor:
    """The SCRA recursive step (see :func:`radseg_edge.core.scra.self_correlation_attention`) in blocks.

    Images (windows) go in chunks whose H x N x N similarities fit one slab, so the normalised
    chunks and per-head copies of V stay small; the result is written with heads merged.

    Args:
        o: B x N x C projected output of the first attention.
        v: B x H x N x d original values.
        rows: query rows per block (default: :func:`rows_per_block`).
    Returns:
        B x N x C fp32 (heads merged, before the projection).
    """
    b, n, c = o.shape
    h = v.shape[1]
    d = c // h
    out = torch.empty(b, n, h, d, dtype=torch.float32, device=o.device)
    per_chunk = max(1, SLAB_ELEMENTS // (h * n * n))
    for start in range(0, b, per_chunk):
        stop = min(b, start + per_chunk)
        oh = F.normalize(o[start:stop].float().reshape(-1, n, h, d).transpose(1, 2), dim=-1).reshape(-1, n, d)
        res = thresholded_attention(oh, v[start:stop].float().reshape(-1, n, d), 0.0, tau, rows)
        out[start:stop] = res.reshape(stop - start, h, n, d).transpose(1, 2)
    return out.reshape(b, n, c)


def scra_blocked(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    tau: float = 10.0,
) -> Tensor:
    """SCRA (see :func:`radseg_edge.core.scra.scra_attention_reference`): SDPA, then blocked self-correlation.

    Args:
        x: B x N x C tokens (the last block's norm1 output).
    Returns:
        B x N x C.
    """
    step = functools.partial(self_correlation_blocked, tau=tau)
    return scra_around(step, x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)


def scra_around(
    step: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
) -> Tensor:
    """SCRA with the self-correlation ``step(o, v)`` (B x N x C, B x H x N x d -> B x N x C) given.

    The rest is shared by every implementation: qkv projection, the standard attention with
    :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels where
    available), the output projection before and after the step.
    """
    q, k, v = split_qkv(x, qkv_weight, qkv_bias, num_heads)
    o = F.linear(merge_heads(F.scaled_dot_product_attention(q, k, v)), proj_weight, proj_bias)
    return F.linear(step(o, v).to(x.dtype), proj_weight, proj_bias)
