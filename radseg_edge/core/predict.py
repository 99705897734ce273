"""From language-aligned features to class probabilities and labels (RADSEG.md, "Language alignment")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: label value of pixels below the prediction threshold in :func:`labels_from_probs`.
IGNORE_INDEX = -1

#: the reference's logit scale: softmax over classes of 100 * cos(f, t).
LOGIT_SCALE = 100.0


def class_probabilities(features: Tensor, text_embeddings: Tensor, logit_scale: float = LOGIT_SCALE) -> Tensor:
    """softmax_k(100 * cos(f, t_k)).

    Args:
        features: B x D x h x w language-aligned features.
        text_embeddings: K x D class embeddings (any norm; normalised here).
    Returns:
        B x K x h x w probabilities, fp32.
    """
    f = F.normalize(features.float(), dim=1)
    t = F.normalize(text_embeddings.float(), dim=-1)
    logits = torch.einsum("bdhw,kd->bkhw", f, t) * logit_scale
    return torch.softmax(logits, dim=1)


def upsample_probs(probs: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (align_corners=False) of B x K x h x w to B x K x H x W.

    The result is in channels-last memory layout (values as usual; call ``.contiguous()`` if a caller needs
    NCHW strides): converting back would cost one more full-resolution copy.
    """
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    # channels-last, as in the reference: CPU bilinear rounds differently per memory layout (1 ulp), and
    # RADSeg+ point prompts (first maximum among near-ties) depend on that ulp. Bitwise equal to every fixture.
    x = probs.contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def class_maxima(probs: Tensor) -> Tensor:
    """Per image and class, the maximum probability over all pixels: B x K x H x W -> B x K."""
    return probs.flatten(2).amax(dim=-1)


def denoise_prompts(probs: Tensor, threshold: float = 0.5, inplace: bool = False) -> Tensor:
    """Prompt denoising, per image: a class whose maximum over the image is < ``threshold`` gets 0 everywhere.

    Args:
        probs: B x K x H x W.
        inplace: zero the classes in ``probs`` itself (saves a full-resolution copy).
    Returns:
        B x K x H x W (``probs`` itself when ``inplace``, else a new tensor).
    """
    if threshold <= 0:
        return probs
    keep = (class_maxima(probs) >= threshold).to(probs.dtype)[:, :, None, None]
    return probs.mul_(keep) if inplace else probs * keep


def labels_from_probs(probs: Tensor, prediction_thresh: float = 0.0) -> Tensor:
    """Argmax over classes; pixels whose maximum probability is below ``prediction_thresh`` get IGNORE_INDEX.

    Args:
        probs: B x K x H x W.
    Returns:
        B x H x W int64 class indices (0-based), IGNORE_INDEX where below the threshold.
    """
    max_prob, labels = probs.max(dim=1)
    if prediction_thresh > 0:
        labels = labels.masked_fill(max_prob < prediction_thresh, IGNORE_INDEX)
    return labels


def probabilities_and_labels(
    lowres: Tensor, size: tuple[int, int], denoise: float = 0.5, prediction_thresh: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The prediction tail shared by every backend: upsample, prompt denoising, labels.

    Args:
        lowres: B x K x h x w probabilities on the patch grid (left unchanged).
        size: (H, W) of the output.
    Returns:
        (B x K x H x W probabilities, B x H x W int64 labels).
    """
    probs = upsample_probs(lowres, size)
    probs = denoise_prompts(probs, denoise, inplace=probs is not lowres)
    return probs, labels_from_probs(probs, prediction_thresh)
