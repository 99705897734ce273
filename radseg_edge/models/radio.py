"""The RADIO ViT backbone with CPE position embedding, prefix tokens and adaptor heads (RADIO.md, "Forward").

Always eval semantics (no dropout, no random CPE crops). Input: B x 3 x H x W RGB in [0,1], H and W multiples
of the patch size (see :func:`round_to_patch` for a helper that resizes to the nearest valid size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radseg_edge.errors import InputError
from radseg_edge.models.configs import RadioConfig
from radseg_edge.models.heads import MLP2, AdaptorHead
from radseg_edge.models.layers import AttentionFn, Block


@dataclass
class RadioOutput:
    """``summary``: B x (n*C) concatenated cls tokens; ``features``: B x (h*w) x C patch tokens."""

    summary: Tensor
    features: Tensor


class InputConditioner(nn.Module):
    """(x - mean) / std with the checkpoint's mean/std (3 x 1 x 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1))
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class FeatureNormalizer(nn.Module):
    """Optional whitening of the backbone features: (f - mean) @ tx^T."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("tx", torch.eye(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) @ self.tx.T


def check_image(x: Tensor, patch_size: int) -> None:
    """Raise InputError unless ``x`` is a float B x 3 x H x W tensor with H, W multiples of the patch size."""
    if not isinstance(x, Tensor):
        raise InputError(f"expected a torch.Tensor image, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"expected a B x 3 x H x W RGB image tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"expected a float image with values in [0,1], got dtype {x.dtype} (divide uint8 by 255)")
    h, w = x.shape[-2:]
    if h % patch_size or w % patch_size:
        raise InputError(
            f"image sides must be multiples of the patch size {patch_size}, got {h}x{w}; "
            f"resize with radseg_edge.models.radio.round_to_patch (nearest valid size: "
            f"{round_size(h, patch_size)}x{round_size(w, patch_size)})"
        )


def round_size(length: int, patch_size: int = 16) -> int:
    """Nearest multiple of the patch size (at least one patch)."""
    return max(patch_size, int(round(length / patch_size)) * patch_size)


def round_to_patch(x: Tensor, patch_size: int = 16) -> Tensor:
    """Bilinearly resize B x C x H x W so that H and W are the nearest multiples of ``patch_size``."""
    h, w = x.shape[-2:]
    size = (round_size(h, patch_size), round_size(w, patch_size))
    if size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RadioModel(nn.Module):
    """RADIO backbone + adaptor heads.

    Attributes:
        config: the architecture (:class:`RadioConfig`).
        heads: ModuleDict teacher name -> :class:`AdaptorHead` (only the adaptors that were loaded).
        summary_idxs: cls-token slots forming :attr:`RadioOutput.summary`.
    """

    def __init__(self, config: RadioConfig, adaptors: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] | None = None) -> None:
        """Build with uninitialised weights; ``adaptors`` maps teacher -> (summary MLP2 shape, feature MLP2 shape),
        each shape = (in, hidden, out, num_inner)."""
        super().__init__()
        c = config
        self.config = c
        self.patch_size = c.patch_size
        self.embed_dim = c.embed_dim
        self.num_cls_tokens = c.num_cls_tokens
        self.num_prefix_tokens = c.num_prefix_tokens
        self.align_corners = c.align_corners
        self.conditioner = InputConditioner()
        self.patch_embed = nn.Linear(3 * c.patch_size**2, c.embed_dim, bias=False)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.cpe_grid * c.cpe_grid, c.embed_dim))
        self.prefix_tokens = nn.Parameter(torch.zeros(c.num_prefix_tokens, c.embed_dim))
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_hidden, c.layer_scale) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6) if c.model_norm else nn.Identity()
        self.feature_normalizer: FeatureNormalizer | None = None
        self.summary_idxs = list(c.summary_idxs)
        self.heads = nn.ModuleDict()
        for name, (sshape, fshape) in (adaptors or {}).items():
            self.heads[name] = AdaptorHead(name, MLP2(*sshape), MLP2(*fshape) if fshape else None)
        self.eval()

    # -- properties used by the pipeline -------------------------------------------------------------
    @property
    def language_adaptor(self) -> str | None:
        """Name of the loaded language teacher head (RADSeg's language head), or None."""
        name = self.config.language_teacher()
        return name if name in self.heads else None

    @property
    def text_model_id(self) -> str | None:
        """Hugging Face id of the text tower that matches the language head, when known."""
        from radseg_edge.models.configs import TEXT_MODELS

        name = self.language_adaptor
        for t in self.config.teachers:
            if t.name == name:
                return TEXT_MODELS.get(t.model, t.model or None)
        return None

    def train(self, mode: bool = True) -> RadioModel:
        """RADIO always runs with eval semantics; ``train(True)`` is accepted but changes nothing numerically."""
        return super().train(False)

    # -- forward pieces -------------------------------------------------------------------------------
    def position_embedding(self, h: int, w: int) -> Tensor:
        """CPE for an h x w patch grid: 1 x (h*w) x C (bilinear resize to max(h,w) square, top-left crop)."""
        g = self.config.cpe_grid
        table = self.pos_embed.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if (h, w) != (g, g):
            m = max(h, w)
            table = F.interpolate(table.float(), size=(m, m), mode="bilinear", align_corners=self.align_corners)
            table = table[:, :, :h, :w].to(self.pos_embed.dtype)
        return table.flatten(2).transpose(1, 2)

    def embed(self, x: Tensor) -> Tensor:
        """Conditioned image B x 3 x H x W -> tokens B x (P + h*w) x C (prefix tokens first)."""
        b, _, hh, ww = x.shape
        p = self.patch_size
        h, w = hh // p, ww // p
        patches = x.reshape(b, 3, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, 3 * p * p)
        tokens = self.patch_embed(patches) + self.position_embedding(h, w)
        prefix = self.prefix_tokens.unsqueeze(0).expand(b, -1, -1)
        return torch.cat([prefix, tokens], dim=1)

    def forward_tokens(self, x: Tensor, last_attention: AttentionFn | None = None) -> Tensor:
        """All tokens after the last block: B x (P + h*w) x C. ``last_attention`` replaces the last block's
        attention (SCRA)."""
        check_image(x, self.patch_size)
        t = self.embed(self.conditioner(x))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            t = block(t, last_attention if i == last else None)
        return self.norm(t)

    def split_tokens(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(summary B x (n*C), features B x N x C) from all tokens (feature normaliser applied)."""
        summary = tokens[:, : self.num_cls_tokens][:, self.summary_idxs].flatten(1)
        features = tokens[:, self.num_prefix_tokens :]
        if self.feature_normalizer is not None:
            features = self.feature_normalizer(features)
        return summary, features

    def forward(self, x: Tensor) -> RadioOutput:
        """x: B x 3 x H x W RGB in [0,1] -> :class:`RadioOutput` (summary B x n*C, features B x h*w x C)."""
        summary, features = self.split_tokens(self.forward_tokens(x))
        return RadioOutput(summary=summary, features=features)

    def forward_spatial(self, x: Tensor, scra_tau: float | None = None, last_attention: AttentionFn | None = None) -> Tensor:
        """Patch features as a map, B x C x h x w; with ``scra_tau`` the last attention is SCRA (reference op).

        ``last_attention`` (a fused SCRA from :mod:`radseg_edge.kernels`, say) wins over ``scra_tau``.
        """
        if last_attention is None and scra_tau is not None:
            from radseg_edge.core.scra import scra_attention_reference

            def last_attention(h, qw, qb, pw, pb, nh):  # noqa: E306
                return scra_attention_reference(h, qw, qb, pw, pb, nh, tau=scra_tau)

        _, features = self.split_tokens(self.forward_tokens(x, last_attention))
        b, _, hh, ww = x.shape
        return features.transpose(1, 2).reshape(b, -1, hh // self.patch_size, ww // self.patch_size)

    def adaptor_summary(self, name: str, tokens: Tensor) -> Tensor:
        """The teacher's summary head on its cls token: tokens B x (P+N) x C -> B x D."""
        return self.heads[name].summary_head(tokens[:, self.config.cls_slot(name)])

    # -- bookkeeping ----------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part: 'backbone' and 'head:<teacher>:summary' / 'head:<teacher>:feature'."""
        counts = {"backbone": 0}
        for name, p in self.named_parameters():
            if name.startswith("heads."):
                _, teacher, which = name.split(".")[:3]
                key = f"head:{teacher}:{which.replace('_head', '')}"
                counts[key] = counts.get(key, 0) + p.numel()
            else:
                counts["backbone"] += p.numel()
        return counts

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"name={c.name}, width={c.embed_dim}, depth={c.depth}, heads={c.num_heads}, patch={c.patch_size}, "
            f"prefix={c.num_cls_tokens}+{c.num_registers}, cpe_grid={c.cpe_grid}, align_corners={self.align_corners}"
        )

