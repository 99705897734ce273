"""The two graphs of the split (variable image size) deployment, as traceable nn.Modules.

- :class:`WindowBackbone`: windows B x 3 x crop_h x crop_w (RGB in [0,1]) -> features B x C x h x w,
  the backbone with SCRA in its last block; crop fixed (position embedding precomputed), batch dynamic.
- :class:`HeadGraph`: stitched features 1 x C x h x w + class embeddings K x D (an INPUT, so one graph
  serves every vocabulary) -> probabilities 1 x K x h x w (SCGA, language head, 100*cos softmax).

The host does the rest (pre-resize, window cutting, stitching, upsampling, denoising, argmax) with the
reference operators of :mod:`radseg_edge.core`. For a fixed camera resolution
:class:`radseg_edge.export.fixed.FixedResolutionPipeline` puts everything in one graph.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from radseg_edge.export.ops import (
    attention_export,
    class_probabilities_export,
    scga_export,
    scra_attention_export,
)


class ScgaModule(nn.Module):
    """SCGA on a 1 x C x h x w map (statistics in fp32). A module of its own so that its nodes carry the
    ``scga`` name scope in the exported graph (the FP16 converter keeps them in fp32).

    With ``plugin=True`` SCGA is the one ``radseg::RadsegScga`` node of the TensorRT plugin
    (:mod:`radseg_edge.export.plugin`; export with its ``translation_table()``) instead of standard ops.
    """

    def __init__(self, tau: float = 10.0, plugin: bool = False) -> None:
        super().__init__()
        self.tau = float(tau)
        self.plugin = bool(plugin)
        if self.plugin:
            import radseg_edge.export.plugin  # noqa: F401  (registers torch.ops.radseg_export.scga_plugin)

    def forward(self, features: Tensor) -> Tensor:
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        if self.plugin:
            out = torch.ops.radseg_export.scga_plugin(tokens, self.tau, 0)
        else:
            out = scga_export(tokens, self.tau)
        return out.transpose(1, 2).reshape(b, c, h, w)


class WindowBackbone(nn.Module):
    """RADIO with SCRA in the last block, for windows of one fixed size.

    Args:
        radio: a :class:`radseg_edge.models.radio.RadioModel` (its modules are shared, not copied).
        crop_hw: window size in pixels (multiples of the patch size).
        scra_tau: SCRA temperature.
    forward:
        windows: B x 3 x crop_h x crop_w float RGB in [0,1] -> B x C x crop_h/16 x crop_w/16 fp32.
    """

    def __init__(self, radio: nn.Module, crop_hw: tuple[int, int], scra_tau: float = 10.0) -> None:
        super().__init__()
        p = radio.patch_size
        if crop_hw[0] % p or crop_hw[1] % p:
            raise ValueError(f"window size {crop_hw} must be a multiple of the patch size {p}")
        self.radio = radio
        self.crop_hw = (int(crop_hw[0]), int(crop_hw[1]))
        self.grid = (crop_hw[0] // p, crop_hw[1] // p)
        self.scra_tau = float(scra_tau)
        with torch.no_grad():
            pos = radio.position_embedding(*self.grid).detach().clone().float()
        self.register_buffer("pos_embed", pos, persistent=False)

    def tokens(self, windows: Tensor) -> Tensor:
        """Conditioned, patchified, embedded windows with prefix tokens: B x (P + h*w) x C."""
        r = self.radio
        p = r.patch_size
        b = windows.shape[0]
        h, w = self.grid
        x = r.conditioner(windows)
        patches = x.reshape(b, 3, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, 3 * p * p)
        tokens = r.patch_embed(patches) + self.pos_embed
        prefix = r.prefix_tokens.unsqueeze(0).expand(b, -1, -1)
        return torch.cat([prefix, tokens], dim=1)

    def forward(self, windows: Tensor) -> Tensor:
        r = self.radio
        t = self.tokens(windows)
        scra = functools.partial(scra_attention_export, tau=self.scra_tau)
        last = len(r.blocks) - 1
        for i, block in enumerate(r.blocks):
            t = block(t, scra if i == last else attention_export)
        t = r.norm(t)
        features = t[:, r.num_prefix_tokens :]
        if r.feature_normalizer is not None:
            features = r.feature_normalizer(features)
        h, w = self.grid
        return features.transpose(1, 2).reshape(windows.shape[0], -1, h, w)


class LanguageHead(nn.Module):
    """The language adaptor's summary head applied per pixel: B x C x h x w -> B x D x h x w."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class HeadGraph(nn.Module):
    """SCGA + language head + cosine against class embeddings given as an input.

    ``plugin=True``: SCGA as the TensorRT plugin's node (engine builds), see :class:`ScgaModule`.

    forward:
        features: 1 x C x h x w stitched backbone features (fp32);
        text_embeddings: K x D class embeddings (any norm).
        -> probabilities 1 x K x h x w (before upsampling and denoising).
    """

    def __init__(self, radio: nn.Module, scga_tau: float = 10.0, plugin: bool = False) -> None:
        super().__init__()
        if radio.language_adaptor is None:
            raise ValueError("the RADIO model has no language head loaded")
        self.scga = ScgaModule(scga_tau, plugin)
        self.language = LanguageHead(radio.heads[radio.language_adaptor].summary_head)

    def forward(self, features: Tensor, text_embeddings: Tensor) -> Tensor:
        return class_probabilities_export(self.language(self.scga(features)), text_embeddings)
