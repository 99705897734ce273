"""Choose the SCRA/SCGA implementation for a device.

``get_ops(name, device)`` returns a :class:`KernelOps` whose ``scga(features, tau)`` (B x N x C ->
B x N x C, per-image threshold) and ``scra(x, qkv_w, qkv_b, proj_w, proj_b, num_heads, tau)``
(B x N x C -> B x N x C) have the reference operators' semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference
from radseg_edge.errors import InputError


@dataclass(frozen=True)
class KernelOps:
    """One implementation of the two RADSeg operators."""

    name: str
    scga: Callable[..., torch.Tensor]
    scra: Callable[..., torch.Tensor]


def _reference() -> KernelOps:
    return KernelOps("reference", scga_reference, scra_attention_reference)


_FACTORIES: dict[str, Callable[[], KernelOps]] = {"reference": _reference}


def available_kernels(device: torch.device | str = "cpu") -> list[str]:
    """Names of the implementations usable on ``device``, best first."""
    return ["reference"]


def get_ops(name: str = "auto", device: torch.device | str = "cpu") -> KernelOps:
    """The implementation called ``name`` ("auto": the best available on ``device``)."""
    names = available_kernels(device)
    if name == "auto":
        name = names[0]
    if name not in _FACTORIES:
        raise InputError(f"unknown kernels '{name}'; choose one of: auto, {', '.join(sorted(_FACTORIES))}")
    if name not in names:
        raise InputError(f"kernels '{name}' are not available on {device}; available here: {', '.join(names)}")
    return _FACTORIES[name]()
