"""Self-Correlating Global Aggregation (SCGA), reference implementation.

For the stitched feature map F (N x C per image, N = all patches):
    F^ = row-normalised F;  S = F^ F^^T;  m = mean(S)  (one scalar per image)
    S' = (S - m) * tau;  S' < 0 -> -inf;  F_out = softmax(S') F      (F un-normalised)

This materialises N x N and is the ground truth for the blocked / Triton / CUDA kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def scga_reference(features: Tensor, tau: float = 10.0, batch_mean: bool = False) -> Tensor:
    """SCGA over all tokens of each image.

    Args:
        features: B x N x C stitched patch features (fp32).
        tau: SCGA temperature (``scga_tau``; 10 in the paper).
        batch_mean: take the threshold ``m`` over the whole B x N x N tensor, as the official code
            does for a batch (a defect: images then influence each other). Only for parity checks.
    Returns:
        B x N x C aggregated features.
    """
    t = F.normalize(features, dim=-1)
    sim = t @ t.transpose(-2, -1)
    mean = sim.mean() if batch_mean else sim.mean(dim=(-2, -1), keepdim=True)
    sim = (sim - mean) * tau
    sim = sim.masked_fill(sim < 0, float("-inf"))
    return torch.softmax(sim, dim=-1) @ features


def scga_threshold(features: Tensor) -> Tensor:
    """The SCGA threshold m = mean of all cosine similarities, in O(N*C): ||sum_i F^_i||^2 / N^2.

    Args:
        features: B x N x C.
    Returns:
        B x 1 x 1 fp32.
    """
    t = F.normalize(features.float(), dim=-1)
    s = t.sum(dim=1)
    n = features.shape[1]
    return (s * s).sum(dim=-1).reshape(-1, 1, 1) / float(n * n)
