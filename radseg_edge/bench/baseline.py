"""The naive baseline: RADSeg exactly as the official release runs it, eager fp32, nothing fused.

Every benchmark run measures this in the same process and reports ratios against it. It is built only
from the reference operators of :mod:`radseg_edge.core` and the RADIO model's own weights:

* backbone: all windows of the image as one batch; blocks 0..L-2 with the attention the official code
  gets from timm (``F.scaled_dot_product_attention``, ``attention="sdpa"``, the default) or fully
  materialized ``softmax(q k^T) v`` (``attention="materialized"``); the last block's attention is SCRA with
  its N x N matrices materialized (:func:`scra_attention_reference`);
* stitching by summed features / overlap count;
* SCGA with the whole N x N similarity materialized, several copies alive at once (:func:`scga_reference`);
* language head, 100 * cosine softmax, bilinear upsampling to the original size, prompt denoising, argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from radseg_edge.core.predict import class_probabilities, denoise_prompts, labels_from_probs, upsample_probs
from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import (
    merge_heads,
    scra_attention_reference,
    split_qkv,
    standard_attention_reference,
)
from radseg_edge.core.windows import extract_windows, preresize_image, stitch_windows, window_boxes
from radseg_edge.errors import InputError
from radseg_edge.utils.profiling import NULL_PROFILER, StageProfiler

ATTENTIONS = ("sdpa", "materialized")


def sdpa_attention(x: Tensor, qkv_w: Tensor, qkv_b: Tensor | None, proj_w: Tensor, proj_b: Tensor | None, num_heads: int) -> Tensor:
    """timm's default attention (what the official backbone runs): B x N x C -> B x N x C."""
    q, k, v = split_qkv(x, qkv_w, qkv_b, num_heads)
    return F.linear(merge_heads(F.scaled_dot_product_attention(q, k, v)), proj_w, proj_b)


@dataclass
class BaselineResult:
    """Same fields as the pipeline's result: probs 1 x K x H x W, labels 1 x H x W, feature maps 1 x C x h x w."""

    probs: Tensor
    labels: Tensor
    features: Tensor
    scga_features: Tensor


class NaiveRADSeg:
    """Reference-behaviour RADSeg on a :class:`radseg_edge.models.RadioModel` (eager, fp32, one image)."""

    def __init__(
        self,
        radio: torch.nn.Module,
        scra_tau: float = 10.0,
        scga_tau: float = 10.0,
        crop: int = 336,
        stride: int = 224,
        denoise: float = 0.5,
        prediction_thresh: float = 0.0,
        attention: str = "sdpa",
        profiler: StageProfiler | None = None,
    ) -> None:
        if attention not in ATTENTIONS:
            raise InputError(f"baseline attention must be one of {ATTENTIONS}, got '{attention}'")
        if radio.language_adaptor is None:
            raise InputError("the RADIO model has no language head; load it with the language adaptor")
        self.radio = radio
        self.scra_tau = scra_tau
        self.scga_tau = scga_tau
        self.crop = crop
        self.stride = stride
        self.denoise = denoise
        self.prediction_thresh = prediction_thresh
        self.attention = attention
        self.profiler = profiler or NULL_PROFILER
        self.language_head = radio.heads[radio.language_adaptor].summary_head

    def _scra(self, x: Tensor, qkv_w: Tensor, qkv_b: Tensor | None, proj_w: Tensor, proj_b: Tensor | None, heads: int) -> Tensor:
        return scra_attention_reference(x, qkv_w, qkv_b, proj_w, proj_b, heads, tau=self.scra_tau)

    def backbone(self, windows: Tensor) -> Tensor:
        """nW x 3 x h x w RGB [0,1] -> nW x C x h/16 x w/16 patch features (SCRA in the last block)."""
        radio = self.radio
        tokens = radio.embed(radio.conditioner(windows))
        plain = sdpa_attention if self.attention == "sdpa" else standard_attention_reference
        last = len(radio.blocks) - 1
        for i, block in enumerate(radio.blocks):
            tokens = block(tokens, self._scra if i == last else plain)
        _, feats = radio.split_tokens(radio.norm(tokens))
        b, _, hh, ww = windows.shape
        p = radio.patch_size
        return feats.transpose(1, 2).reshape(b, -1, hh // p, ww // p)

    @torch.inference_mode()
    def __call__(self, image: Tensor, text: Tensor) -> BaselineResult:
        """image: 1 x 3 x H x W RGB in [0,1]; text: K x D class embeddings."""
        prof = self.profiler
        orig_hw = tuple(image.shape[-2:])
        with prof.stage("preprocess"):
            if self.crop > 0:
                img = preresize_image(image.float(), self.crop, self.stride)
                boxes = window_boxes(img.shape[-2], img.shape[-1], self.crop, self.stride)
                windows = extract_windows(img, boxes)
            else:
                img, windows = image.float(), image.float()
        with prof.stage("backbone"):
            win_feats = self.backbone(windows)
        with prof.stage("stitch"):
            feats = stitch_windows(win_feats, boxes, tuple(img.shape[-2:]), self.radio.patch_size) if self.crop > 0 else win_feats
        with prof.stage("scga"):
            _, c, h, w = feats.shape
            flat = feats.flatten(2).transpose(1, 2)
            agg = scga_reference(flat, tau=self.scga_tau).transpose(1, 2).reshape(1, c, h, w)
        with prof.stage("head"):
            lang = self.language_head(agg.flatten(2).transpose(1, 2))
            lang = lang.transpose(1, 2).reshape(1, -1, h, w)
            probs = class_probabilities(lang, text)
        with prof.stage("postprocess"):
            probs = denoise_prompts(upsample_probs(probs, orig_hw), self.denoise)
            labels = labels_from_probs(probs, self.prediction_thresh)
        prof.end_frame()
        return BaselineResult(probs=probs, labels=labels, features=feats, scga_features=agg)
