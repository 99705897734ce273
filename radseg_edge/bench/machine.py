"""Describe the machine a benchmark ran on, and measure its matrix-multiply rate.

Results compared across machines must carry :func:`describe_machine` (CPU model and threads, GPU,
library versions, date). :func:`matmul_rate` is the roofline the suite compares achieved FLOP/s with.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import time

import torch

from radseg_edge.utils.precision import BF16_CPU_FLAGS, cpu_flags

#: CPU flags worth reporting next to a CPU benchmark.
_REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", *BF16_CPU_FLAGS, "amx_int8", "avx512_fp16")

_PACKAGES = ("radseg-edge", "torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "triton")


def cpu_model() -> str:
    """The CPU's marketing name (``platform.processor()`` where /proc/cpuinfo has none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_gib() -> float | None:
    """Physical memory in GiB (None where /proc/meminfo is missing)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape performance (absent ones left out)."""
    out: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: other processes competing for the CPU make timings slower and noisier."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - Windows
        return None


def gpu_name() -> str | None:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def describe_machine() -> dict[str, object]:
    """A JSON-ready description: date (UTC), host OS, CPU model, cores, threads, flags, GPU, versions."""
    flags = cpu_flags()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": [f for f in _REPORTED_FLAGS if f in flags],
        "memory_gib": total_memory_gib(),
        "load_average": load_average(),
        "gpu": gpu_name(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "versions": package_versions(),
    }


def machine_line(machine: dict[str, object]) -> str:
    """One line for tables and Markdown headers."""
    gpu = machine.get("gpu") or "no GPU"
    versions = machine.get("versions", {})
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "radseg-edge")  # type: ignore[union-attr]
    load = machine.get("load_average")
    load_text = f"; load average {load[0]:.1f}" if load else ""
    return (
        f"{machine['cpu']} ({machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads), {gpu};"
        f" {libs}; {machine['date']}{load_text}"
    )


def matmul_rate(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", size: int = 1536, seconds: float = 0.5
) -> float:
    """Measured FLOP/s of a square ``size`` matrix product in ``dtype`` (the best of repeated runs).

    This is the practical peak that the backbone's achieved FLOP/s is compared with.
    """
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    flops = 2.0 * size**3
    best = float("inf")
    (a @ b)  # warm-up (kernel selection, page faults)
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return flops / best
