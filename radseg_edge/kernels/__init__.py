"""Fused and memory-bounded implementations of the SCRA and SCGA operators, and their dispatch.

The plain-PyTorch operators in :mod:`radseg_edge.core` are the reference; every implementation
here is tested against them. :func:`get_ops` picks one by name ("auto" = best available).
"""

from radseg_edge.kernels.dispatch import KernelOps, available_kernels, get_ops

__all__ = ["KernelOps", "available_kernels", "get_ops"]
