"""Triton kernels for SCGA and the SCRA self-correlation step (flash-attention style).

One kernel, :func:`_thresholded_attention_kernel`, computes for every group g (an image for SCGA,
an (image, head) pair for SCRA) and query row i::

    s_ij = tau * (q_i . q_j - m_g);   s_ij < 0 -> masked;   out_i = sum_j softmax_j(s_ij) v_j

One program owns BLOCK_M query rows of one group and ALL value channels, and walks over the keys in
BLOCK_N blocks with a running max and running sum (online softmax, fp32), so nothing N x N is stored
and the similarity tile of a (row block, key block) pair is computed exactly once:

1. ``sim = Q_rows . Q_keys^T``, reduced over d in BLOCK_D chunks with ``tl.dot`` (tensor cores for
   fp16/bf16, fp32 accumulation; fp32 inputs: exact "ieee" products, TF32 only when asked for);
2. ``p = exp(score - running_max)``, ``alpha = exp(old_max - new_max)``; a key block where every
   entry is masked is skipped;
3. ``acc = acc * alpha + p . V``: when the padded value width fits one BLOCK_DV chunk (SCRA heads)
   ``acc`` stays in registers; otherwise (SCGA, C = 768) the program loops over BLOCK_DV channel
   chunks and keeps ``acc`` in an fp32 buffer in global memory (the output itself when it is fp32,
   else a B x H x N x Dv workspace: O(N x C) memory), each element read and written by its own
   program only, with a CTA barrier after every key block.

Unmasked scores are >= 0, so the running max starts at 0 (never -inf: no NaN before the first
surviving key). Tile shapes come from ``@triton.autotune`` on a GPU, or from a :class:`TileConfig`.

Mirrors ``thresholded_attention`` in :mod:`radseg_edge.kernels.blocked` and the references
:func:`radseg_edge.core.scga.scga_reference` / :func:`radseg_edge.core.scra.self_correlation_attention`.
Needs a CUDA device, or ``TRITON_INTERPRET=1`` (set before triton is imported) for CPU tensors.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from radseg_edge.core.scga import scga_threshold
from radseg_edge.kernels.blocked import scra_around


@triton.jit
def _masked_scores(q_base, offs_m, offs_n, n, d, stride_qn, threshold, tau,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   PRECISION: tl.constexpr):  # fmt: skip
    """tau * (q_i . q_j - m) for a BLOCK_M x BLOCK_N tile (fp32), -inf where masked; and whether any survives."""
    offs_d = tl.arange(0, BLOCK_D)
    sim = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for start_d in range(0, d, BLOCK_D):
        dd = start_d + offs_d
        q_tile = tl.load(q_base + offs_m[:, None] * stride_qn + dd[None, :],
                         mask=(offs_m[:, None] < n) & (dd[None, :] < d), other=0.0)  # fmt: skip
        k_tile = tl.load(q_base + offs_n[None, :] * stride_qn + dd[:, None],
                         mask=(offs_n[None, :] < n) & (dd[:, None] < d), other=0.0)  # fmt: skip
        sim = tl.dot(q_tile, k_tile, sim, input_precision=PRECISION)
    score = (sim - threshold) * tau
    keep = (score >= 0) & (offs_n[None, :] < n)
    return tl.where(keep, score, float("-inf")), tl.sum(keep.to(tl.int32)) > 0


@triton.jit
def _thresholded_attention_kernel(
    q_ptr, v_ptr, thr_ptr, out_ptr, acc_ptr,
    n, d, dv, heads, tau,
    stride_qb, stride_qh, stride_qn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    stride_ab, stride_ah, stride_an,
    DV_PAD: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    group = tl.program_id(0)
    # 64-bit group offsets: b * stride_qb passes 2**31 elements once B*N*C does (e.g. SCGA at N = 16384,
    # C = 768 from B = 171 images); offsets inside one group (N * C) stay 32-bit
    b = (group // heads).to(tl.int64)
    h = (group % heads).to(tl.int64)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    rows_ok = offs_m < n
    q_base = q_ptr + b * stride_qb + h * stride_qh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    out_base = out_ptr + b * stride_ob + h * stride_oh
    threshold = tl.load(thr_ptr + group)
    row_max = tl.zeros([BLOCK_M], dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)

    if DV_PAD <= BLOCK_DV:
        # every value channel in one register tile (SCRA head widths)
        offs_c = tl.arange(0, DV_PAD)
        acc = tl.zeros([BLOCK_M, DV_PAD], dtype=tl.float32)
        for start_n in range(0, n, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            score, any_kept = _masked_scores(q_base, offs_m, offs_n, n, d, stride_qn, threshold, tau,
                                             BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)  # fmt: skip
            if any_kept:
                new_max = tl.maximum(row_max, tl.max(score, 1))
                alpha = tl.exp(row_max - new_max)
                p = tl.exp(score - new_max[:, None])
                row_sum = row_sum * alpha + tl.sum(p, 1)
                v_tile = tl.load(v_base + offs_n[:, None] * stride_vn + offs_c[None, :],
                                 mask=(offs_n[:, None] < n) & (offs_c[None, :] < dv), other=0.0)  # fmt: skip
                acc = tl.dot(p.to(v_tile.dtype), v_tile, acc * alpha[:, None], input_precision=PRECISION)
                row_max = new_max
        out = acc / tl.where(rows_ok, row_sum, 1.0)[:, None]  # padding rows: avoid 0/0
        tl.store(out_base + offs_m[:, None] * stride_on + offs_c[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=rows_ok[:, None] & (offs_c[None, :] < dv))  # fmt: skip
    else:
        # value channels in BLOCK_DV chunks; acc in an fp32 buffer owned row-wise by this program
        offs_c = tl.arange(0, BLOCK_DV)
        acc_base = acc_ptr + b * stride_ab + h * stride_ah + offs_m[:, None] * stride_an
        for start_c in range(0, dv, BLOCK_DV):
            cc = start_c + offs_c
            tl.store(acc_base + cc[None, :], tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32),
                     mask=rows_ok[:, None] & (cc[None, :] < dv))  # fmt: skip
        tl.debug_barrier()
        for start_n in range(0, n, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            score, any_kept = _masked_scores(q_base, offs_m, offs_n, n, d, stride_qn, threshold, tau,
                                             BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)  # fmt: skip
            if any_kept:
                new_max = tl.maximum(row_max, tl.max(score, 1))
                alpha = tl.exp(row_max - new_max)
                p = tl.exp(score - new_max[:, None])
                row_sum = row_sum * alpha + tl.sum(p, 1)
                p = p.to(v_ptr.dtype.element_ty)
                for start_c in range(0, dv, BLOCK_DV):
                    cc = start_c + offs_c
                    acc_mask = rows_ok[:, None] & (cc[None, :] < dv)
                    acc = tl.load(acc_base + cc[None, :], mask=acc_mask, other=0.0)
                    v_tile = tl.load(v_base + offs_n[:, None] * stride_vn + cc[None, :],
                                     mask=(offs_n[:, None] < n) & (cc[None, :] < dv), other=0.0)  # fmt: skip
                    acc = tl.dot(p, v_tile, acc * alpha[:, None], input_precision=PRECISION)
                    tl.store(acc_base + cc[None, :], acc, mask=acc_mask)
                row_max = new_max
                tl.debug_barrier()  # the next key block's reads of acc see these writes (any thread)
        inv_sum = 1.0 / tl.where(rows_ok, row_sum, 1.0)  # padding rows: avoid 0/0
        for start_c in range(0, dv, BLOCK_DV):
            cc = start_c + offs_c
            mask = rows_ok[:, None] & (cc[None, :] < dv)
            acc = tl.load(acc_base + cc[None, :], mask=mask, other=0.0)
            tl.store(out_base + offs_m[:, None] * stride_on + cc[None, :],
                     (acc * inv_sum[:, None]).to(out_ptr.dtype.element_ty), mask=mask)  # fmt: skip


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch shape of the Triton kernel (tiles are powers of two >= 16)."""

    block_m: int = 64
    block_n: int = 64
    block_d: int = 64
    block_dv: int = 64
    num_warps: int = 4
    num_stages: int = 2

    def meta(self) -> dict[str, int]:
        """The kernel's tile constexprs."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_D": self.block_d,
                "BLOCK_DV": self.block_dv}  # fmt: skip


#: the configurations ``@triton.autotune`` chooses from on a GPU, for fp16/bf16 inputs (tensor cores)
#: and for fp32 inputs (exact products, or TF32 when asked for). Each compiles without register spills
#: for its dtypes on sm_87 and sm_90 (tests/test_kernels_triton.py, docs/kernels.md).
HALF_TILES = (
    TileConfig(64, 64, 64, 64, 4, 2),
    TileConfig(64, 128, 64, 64, 8, 2),
    TileConfig(128, 64, 64, 64, 8, 2),
)
FP32_TILES = (TileConfig(64, 64, 16, 32, 8, 2),)

#: small tiles, for exercising block edges under TRITON_INTERPRET=1
SMALL_TILES = TileConfig(16, 16, 16, 16, 1, 1)


def _autotuned(tiles: tuple[TileConfig, ...]) -> triton.runtime.Autotuner:
    configs = [triton.Config(t.meta(), num_warps=t.num_warps, num_stages=t.num_stages) for t in tiles]
    tune = triton.autotune(configs=configs, key=["d", "dv", "DV_PAD", "PRECISION"])
    return tune(_thresholded_attention_kernel)


_AUTOTUNED = {"half": _autotuned(HALF_TILES), "fp32": _autotuned(FP32_TILES)}


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def thresholded_attention_triton(
    q: Tensor, v: Tensor, threshold: Tensor, tau: float, out: Tensor, heads: int = 1,
    tiles: TileConfig | None = None, allow_tf32: bool = False,
) -> Tensor:  # fmt: skip
    """Launch the kernel. Layouts are given as (batch, head, row) strides, the last dim contiguous.

    Args:
        q: B x H x N x D row-normalised queries (= keys), any (b, h, n) strides.
        v: B x H x N x Dv values, same dtype as ``q``.
        threshold: (B*H,) fp32 per-group threshold m.
        tau: temperature.
        out: B x N x H x Dv (heads merged: B x N x H*Dv memory), written in place.
        heads: H.
        tiles: fixed tiles; None: autotuned on a GPU over :data:`HALF_TILES` / :data:`FP32_TILES` (their
            first entry under the interpreter).
        allow_tf32: fp32 inputs: TF32 tensor-core products instead of exact fp32 ones.
    Returns:
        ``out``.
    """
    b, h, n, d = q.shape
    dv = v.shape[-1]
    if q.stride(-1) != 1 or v.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("the last dimension of q, v and out must be contiguous")
    dv_pad = max(16, triton.next_power_of_2(dv))
    precision = "tf32" if allow_tf32 and q.dtype == torch.float32 else "ieee"
    family = "fp32" if q.dtype == torch.float32 else "half"
    if tiles is None and _interpreted():
        tiles = FP32_TILES[0] if family == "fp32" else HALF_TILES[0]
    candidates = (tiles,) if tiles else FP32_TILES if family == "fp32" else HALF_TILES
    block_dv = min(t.block_dv for t in candidates)
    if dv_pad <= block_dv:
        acc, acc_strides = out, (0, 0, 0)  # unused: acc stays in registers
    elif out.dtype == torch.float32:
        acc, acc_strides = out, (out.stride(0), out.stride(2), out.stride(1))
    else:
        acc = torch.empty(b, h, n, dv, dtype=torch.float32, device=out.device)
        acc_strides = (acc.stride(0), acc.stride(1), acc.stride(2))
    args = (
        q, v, threshold, out, acc,
        n, d, dv, heads, float(tau),
        q.stride(0), q.stride(1), q.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(2), out.stride(1),
        *acc_strides,
    )  # fmt: skip
    if tiles is None:
        grid = lambda meta: (b * h, triton.cdiv(n, meta["BLOCK_M"]))  # noqa: E731
        _AUTOTUNED[family][grid](*args, DV_PAD=dv_pad, PRECISION=precision)
    else:
        _thresholded_attention_kernel[(b * h, triton.cdiv(n, tiles.block_m))](
            *args, DV_PAD=dv_pad, PRECISION=precision, **tiles.meta(),
            num_warps=tiles.num_warps, num_stages=tiles.num_stages,
        )  # fmt: skip
    return out


def scga_triton(
    features: Tensor, tau: float = 10.0, batch_mean: bool = False, tiles: TileConfig | None = None,
    allow_tf32: bool = False,
) -> Tensor:  # fmt: skip
    """SCGA (see :func:`radseg_edge.core.scga.scga_reference`) with the Triton kernel.

    Args:
        features: B x N x C (fp32, fp16 or bf16).
        allow_tf32: fp32 features: TF32 tensor cores instead of exact fp32 products.
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
    thresholded_attention_triton(q.unsqueeze(1), v.unsqueeze(1), threshold.reshape(b).contiguous(), tau,
                                 out.unsqueeze(2), 1, tiles, allow_tf32)  # fmt: skip
    return out


def self_correlation_triton(
    o: Tensor, v: Tensor, tau: float, tiles: TileConfig | None = None, allow_tf32: bool = False
) -> Tensor:
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
    thresholded_attention_triton(oh, v, threshold, tau, out, h, tiles, allow_tf32)
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
    allow_tf32: bool = False,
) -> Tensor:
    """SCRA (:func:`radseg_edge.core.scra.scra_attention_reference`): SDPA, projection, Triton step, projection.

    Args:
        x: B x N x C tokens. Returns B x N x C.
    """
    step = functools.partial(self_correlation_triton, tau=tau, tiles=tiles, allow_tf32=allow_tf32)
    return scra_around(step, x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)
