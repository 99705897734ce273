"""Choose the SCRA/SCGA implementation for a device.

``get_ops(name, device)`` returns a :class:`KernelOps` whose ``scga(features, tau)`` (B x N x C ->
B x N x C, per-image threshold) and ``scra(x, qkv_w, qkv_b, proj_w, proj_b, num_heads, tau)``
(B x N x C -> B x N x C) have the reference operators' semantics.

Implementations, best first:

- ``cuda``: CUDA C++ kernels as a PyTorch extension (CUDA devices; built on first use).
- ``triton``: Triton flash-attention-style kernels (CUDA devices; CPU with ``TRITON_INTERPRET=1``).
- ``blocked``: plain PyTorch over query blocks, O(block * N) memory (any device; the CPU default).
- ``reference``: the plain-PyTorch operators of :mod:`radseg_edge.core` (N x N memory).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference
from radseg_edge.errors import InputError

KERNEL_NAMES = ("cuda", "triton", "blocked", "reference")


@dataclass(frozen=True)
class KernelOps:
    """One implementation of the two RADSeg operators."""

    name: str
    scga: Callable[..., torch.Tensor]
    scra: Callable[..., torch.Tensor]


def _reference() -> KernelOps:
    return KernelOps("reference", scga_reference, scra_attention_reference)


def _blocked() -> KernelOps:
    from radseg_edge.kernels.blocked import scga_blocked, scra_blocked

    return KernelOps("blocked", scga_blocked, scra_blocked)


def _triton() -> KernelOps:
    from radseg_edge.kernels.triton_ops import scga_triton, scra_triton

    return KernelOps("triton", scga_triton, scra_triton)


def _cuda() -> KernelOps:
    from radseg_edge.kernels.cuda_ops import load_extension, scga_cuda, scra_cuda

    load_extension()  # build now, so that a failure shows at selection time
    return KernelOps("cuda", scga_cuda, scra_cuda)


_FACTORIES: dict[str, Callable[[], KernelOps]] = {
    "reference": _reference,
    "blocked": _blocked,
    "triton": _triton,
    "cuda": _cuda,
}


def triton_interpreted() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(name: str, device: torch.device | str = "cpu") -> str | None:
    """Why implementation ``name`` cannot run on ``device``; None when it can."""
    device = torch.device(device)
    if name in ("reference", "blocked"):
        return None
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed: pip install 'radseg-edge[kernels]'"
        if device.type == "cuda" and torch.cuda.is_available():
            return None
        if device.type == "cpu" and triton_interpreted():
            return None
        return "triton kernels need a CUDA device (or TRITON_INTERPRET=1 for testing)"
    if name == "cuda":
        from radseg_edge.kernels.cuda_ops import unavailable_reason as cuda_reason

        return cuda_reason(device)
    return f"unknown kernels '{name}'; choose one of: auto, {', '.join(KERNEL_NAMES)}"


def available_kernels(device: torch.device | str = "cpu") -> list[str]:
    """Names of the implementations usable on ``device``, best first (on CPU: blocked first)."""
    device = torch.device(device)
    order = KERNEL_NAMES if device.type == "cuda" else ("blocked", "reference", "triton")
    return [name for name in order if unavailable_reason(name, device) is None]


def get_ops(name: str = "auto", device: torch.device | str = "cpu") -> KernelOps:
    """The implementation called ``name`` ("auto": the best one that works on ``device``).

    Raises:
        InputError: unknown name, or the implementation is unavailable on ``device`` (says why).
    """
    if name == "auto":
        failures = []
        for candidate in available_kernels(device):
            try:
                return _FACTORIES[candidate]()
            except InputError as exc:  # e.g. the CUDA extension failed to build: fall back
                failures.append(str(exc))
        raise InputError(f"no SCRA/SCGA implementation works on {device}: {'; '.join(failures)}")
    if name not in _FACTORIES:
        raise InputError(f"unknown kernels '{name}'; choose one of: auto, {', '.join(KERNEL_NAMES)}")
    reason = unavailable_reason(name, device)
    if reason is not None:
        raise InputError(f"kernels '{name}' are not available on {device}: {reason}")
    return _FACTORIES[name]()
