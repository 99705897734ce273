"""Reduced-precision policy of the PyTorch path: ``precision="fp32" | "bf16" | "fp16"``.

bf16 autocast pays off on GPUs with bf16 support and on CPUs with AVX-512 BF16 or AMX (oneDNN then
runs bf16 matrix products several times faster than fp32); on other CPUs it is emulated and slower.
fp16 is for GPUs only. Numerically sensitive steps stay fp32 whatever the precision: SCGA statistics
(normalisation, the mean threshold, the masked softmax), every softmax, the final cosine and the
probabilities. Wrap them in :func:`fp32_region` and cast their inputs with ``.float()``.

    with autocast(dtype, device):          # backbone, language head
        feats = radio.forward_spatial(x)
    with fp32_region(device):              # SCGA, cosine, probabilities
        feats = scga(feats.float(), tau)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from radseg_edge.errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: /proc/cpuinfo flags that give fast bf16 matrix products on x86 (AVX-512 BF16 dot products, AMX tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def precision_supported(precision: str, device: torch.device | str) -> tuple[bool, str]:
    """Whether ``precision`` is worth using on ``device``, and a one-line reason."""
    device = torch.device(device)
    if precision not in _DTYPES:
        return False, f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}"
    if precision == "fp32":
        return True, "fp32 is exact"
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return False, "this GPU has no bf16 support; use fp16"
        return True, f"{precision} autocast on {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        if precision == "fp16":
            return False, "fp16 is for GPUs; on CPUs use bf16 (with AVX-512 BF16 or AMX) or fp32"
        if not cpu_has_fast_bf16():
            return False, "this CPU has neither AVX-512 BF16 nor AMX, so bf16 would be emulated and slower than fp32"
        return True, "bf16 autocast (this CPU has " + " and ".join(f for f in BF16_CPU_FLAGS if f in cpu_flags()) + ")"
    return False, f"reduced precision is not supported on device type '{device.type}'"


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device``; raise InputError when it is not worth it there."""
    ok, reason = precision_supported(precision, device)
    if not ok:
        raise InputError(f"precision '{precision}' on {torch.device(device)}: {reason}")
    return _DTYPES[precision]


def best_precision(device: torch.device | str) -> str:
    """The fastest precision worth using on ``device`` ("bf16" where it is native, else "fp32")."""
    return "bf16" if precision_supported("bf16", device)[0] else "fp32"


@contextlib.contextmanager
def autocast(dtype: torch.dtype, device: torch.device | str) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device`` (a no-op for fp32)."""
    device = torch.device(device)
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def fp32_region(device: torch.device | str) -> Iterator[None]:
    """Disable autocast inside (SCGA statistics, softmax, cosine). Cast the inputs with ``.float()``."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        yield
