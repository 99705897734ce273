"""Self-Correlating Recursive Attention (SCRA), reference implementation.

SCRA replaces only the attention of the backbone's LAST block (RADSEG.md, "SCRA"):

1. standard attention  O = concat_h(softmax(Q_h K_h^T / sqrt(d)) V_h) W_o + b_o   (after the projection)
2. split O into H contiguous d-wide channel chunks O_h, row-normalise them,
   S_h = tau * Ô_h Ô_h^T, entries < 0 -> -inf, A'_h = softmax(S_h)
3. SCRA(X) = concat_h(A'_h V_h) W_o + b_o, with the ORIGINAL V.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def split_qkv(x: Tensor, qkv_weight: Tensor, qkv_bias: Tensor | None, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Project ``x`` (B x N x C) to per-head q, k, v, each B x H x N x d (heads contiguous in C, like timm)."""
    b, n, c = x.shape
    qkv = F.linear(x, qkv_weight, qkv_bias).reshape(b, n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(x: Tensor) -> Tensor:
    """B x H x N x d -> B x N x (H*d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attention_with_values(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
) -> tuple[Tensor, Tensor]:
    """Plain multi-head self-attention with output projection, and the values it used.

    Args:
        x: B x N x C tokens (the block's norm1 output), fp32.
    Returns:
        (B x N x C ``proj(softmax(q k^T / sqrt(d)) v)``, B x H x N x d values).
    """
    q, k, v = split_qkv(x, qkv_weight, qkv_bias, num_heads)
    scale = q.shape[-1] ** -0.5
    attn = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)
    return F.linear(merge_heads(attn @ v), proj_weight, proj_bias), v


def standard_attention_reference(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
) -> Tensor:
    """Plain multi-head self-attention (B x N x C -> B x N x C), the first step of SCRA."""
    return attention_with_values(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)[0]


def self_correlation_attention(o: Tensor, v: Tensor, tau: float) -> Tensor:
    """The recursive step of SCRA, before the final projection.

    Args:
        o: B x N x C projected output of the first attention.
        v: B x H x N x d original values.
        tau: SCRA temperature (``scra_tau``; 10 in the paper).
    Returns:
        B x N x C = concat_h(softmax(mask(tau * Ô_h Ô_h^T)) V_h).
    """
    b, n, c = o.shape
    h = v.shape[1]
    oh = F.normalize(o.reshape(b, n, h, c // h).transpose(1, 2), dim=-1)  # B x H x N x d
    sim = (oh @ oh.transpose(-2, -1)) * tau
    sim = sim.masked_fill(sim < 0, float("-inf"))
    return merge_heads(torch.softmax(sim, dim=-1) @ v)


def scra_attention_reference(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    tau: float = 10.0,
) -> Tensor:
    """SCRA on ``x`` (B x N x C, all tokens: cls, registers, patches). Returns B x N x C."""
    o, v = attention_with_values(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)
    return F.linear(self_correlation_attention(o, v, tau), proj_weight, proj_bias)
