"""The SAM pieces RADSeg+ keeps: the image-encoder neck, the prompt encoder and the mask decoder.

Our own PyTorch modules, written from the SAM paper's architecture (no ``segment_anything`` import:
it needs torchvision). The image-encoder trunk (patch embedding, ViT blocks, position embedding) is
never built: RADIO's ``sam`` feature head replaces it.

Module and parameter names mirror the official state dict, so a checkpoint converts by a pure key
mapping (:func:`convert_official_state_dict`):

* ``image_encoder.neck.*``  -> ``neck.*``
* ``prompt_encoder.*``      -> ``prompt_encoder.*``
* ``mask_decoder.*``        -> ``mask_decoder.*``
* everything else (trunk, ``pixel_mean``/``pixel_std``) is ignored and never read into memory when
  the file allows it (safetensors, zip-format ``.pth`` via mmap).

Every size is read from the tensors' shapes except the transformer's attention head count
(8 in every released SAM), which is :attr:`SamConfig.num_heads`.

Shapes: D = prompt/transformer width (256 for released SAMs), S = image-encoder width
(1280 for ViT-H), P = number of prompts, K = number of mask prompts (classes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from radseg_edge.errors import CheckpointError

#: SAM's fixed geometry: 1024 x 1024 input, 16-pixel patches -> 64 x 64 embeddings, 256 x 256 mask prompts.
SAM_IMAGE_SIZE = 1024
SAM_EMBED_GRID = 64
SAM_MASK_INPUT_SIZE = 4 * SAM_EMBED_GRID

#: the SAM image-encoder width of each released checkpoint, to name a mismatch in error messages.
SAM_ENCODER_WIDTHS = {768: "SAM ViT-B", 1024: "SAM ViT-L", 1280: "SAM ViT-H"}


# --------------------------------------------------------------------------------------------- layers
class LayerNorm2d(nn.Module):
    """SAM's channel LayerNorm for B x C x H x W maps: normalise over ``dim`` (1 = channels), eps 1e-6.

    ``dim=2`` reproduces the reference's un-batched mask prompt: SAM computes ``x.mean(1)`` on a
    3-D C x H x W tensor, which normalises over rows. Written as mean/var/sqrt like the reference
    (not ``F.layer_norm``) so the rounding matches.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        u = x.mean(dim, keepdim=True)
        s = (x - u).pow(2).mean(dim, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLP(nn.Module):
    """Linear layers with ReLU between them (no activation after the last)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class MLPBlock(nn.Module):
    """The transformer's feed-forward block: lin1 -> ReLU -> lin2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class Attention(nn.Module):
    """Multi-head attention with projections to ``internal_dim`` (= dim / downsample rate).

    Explicit MatMul-Softmax-MatMul (no fused SDPA) so that exported graphs stay TensorRT-safe.
    """

    def __init__(self, dim: int, internal_dim: int, num_heads: int) -> None:
        super().__init__()
        if internal_dim % num_heads:
            raise CheckpointError(
                f"SAM attention width {internal_dim} is not divisible by num_heads={num_heads}: "
                "pass the checkpoint's head count (8 for every released SAM)"
            )
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, internal_dim)
        self.k_proj = nn.Linear(dim, internal_dim)
        self.v_proj = nn.Linear(dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: B x Nq x dim, k/v: B x Nk x dim -> B x Nq x dim."""
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        attn = q @ k.permute(0, 1, 3, 2)
        attn = attn / math.sqrt(q.shape[-1])
        attn = torch.softmax(attn, dim=-1)
        out = (attn @ v).transpose(1, 2)
        b, n, h, d = out.shape
        return self.out_proj(out.reshape(b, n, h * d))


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SamConfig:
    """Sizes of the kept SAM parts; all but ``num_heads`` come from the checkpoint's tensor shapes."""

    encoder_dim: int  # S: neck input width (image-encoder embed dim; 1280 for ViT-H)
    embed_dim: int  # D: neck output = prompt embedding = transformer width (256)
    mask_in_chans: int  # mask-downscaling width (16)
    transformer_depth: int  # two-way blocks (2)
    mlp_dim: int  # transformer MLP hidden width (2048)
    attention_internal_dim: int  # cross-attention width (D / 2)
    num_mask_tokens: int  # 1 + multimask outputs (4)
    iou_head_dims: tuple[int, ...]  # (D, 256, 256, num_mask_tokens)
    hyper_dims: tuple[int, ...]  # (D, D, D, D / 8)
    upscale_dims: tuple[int, int]  # (D / 4, D / 8)
    num_heads: int = 8

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], num_heads: int = 8) -> SamConfig:
        """Infer sizes from a converted state dict (our key names, see :func:`convert_official_state_dict`)."""
        try:
            neck0 = sd["neck.0.weight"]
            depth = 0
            while f"mask_decoder.transformer.layers.{depth}.norm1.weight" in sd:
                depth += 1
            iou = _mlp_dims(sd, "mask_decoder.iou_prediction_head.layers")
            hyper = _mlp_dims(sd, "mask_decoder.output_hypernetworks_mlps.0.layers")
            cfg = cls(
                encoder_dim=int(neck0.shape[1]),
                embed_dim=int(neck0.shape[0]),
                mask_in_chans=int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
                transformer_depth=depth,
                mlp_dim=int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
                attention_internal_dim=int(
                    sd["mask_decoder.transformer.final_attn_token_to_image.q_proj.weight"].shape[0]
                ),
                num_mask_tokens=int(sd["mask_decoder.mask_tokens.weight"].shape[0]),
                iou_head_dims=iou,
                hyper_dims=hyper,
                upscale_dims=(
                    int(sd["mask_decoder.output_upscaling.0.weight"].shape[1]),
                    int(sd["mask_decoder.output_upscaling.3.weight"].shape[1]),
                ),
                num_heads=int(num_heads),
            )
        except KeyError as exc:
            raise CheckpointError(
                f"SAM checkpoint lacks the tensor {exc.args[0]!r} (after mapping official names): expected the "
                "official sam_vit_*.pth layout (image_encoder.neck.*, prompt_encoder.*, mask_decoder.*)"
            ) from None
        if depth == 0:
            raise CheckpointError("SAM checkpoint has no mask_decoder.transformer.layers.*: not a SAM checkpoint")
        return cfg


