"""Reduced-precision policy of the PyTorch path: ``precision="fp32" | "bf16" | "fp16"``.

bf16 autocast pays off on GPUs with bf16 support and on CPUs with AVX-512 BF16 or AMX (oneDNN then
runs bf16 matrix products several times faster than fp32) or, on aarch64, the Armv8.6 BF16 extension;
on other CPUs it is emulated and slower, so it is refused. The CPU check honours oneDNN's own ISA cap,
``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``): with ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN
never uses the bf16 instructions, so bf16 is refused exactly as on an AVX2-only CPU. The same variable
therefore lets a machine with AVX-512 BF16 run the refusal paths (the tests do).
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
import os
from collections.abc import Iterator

import torch

from radseg_edge.errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: /proc/cpuinfo flags that give fast bf16 matrix products: x86 AVX-512 BF16 dot products and AMX tiles,
#: aarch64 BF16 (Armv8.6 BFDOT/BFMMLA, e.g. Neoverse V1/V2).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

#: Environment variables naming oneDNN's highest allowed x86 ISA (oneDNN reads the first that is set).
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")

#: oneDNN ISA cap -> the bf16 flags it still lets oneDNN use. Caps not listed (SSE41, AVX, AVX2, AVX2_VNNI,
#: AVX2_VNNI_2, AVX512_CORE, AVX512_CORE_VNNI) allow none; DEFAULT / ALL allow every flag.
_ISA_CAP_BF16 = {
    "AVX512_CORE_BF16": ("avx512_bf16",),
    "AVX512_CORE_FP16": ("avx512_bf16",),
    "AVX10_1_512": ("avx512_bf16",),
    "AVX512_CORE_AMX": ("avx512_bf16", "amx_bf16"),
    "AVX512_CORE_AMX_FP16": ("avx512_bf16", "amx_bf16"),
    "AVX10_1_512_AMX": ("avx512_bf16", "amx_bf16"),
    "AVX10_1_512_AMX_FP16": ("avx512_bf16", "amx_bf16"),
}
_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def isa_cap() -> tuple[str, str] | None:
    """(variable, value) of oneDNN's ISA cap when one is set (``ONEDNN_MAX_CPU_ISA=AVX2``), else None."""
    for name in ISA_CAP_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value.upper()
    return None


def usable_cpu_flags(flags: frozenset[str] | None = None) -> frozenset[str]:
    """The CPU flags oneDNN may use: ``flags`` (default: this CPU's) less the x86 bf16 flags that
    ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` rule out (e.g. ``AVX2`` hides avx512_bf16 and amx_bf16)."""
    flags = cpu_flags() if flags is None else flags
    cap = isa_cap()
    if cap is None or cap[1] in ("DEFAULT", "ALL"):
        return flags
    allowed = _ISA_CAP_BF16.get(cap[1], ())
    return frozenset(f for f in flags if f not in _X86_BF16_FLAGS or f in allowed)


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX-512 BF16, AMX-BF16 or aarch64 BF16) and
    oneDNN's ISA cap, if set, lets it use them."""
    flags = usable_cpu_flags(flags)
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
            cap = isa_cap()
            if cap is not None and any(f in cpu_flags() for f in BF16_CPU_FLAGS):
                return False, (f"{cap[0]}={cap[1]} keeps oneDNN off this CPU's bf16 instructions, so bf16 would be "
                               "emulated and slower than fp32")
            return False, ("this CPU has neither AVX-512 BF16 nor AMX (nor aarch64 BF16), so bf16 would be emulated "
                           "and slower than fp32")
        usable = usable_cpu_flags()
        return True, "bf16 autocast (this CPU has " + " and ".join(f for f in BF16_CPU_FLAGS if f in usable) + ")"
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
