"""ViT building blocks shared by the RADIO backbone (pre-norm block, attention, MLP, LayerScale)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: signature of an attention replacement: (x, qkv_w, qkv_b, proj_w, proj_b, num_heads) -> x
AttentionFn = Callable[[Tensor, Tensor, Tensor | None, Tensor, Tensor | None, int], Tensor]


class Attention(nn.Module):
    """Multi-head self-attention, heads contiguous in the channel axis (timm layout).

    ``explicit`` switches from fused SDPA to MatMul-Softmax-MatMul (what exporters want).
    """

    explicit: bool = False

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.explicit:
            attn = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """Per-channel scale (stored as ``gamma``; RADIO files also call it ``grandma``)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x))). LayerNorm eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, layer_scale: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: Tensor, attention: AttentionFn | None = None) -> Tensor:
        """Args: x B x N x C. ``attention`` replaces the attention (weights passed in), e.g. SCRA."""
        h = self.norm1(x)
        if attention is None:
            h = self.attn(h)
        else:
            a = self.attn
            h = attention(h, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias, a.num_heads)
        x = x + self.ls1(h)
        return x + self.ls2(self.mlp(self.norm2(x)))