#: the released SAM ViT-H (sam_vit_h_4b8939.pth) sizes of the parts RADSeg+ keeps.
SAM_VIT_H = SamConfig(
    encoder_dim=1280, embed_dim=256, mask_in_chans=16, transformer_depth=2, mlp_dim=2048,
    attention_internal_dim=128, num_mask_tokens=4, iou_head_dims=(256, 256, 256, 4),
    hyper_dims=(256, 256, 256, 32), upscale_dims=(64, 32), num_heads=8,
)


def _mlp_dims(sd: dict[str, torch.Tensor], prefix: str) -> tuple[int, ...]:
    n = 0
    while f"{prefix}.{n}.weight" in sd:
        n += 1
    if n == 0:
        raise KeyError(f"{prefix}.0.weight")
    dims = [int(sd[f"{prefix}.0.weight"].shape[1])]
    dims += [int(sd[f"{prefix}.{i}.weight"].shape[0]) for i in range(n)]
    return tuple(dims)


# --------------------------------------------------------------------------------------------- neck
class SamNeck(nn.Module):
    """Conv1x1 (no bias) -> LayerNorm2d -> Conv3x3 pad 1 (no bias) -> LayerNorm2d.

    B x S x 64 x 64 (RADIO ``sam`` features, zero-padded) -> B x D x 64 x 64 image embeddings.
    Indices 0..3 match ``image_encoder.neck.{0..3}``.
    """

    def __init__(self, encoder_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.add_module("0", nn.Conv2d(encoder_dim, embed_dim, 1, bias=False))
        self.add_module("1", LayerNorm2d(embed_dim))
        self.add_module("2", nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False))
        self.add_module("3", LayerNorm2d(embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules
        return m["3"](m["2"](m["1"](m["0"](x))))


# --------------------------------------------------------------------------------------------- prompts
class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of (x, y) in [0, 1]: [sin, cos](2*pi * (2*xy - 1) @ G), G: 2 x D/2."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.zeros(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, h: int, w: int) -> torch.Tensor:
        """D x h x w encoding of the pixel centres of an h x w grid."""
        grid = torch.ones(
            (h, w), device=self.positional_encoding_gaussian_matrix.device,
            dtype=self.positional_encoding_gaussian_matrix.dtype,
        )
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def with_coords(self, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """coords: ... x 2 pixel (x, y) in an image of ``image_hw`` -> ... x D."""
        x = coords[..., 0] / image_hw[1]
        y = coords[..., 1] / image_hw[0]
        return self._encode(torch.stack([x, y], dim=-1).to(torch.float))


class PromptEncoder(nn.Module):
    """Points, boxes and a low-res mask -> sparse P x T x D tokens and dense D x 64 x 64 embeddings."""

    def __init__(self, embed_dim: int, mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = (SAM_EMBED_GRID, SAM_EMBED_GRID)
        self.input_image_size = (SAM_IMAGE_SIZE, SAM_IMAGE_SIZE)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        c4 = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c4, kernel_size=2, stride=2),
            LayerNorm2d(c4),
            nn.GELU(),
            nn.Conv2d(c4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        """1 x D x 64 x 64 positional encoding of the image embedding grid."""
        return self.pe_layer.dense(*self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords: P x N x 2 (x, y) in the 1024 frame; labels: P x N (1 pos, 0 neg, -1 padding) -> P x N x D."""
        emb = self.pe_layer.with_coords(coords + 0.5, self.input_image_size)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == -1, torch.zeros_like(emb), emb)
        emb = emb + (lab == -1).to(emb.dtype) * self.not_a_point_embed.weight
        emb = emb + (lab == 0).to(emb.dtype) * self.point_embeddings[0].weight
        emb = emb + (lab == 1).to(emb.dtype) * self.point_embeddings[1].weight
        return emb

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes: P x 4 (x0, y0, x1, y1) in the 1024 frame -> P x 2 x D corner tokens."""
        corners = self.pe_layer.with_coords((boxes + 0.5).reshape(-1, 2, 2), self.input_image_size)
        return torch.stack(
            [corners[:, 0] + self.point_embeddings[2].weight[0], corners[:, 1] + self.point_embeddings[3].weight[0]],
            dim=1,
        )

    def embed_masks(self, masks: torch.Tensor, unbatched_quirk: bool = True) -> torch.Tensor:
        """masks: K x 1 x 256 x 256 mask prompts -> K x D x 64 x 64 dense embeddings.

        ``unbatched_quirk=True`` reproduces the reference, which passes each mask prompt as a 3-D
        1 x 256 x 256 tensor: the convolutions treat it as one un-batched image, and both LayerNorm2d
        layers normalise each (channel, column) over the rows. ``False`` is SAM's intended batched
        computation (normalise over channels).
        """
        dim = 2 if unbatched_quirk else 1
        x = masks
        for layer in self.mask_downscaling:
            x = layer(x, dim) if isinstance(layer, LayerNorm2d) else layer(x)
        return x


# --------------------------------------------------------------------------------------------- decoder
class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, MLP, image->token cross-attention."""

    def __init__(self, dim: int, internal_dim: int, mlp_dim: int, num_heads: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, internal_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, internal_dim, num_heads)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Tokens attend to the image and the image attends back, ``depth`` times, then a final token->image step."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(d, cfg.attention_internal_dim, cfg.mlp_dim, cfg.num_heads, i == 0)
            for i in range(cfg.transformer_depth)
        )
        self.final_attn_token_to_image = Attention(d, cfg.attention_internal_dim, cfg.num_heads)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image: P x D x h x w, image_pe: 1 x D x h x w, tokens: P x T x D -> (P x T x D, P x h*w x D)."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q = queries + tokens
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MaskDecoder(nn.Module):
    """SAM's mask decoder, single-mask output (mask token 0, IoU output 0)."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.transformer = TwoWayTransformer(cfg)
        self.iou_token = nn.Embedding(1, d)
        self.num_mask_tokens = cfg.num_mask_tokens
        self.mask_tokens = nn.Embedding(cfg.num_mask_tokens, d)
        u1, u2 = cfg.upscale_dims
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, u1, kernel_size=2, stride=2),
            LayerNorm2d(u1),
            nn.GELU(),
            nn.ConvTranspose2d(u1, u2, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(list(cfg.hyper_dims)) for _ in range(cfg.num_mask_tokens))
        self.iou_prediction_head = MLP(list(cfg.iou_head_dims))

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings, image_pe: 1 x D x 64 x 64; sparse: P x T x D; dense: P x D x 64 x 64
        (or broadcastable) -> (low-res mask logits P x 1 x 256 x 256, IoU predictions P x 1)."""
        p = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(p, -1, -1), sparse], dim=1)
        src = image_embeddings.expand(p, -1, -1, -1) + dense
        b, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        up = self.output_upscaling(src)
        b, c2, h2, w2 = up.shape
        hyper = self.output_hypernetworks_mlps[0](hs[:, 1, :]).unsqueeze(1)  # P x 1 x c2
        masks = (hyper @ up.reshape(b, c2, h2 * w2)).reshape(b, 1, h2, w2)
        iou = self.iou_prediction_head(hs[:, 0, :])[:, :1]
        return masks, iou


# --------------------------------------------------------------------------------------------- model
class SamPromptDecoder(nn.Module):
    """Neck + prompt encoder + mask decoder: everything of SAM that RADSeg+ runs."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        self.config = cfg
        self.neck = SamNeck(cfg.encoder_dim, cfg.embed_dim)
        self.prompt_encoder = PromptEncoder(cfg.embed_dim, cfg.mask_in_chans)
        self.mask_decoder = MaskDecoder(cfg)

    def embed_image(self, features: torch.Tensor) -> torch.Tensor:
        """features: 1 x S x 64 x 64 (zero-padded RADIO ``sam`` features) -> 1 x D x 64 x 64."""
        if features.shape[1] != self.config.encoder_dim:
            raise CheckpointError(
                f"the SAM neck expects {self.config.encoder_dim}-d features, got {features.shape[1]}-d"
            )
        return self.neck(features)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        boxes: torch.Tensor,
        mask_inputs: torch.Tensor,
        prompt_mask_index: torch.Tensor,
        unbatched_mask_quirk: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run P prompts through the decoder in one batch.

        image_embeddings: 1 x D x 64 x 64 (neck output); point_coords: P x N x 2 and boxes: P x 4 in
        SAM's 1024 frame (pixels); point_labels: P x N; mask_inputs: K x 1 x 256 x 256 (one per class);
        prompt_mask_index: P int64 in [0, K), the mask prompt of each prompt.
        Returns low-res mask logits P x 1 x 256 x 256 and IoU predictions P x 1.
        """
        pe = self.prompt_encoder
        sparse = torch.cat([pe.embed_points(point_coords, point_labels), pe.embed_boxes(boxes)], dim=1)
        dense = pe.embed_masks(mask_inputs, unbatched_mask_quirk).index_select(0, prompt_mask_index)
        return self.mask_decoder(image_embeddings, pe.dense_pe(), sparse, dense)

    def forward(
        self,
        features: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        boxes: torch.Tensor,
        mask_inputs: torch.Tensor,
        prompt_mask_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Neck + :meth:`decode` with the reference (un-batched mask prompt) behaviour; the exported graph."""
        emb = self.embed_image(features)
        return self.decode(emb, point_coords, point_labels, boxes, mask_inputs, prompt_mask_index)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------------------------- loading
_KEEP_PREFIXES = {"image_encoder.neck.": "neck.", "prompt_encoder.": "prompt_encoder.", "mask_decoder.": "mask_decoder."}


def convert_official_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official SAM names -> ours (pure). Trunk keys and ``pixel_mean``/``pixel_std`` are dropped."""
    out = {}
    for key, value in sd.items():
        key = key[len("module."):] if key.startswith("module.") else key
        for src, dst in _KEEP_PREFIXES.items():
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
    return out


def to_official_state_dict(model: SamPromptDecoder) -> dict[str, torch.Tensor]:
    """Our names -> the official ones (inverse of :func:`convert_official_state_dict`)."""
    inverse = {dst: src for src, dst in _KEEP_PREFIXES.items()}
    out = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in inverse if key.startswith(p))
        out[inverse[prefix] + key[len(prefix):]] = value
    return out


def random_sam(config: SamConfig = SAM_VIT_H, seed: int = 0) -> SamPromptDecoder:
    """The architecture of ``config`` with seeded random weights (benchmarks and tests; not a trained model).

    Linear/Conv weights N(0, 1/fan_in), biases N(0, 0.1^2), norms 1 + N(0, 0.1^2) / N(0, 0.05^2), embeddings
    and the Fourier matrix N(0, 1) (the fixtures' rule, which keeps mask logits O(1)).
    """
    model = SamPromptDecoder(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = mod.weight.shape[0] if isinstance(mod, nn.ConvTranspose2d) else mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) / math.sqrt(fan_in))
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.1)
            elif isinstance(mod, (nn.LayerNorm, LayerNorm2d)):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.05 * torch.randn(mod.bias.shape, generator=gen))
            elif isinstance(mod, nn.Embedding):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
            elif isinstance(mod, PositionEmbeddingRandom):
                mod.positional_encoding_gaussian_matrix.copy_(
                    torch.randn(mod.positional_encoding_gaussian_matrix.shape, generator=gen)
                )
    return model.eval()


def _wanted(key: str) -> bool:
    key = key[len("module."):] if key.startswith("module.") else key
    return any(key.startswith(p) for p in _KEEP_PREFIXES)


def read_sam_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the kept SAM tensors (official names) from ``.pth`` (safe unpickling) or ``.safetensors``.

    Raises :class:`CheckpointError` for a missing, truncated or unsafe file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"SAM checkpoint {path!r} does not exist: pass the path of sam_vit_h_4b8939.pth")
    if path.endswith(".safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(path, framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys() if _wanted(k)}
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(
                f"SAM checkpoint {path!r} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                "it may be truncated: download it again"
            ) from None
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = (
            "it contains objects other than tensors, which are refused for safety"
            if "weights_only" in str(exc) or "Unsupported global" in str(exc)
            else "it may be truncated or not a PyTorch file: download it again"
        )
        raise CheckpointError(f"cannot read SAM checkpoint {path!r} ({msg}); {hint}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"SAM checkpoint {path!r} is not a state dict of tensors (official sam_vit_*.pth layout)")
    # copy the kept tensors out of the memory map; the trunk is never materialised
    return {k: v.clone() for k, v in obj.items() if _wanted(k)}


def sam_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int = 8) -> SamPromptDecoder:
    """Build a :class:`SamPromptDecoder` from official-name tensors; checks every key and shape."""
    ours = convert_official_state_dict(sd)
    cfg = SamConfig.from_state_dict(ours, num_heads=num_heads)
    model = SamPromptDecoder(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"SAM checkpoint does not match the SAM decoder layout: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in expected.items():
        if tuple(ours[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"SAM checkpoint tensor {k} has shape {tuple(ours[k].shape)}, expected {tuple(v.shape)} "
                "from the other tensors' sizes"
            )
    model.load_state_dict({k: v.float() for k, v in ours.items()})
    return model.eval()


def load_sam(path: str | os.PathLike, num_heads: int = 8) -> SamPromptDecoder:
    """Load SAM's neck, prompt encoder and mask decoder (eval, fp32, CPU) from an official checkpoint.

    ``path``: ``sam_vit_h_4b8939.pth`` (or ViT-B/L) or a safetensors file with the official key names.
    ``num_heads``: the two-way transformer's head count (8 in every released SAM).
    """
    return sam_from_state_dict(read_sam_state_dict(path), num_heads=num_heads)
