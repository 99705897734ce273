"""Analytical FLOPs of the RADSeg pipeline, per stage.

Convention: one multiply-add = 2 FLOPs; only matrix products are counted (norms, softmax, GELU,
residual adds and resizes are O(tokens * C) and below 1% of the total for every paper setting).

Per window of T tokens (P patches + prefix tokens), width C, MLP hidden M, depth L:
    patch embed      2 * P * (3 * p * p) * C
    attention/block  2*T*C*3C (qkv) + 2*T*T*C (q k^T) + 2*T*T*C (A v) + 2*T*C*C (proj)
    MLP/block        2*T*C*M * 2
    SCRA extra       2*T*T*C (Ô Ô^T) + 2*T*T*C (A' v) + 2*T*C*C (second proj)      (last block only)
Per image of N stitched patches, K classes, language head with linear layers (in_i, out_i), text width D:
    SCGA             2*N*N*C (F^ F^^T) + 2*N*N*C (A F)
    language head    N * sum_i 2 * in_i * out_i
    cosine           2 * N * K * D
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from torch import nn

from radseg_edge.bench.settings import PATCH, Workload


@dataclass(frozen=True)
class BackboneShape:
    """The sizes of a RADIO ViT that its FLOPs depend on."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    num_prefix: int
    patch_size: int = PATCH

    @classmethod
    def from_model(cls, radio: nn.Module) -> BackboneShape:
        """Read the shape from a RadioModel (its blocks are the source of truth for widths)."""
        blocks = radio.blocks
        block = blocks[0]
        return cls(
            embed_dim=int(radio.embed_dim),
            depth=len(blocks),
            num_heads=int(block.attn.num_heads),
            mlp_hidden=int(block.mlp.fc1.out_features),
            num_prefix=int(radio.num_prefix_tokens),
            patch_size=int(radio.patch_size),
        )


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of every nn.Linear inside ``module`` (a per-token MLP head)."""
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def per_token_flops(shapes: Iterable[tuple[int, int]]) -> int:
    """FLOPs of applying linear layers of the given (in, out) shapes to one token."""
    return sum(2 * i * o for i, o in shapes)


@dataclass(frozen=True)
class WindowFlops:
    """FLOPs of the backbone on ONE window (all blocks, with SCRA in the last one)."""

    patch_embed: int
    attention: int
    mlp: int
    scra_extra: int

    @property
    def total(self) -> int:
        return self.patch_embed + self.attention + self.mlp + self.scra_extra


def window_flops(shape: BackboneShape, patches: int, scra: bool = True) -> WindowFlops:
    """Backbone FLOPs for one window of ``patches`` patches (prefix tokens added here)."""
    c, p = shape.embed_dim, shape.patch_size
    t = patches + shape.num_prefix
    attention = 2 * t * c * 3 * c + 2 * 2 * t * t * c + 2 * t * c * c
    mlp = 2 * 2 * t * c * shape.mlp_hidden
    scra_extra = (2 * 2 * t * t * c + 2 * t * c * c) if scra else 0
    return WindowFlops(
        patch_embed=2 * patches * 3 * p * p * c,
        attention=shape.depth * attention,
        mlp=shape.depth * mlp,
        scra_extra=scra_extra,
    )


def scga_flops(tokens: int, channels: int) -> int:
    """SCGA on N tokens of width C: the two N x N x C products."""
    return 2 * 2 * tokens * tokens * channels


def cosine_flops(tokens: int, num_classes: int, text_dim: int) -> int:
    return 2 * tokens * num_classes * text_dim


@dataclass(frozen=True)
class PipelineFlops:
    """FLOPs of one image through the whole pipeline, by part; ``stages`` maps them to profiler stages."""

    patch_embed: int
    attention: int
    mlp: int
    scra_extra: int
    scga: int
    language_head: int
    cosine: int

    @property
    def backbone(self) -> int:
        return self.patch_embed + self.attention + self.mlp + self.scra_extra

    @property
    def head(self) -> int:
        return self.language_head + self.cosine

    @property
    def total(self) -> int:
        return self.backbone + self.scga + self.head

    def stages(self) -> dict[str, int]:
        """FLOPs per profiler stage (``backbone``, ``scga``, ``head``) and ``total``."""
        return {"backbone": self.backbone, "scga": self.scga, "head": self.head, "total": self.total}

    def as_dict(self) -> dict[str, int]:
        out = asdict(self)
        out.update(self.stages())
        return out


def pipeline_flops(
    shape: BackboneShape,
    work: Workload,
    head_shapes: Sequence[tuple[int, int]],
    num_classes: int,
) -> PipelineFlops:
    """FLOPs of RADSeg (windows -> backbone with SCRA -> SCGA -> language head -> cosine) on one image.

    Args:
        shape: backbone sizes.
        work: the window grid (:func:`radseg_edge.bench.settings.workload`).
        head_shapes: (in, out) of the language head's linear layers (:func:`linear_shapes`).
        num_classes: K, the number of class embeddings.
    """
    win = window_flops(shape, work.window_patches)
    n = work.scga_tokens
    text_dim = head_shapes[-1][1] if head_shapes else shape.embed_dim
    return PipelineFlops(
        patch_embed=work.windows * win.patch_embed,
        attention=work.windows * win.attention,
        mlp=work.windows * win.mlp,
        scra_extra=work.windows * win.scra_extra,
        scga=scga_flops(n, shape.embed_dim),
        language_head=n * per_token_flops(head_shapes),
        cosine=cosine_flops(n, num_classes, text_dim),
    )


def scga_matrix_bytes(tokens: int, bytes_per_element: int = 4) -> int:
    """Size of ONE materialized N x N similarity matrix (fp32 by default)."""
    return tokens * tokens * bytes_per_element
