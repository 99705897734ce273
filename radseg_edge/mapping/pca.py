"""PCA feature reduction for the voxel map (RayFronts' Orin preset: 128 dimensions).

The projection is affine, so averaging reduced features over a voxel and then reconstructing gives exactly
the reconstruction of the averaged full features: z = (f - mu) V^T, f^ = mu + z V (V: k x C, orthonormal rows).
"""

from __future__ import annotations

import torch
from torch import Tensor

from radseg_edge.errors import InputError


class FeaturePCA:
    """Mean ``mean`` (C) and principal directions ``components`` (k x C, orthonormal rows, by variance)."""

    def __init__(self, mean: Tensor, components: Tensor) -> None:
        if mean.dim() != 1 or components.dim() != 2 or components.shape[1] != mean.shape[0]:
            raise InputError(f"PCA needs a C mean and k x C components, got {tuple(mean.shape)} and {tuple(components.shape)}")
        self.mean = mean.float()
        self.components = components.float()

    @property
    def in_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, samples: Tensor, dims: int) -> FeaturePCA:
        """Fit on N x C samples (fp64 covariance eigendecomposition); keeps min(dims, C) directions."""
        if samples.dim() != 2 or samples.shape[0] < 2:
            raise InputError(f"PCA needs at least 2 samples of N x C features, got shape {tuple(samples.shape)}")
        if dims < 1:
            raise InputError(f"PCA dimensions must be >= 1, got {dims}")
        x = samples.double()
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / (x.shape[0] - 1)
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        k = min(int(dims), x.shape[1])
        comps = vecs[:, -k:].flip(1).T.contiguous()
        # a deterministic sign per direction: largest-magnitude entry positive
        idx = comps.abs().argmax(dim=1)
        comps = comps * torch.sign(comps.gather(1, idx[:, None]))
        return cls(mean.float().to(samples.device), comps.float().to(samples.device))

    def to(self, device) -> FeaturePCA:
        return FeaturePCA(self.mean.to(device), self.components.to(device))

    def transform(self, features: Tensor) -> Tensor:
        """N x C -> N x k."""
        return (features.float() - self.mean) @ self.components.T

    def inverse(self, reduced: Tensor) -> Tensor:
        """N x k -> N x C (the reconstruction mu + z V)."""
        return reduced.float() @ self.components + self.mean
