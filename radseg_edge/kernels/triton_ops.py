"""Triton kernels for SCGA and the SCRA self-correlation step (flash-attention style).

One kernel, :func:`_thresholded_attention_kernel`, computes for every group g (an image for SCGA,
an (image, head) pair for SCRA) and query row i::

    s_ij = tau * (q_i . q_j - m_g);   s_ij < 0 -> masked;   out_i = sum_j softmax_j(s_ij) v_j

over key blocks with a running max and running sum (online softmax), so nothing N x N is stored.
Masked entries contribute nothing and a key block where every entry is masked is skipped.
Unmasked scores are >= 0, so the running max starts at 0 (never -inf: no NaN before the first
surviving key). Accumulation is fp32; fp16/bf16 inputs feed the dot products directly.

Mirrors ``thresholded_attention`` in :mod:`radseg_edge.kernels.blocked` and the references
:func:`radseg_edge.core.scga.scga_reference` / :func:`radseg_edge.core.scra.self_correlation_attention`.
Needs a CUDA device, or ``TRITON_INTERPRET=1`` (set before triton is imported) for CPU tensors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from radseg_edge.core.scga import scga_threshold
from radseg_edge.kernels.blocked import scra_around


@triton.jit
def _thresholded_attention_kernel(
    q_ptr, v_ptr, thr_ptr, out_ptr,
    n, d, dv, heads, tau,
    stride_qb, stride_qh, stride_qn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    group = tl.program_id(0)
    b = group // heads
    h = group % heads
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_v = tl.program_id(2) * BLOCK_DV + tl.arange(0, BLOCK_DV)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = q_ptr + b * stride_qb + h * stride_qh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    threshold = tl.load(thr_ptr + group)

    row_max = tl.zeros([BLOCK_M], dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for start_n in range(0, n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        # similarity tile q_i . q_j, reduced over d in BLOCK_D chunks
        sim = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for start_d in range(0, d, BLOCK_D):
            dd = start_d + offs_d
            q_tile = tl.load(
                q_base + offs_m[:, None] * stride_qn + dd[None, :],
                mask=(offs_m[:, None] < n) & (dd[None, :] < d),
                other=0.0,
            )
            k_tile = tl.load(
                q_base + offs_n[None, :] * stride_qn + dd[:, None],
                mask=(offs_n[None, :] < n) & (dd[:, None] < d),
                other=0.0,
            )
            sim += tl.dot(q_tile, k_tile, input_precision=PRECISION)
        score = (sim - threshold) * tau
        keep = (score >= 0) & (offs_n[None, :] < n)
        if tl.sum(keep.to(tl.int32)) > 0:
            score = tl.where(keep, score, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(score, 1))
            alpha = tl.exp(row_max - new_max)
            p = tl.exp(score - new_max[:, None])
            row_sum = row_sum * alpha + tl.sum(p, 1)
            v_tile = tl.load(
                v_base + offs_n[:, None] * stride_vn + offs_v[None, :],
                mask=(offs_n[:, None] < n) & (offs_v[None, :] < dv),
                other=0.0,
            )
            acc = acc * alpha[:, None] + tl.dot(p.to(v_tile.dtype), v_tile, input_precision=PRECISION)
            row_max = new_max
    out = acc / tl.where(offs_m < n, row_sum, 1.0)[:, None]  # padding rows: avoid 0/0
    tl.store(
        out_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_v[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=(offs_m[:, None] < n) & (offs_v[None, :] < dv),
    )


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes of the Triton kernel (each >= 16, powers of two)."""

    block_m: int = 64
    block_n: int = 64
    block_d: int = 64
    block_dv: int = 128
    num_warps: int = 4
    num_stages: int = 2


#: small tiles, for exercising block edges under TRITON_INTERPRET=1
SMALL_TILES = TileConfig(16, 16, 16, 16, 1, 1)


def thresholded_attention_triton(
    q: Tensor, v: Tensor, threshold: Tensor, tau: float, out: Tensor, heads: int = 1,
    tiles: TileConfig | None = None,
) -> Tensor:  # fmt: skip
    """Launch the kernel. Layouts are given as (batch, head, row) strides, the last dim contiguous.

    Args:
        q: B x H x N x D row-normalised queries (= keys), any (b, h, n) strides.
        v: B x H x N x Dv values, same dtype as ``q``.
        threshold: (B*H,) fp32 per-group threshold m.
        tau: temperature.
        out: B x N x H x Dv (heads merged: B x N x H*Dv memory), written in place.
        heads: H.
    Returns:
        ``out``.
    """
    tiles = tiles or TileConfig()
    b, h, n, d = q.shape
    dv = v.shape[-1]
    if q.stride(-1) != 1 or v.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("the last dimension of q, v and out must be contiguous")
    block_dv = min(tiles.block_dv, max(16, triton.next_power_of_2(dv)))
    block_d = min(tiles.block_d, max(16, triton.next_power_of_2(d)))
    grid = (b * h, triton.cdiv(n, tiles.block_m), triton.cdiv(dv, block_dv))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    _thresholded_attention_kernel[grid](
        q, v, threshold, out,
        n, d, dv, heads, float(tau),
        q.stride(0), q.stride(1), q.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(2), out.stride(1),
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_D=block_d, BLOCK_DV=block_dv,
        PRECISION=precision, num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )  # fmt: skip
    return out


def scga_triton(
    features: Tensor, tau: float = 10.0, batch_mean: bool = False, tiles: TileConfig | None = None
) -> Tensor:
    """SCGA (see :func:`radseg_edge.core.scga.scga_reference`) with the Triton kernel.

    Args:
        features: B x N x C (fp32, fp16 or bf16).
    Returns:
        B x N x C, dtype of ``features``.
    """
    b, n, c = features.shape
    threshold = scga_threshold(features)
    if batch_mean:
        threshold = threshold.mean().expand_as(threshold)
    q = F.normalize(features.float(), dim=-1).to(features.dtype)
    v = features.contiguous()
    out = torch.empty_like(v)
    thresholded_attention_triton(
        q.unsqueeze(1), v.unsqueeze(1), threshold.reshape(b).contiguous(), tau, out.unsqueeze(2), 1, tiles
    )
    return out


def self_correlation_triton(o: Tensor, v: Tensor, tau: float, tiles: TileConfig | None = None) -> Tensor:
    """The SCRA recursive step (:func:`radseg_edge.core.scra.self_correlation_attention`) in Triton.

    Args:
        o: B x N x C projected output of the first attention.
        v: B x H x N x d original values (any strides with the last dim contiguous).
    Returns:
        B x N x C (heads merged), dtype of ``v``.
    """
    b, n, c = o.shape
    h = v.shape[1]
    oh = F.normalize(o.float().reshape(b, n, h, c // h), dim=-1).to(v.dtype).transpose(1, 2)
    out = torch.empty(b, n, h, c // h, dtype=v.dtype, device=v.device)
    threshold = torch.zeros(b * h, dtype=torch.float32, device=v.device)
    thresholded_attention_triton(oh, v, threshold, tau, out, h, tiles)
    return out.reshape(b, n, c)


def scra_triton(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    tau: float = 10.0,
    tiles: TileConfig | None = None,
) -> Tensor:
    """SCRA (:func:`radseg_edge.core.scra.scra_attention_reference`): SDPA, projection, Triton step, projection.

    Args:
        x: B x N x C tokens. Returns B x N x C.
    """
    step = functools.partial(self_correlation_triton, tau=tau, tiles=tiles)
    return scra_around(step, x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)
