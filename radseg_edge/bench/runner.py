"""Measure one pipeline ("candidate"): warm-up, repeated runs, per-stage p50/p90, peak memory, labels.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on CPU the resident-set
high-water mark (VmHWM of /proc/self/status), reset before the runs by writing 5 to
/proc/self/clear_refs. ``extra_bytes`` = peak minus the memory in use just before the runs (the model
and inputs already loaded), i.e. the working memory of one inference; that is what ratios compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radseg_edge.utils.profiling import StageProfiler

_STATUS = "/proc/self/status"


def _status_kib(field_name: str) -> int | None:
    try:
        with open(_STATUS, encoding="utf-8") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux). False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):  # pragma: no cover - non-POSIX
        return None


class PeakMemory:
    """Context manager: peak memory of the enclosed code (``kind``: "cuda", "rss" or "rss-lifetime")."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.kind = "cuda" if self.device.type == "cuda" else "rss"
        self.base_bytes: int | None = None
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_bytes = torch.cuda.memory_allocated(self.device)
        else:
            if not reset_rss_peak():
                self.kind = "rss-lifetime"  # cannot reset: the peak then covers the whole process
            self.base_bytes = current_rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak_bytes = rss_peak_bytes()

    @property
    def extra_bytes(self) -> int | None:
        if self.peak_bytes is None or self.base_bytes is None:
            return None
        return max(self.peak_bytes - self.base_bytes, 0)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "base_bytes": self.base_bytes, "peak_bytes": self.peak_bytes, "extra_bytes": self.extra_bytes}


def count_parameters(module: nn.Module | None, exclude: nn.Module | None = None) -> int:
    """Parameters of ``module`` that are not also parameters of ``exclude`` (shared ones counted once)."""
    if module is None:
        return 0
    skip = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


def parameters_per_part(radio: nn.Module, sam: nn.Module | None = None) -> dict[str, int | None]:
    """Parameters of the parts the pipeline runs: backbone, language head, and the SAM path when ``sam``
    (RADSeg+'s refiner: SAM neck, prompt encoder, mask decoder) is given, with RADIO's ``sam`` feature head.

    The text tower is not part of inference (class embeddings come from a vocabulary file): reported as
    None. ``total`` sums the parts that run.
    """
    counts = radio.parameter_counts()
    lang = radio.language_adaptor
    parts: dict[str, int | None] = {
        "backbone": counts["backbone"],
        "language_head": counts.get(f"head:{lang}:summary", 0),
    }
    if sam is not None:
        parts["sam_path"] = counts.get("head:sam:feature", 0) + count_parameters(sam, exclude=radio)
    parts["total"] = sum(v for v in parts.values() if v)
    parts["text_tower"] = None
    return parts


def synthetic_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A smooth random RGB image, 1 x 3 x H x W in [0,1] (blobs of colour, like a photo's regions).

    Values are multiples of 1/255, so the uint8 frame that exported graphs take is the same image exactly.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 48), max(2, width // 48), generator=gen)
    img = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    img = img + 0.03 * torch.randn(1, 3, height, width, generator=gen)
    return (img.clamp(0, 1) * 255).round() / 255


def random_text_embeddings(num_classes: int, dim: int, seed: int = 0) -> Tensor:
    """K x D unit-norm random class embeddings (stand-ins for a vocabulary's)."""
    gen = torch.Generator().manual_seed(seed + 1)
    return F.normalize(torch.randn(num_classes, dim, generator=gen), dim=-1)


@dataclass
class Candidate:
    """One way of running the pipeline on the benchmark's image.

    ``run()`` returns the 1 x H x W labels; ``profiler`` (if any) is the one the pipeline records its stages in.
    """

    name: str
    backend: str
    precision: str
    run: Callable[[], Tensor]
    profiler: StageProfiler | None = None
    parameters: dict[str, int | None] | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None  # called once the candidate has been measured


@dataclass
class Measurement:
    """What :func:`measure` found for one candidate (times in ms, memory in bytes)."""

    name: str
    backend: str
    precision: str
    device: str
    runs: int
    total: dict[str, float]
    stages: dict[str, dict[str, float]]
    memory: dict[str, object]
    parameters: dict[str, int | None] | None
    notes: list[str]
    labels: Tensor | None = None
    # filled in by the suite once every candidate ran:
    speedup: float | None = None
    memory_ratio: float | None = None
    agreement: float | None = None
    achieved: dict[str, float] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return self.total["p50_ms"]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "runs": self.runs,
            "latency_ms": self.total,
            "stages_ms": self.stages,
            "memory": self.memory,
            "parameters": self.parameters,
            "speedup_vs_baseline": self.speedup,
            "memory_ratio_vs_baseline": self.memory_ratio,
            "label_agreement": self.agreement,
            "achieved": self.achieved,
            "notes": self.notes,
        }


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "min_ms": float(arr.min()),
        "mean_ms": float(arr.mean()),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), so that RSS counts live memory only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class _Record:
    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.times: list[float] = []
        self.peaks: list[PeakMemory] = []
        self.labels: Tensor | None = None

    def run_once(self) -> None:
        c = self.candidate
        trim_heap()
        with PeakMemory(c.device) as mem:
            t0 = time.perf_counter()
            out = c.run()
            _sync(c.device)
            self.times.append((time.perf_counter() - t0) * 1e3)
        self.peaks.append(mem)
        if self.labels is None:
            self.labels = out.detach().cpu() if isinstance(out, Tensor) else torch.as_tensor(np.asarray(out))

    def memory(self) -> dict[str, object]:
        worst = max(self.peaks, key=lambda m: m.extra_bytes or 0)
        return worst.as_dict()

    def result(self) -> Measurement:
        c = self.candidate
        stages = c.profiler.summary() if c.profiler is not None else {}
        stages = {k: {m: v[m] for m in ("p50_ms", "p90_ms", "mean_ms") if m in v} for k, v in stages.items()}
        return Measurement(
            name=c.name,
            backend=c.backend,
            precision=c.precision,
            device=c.device,
            runs=len(self.times),
            total=_percentiles(self.times),
            stages=stages,
            memory=self.memory(),
            parameters=c.parameters,
            notes=list(c.notes),
            labels=self.labels,
        )


def measure_all(
    candidates: list[Candidate], runs: int = 3, warmup: int = 1, log: Callable[[str], None] | None = None
) -> list[Measurement]:
    """Warm every candidate up, then time them INTERLEAVED (round r runs each candidate once, the order
    rotating from round to round), so that background load on a shared machine hits all of them alike. Peak memory is taken per call (the worst
    call counts); the labels are those of the first timed call."""
    records = [_Record(c) for c in candidates]
    for rec in records:
        for _ in range(max(0, warmup)):
            rec.candidate.run()
        _sync(rec.candidate.device)
        if rec.candidate.profiler is not None:
            rec.candidate.profiler.reset()
    for r in range(max(1, runs)):
        k = r % len(records)  # rotate the order, so that no candidate always runs first
        for rec in records[k:] + records[:k]:
            rec.run_once()
            if log is not None:
                log(f"  run {r + 1}/{runs} {rec.candidate.name}: {rec.times[-1]:.0f} ms")
    return [rec.result() for rec in records]


def measure(candidate: Candidate, runs: int = 3, warmup: int = 1) -> Measurement:
    """:func:`measure_all` for one candidate."""
    return measure_all([candidate], runs, warmup)[0]


def label_agreement(labels: Tensor, reference: Tensor) -> float:
    """Fraction of pixels with the same label (shapes must match)."""
    if labels.shape != reference.shape:
        raise ValueError(f"label maps differ in shape: {tuple(labels.shape)} vs {tuple(reference.shape)}")
    return float((labels.reshape(-1).long() == reference.reshape(-1).long()).float().mean())


def compare_to_baseline(rows: list[Measurement], baseline: Measurement | None, reference: Measurement | None) -> None:
    """Fill speedup and memory ratio (vs ``baseline``) and label agreement (vs ``reference``) in place."""
    for row in rows:
        if baseline is not None and row.p50_ms > 0:
            row.speedup = baseline.p50_ms / row.p50_ms
            base_extra, extra = baseline.memory.get("extra_bytes"), row.memory.get("extra_bytes")
            if base_extra and extra is not None and row.memory.get("kind") == baseline.memory.get("kind"):
                row.memory_ratio = float(extra) / float(base_extra)
        if reference is not None and row.labels is not None and reference.labels is not None:
            row.agreement = label_agreement(row.labels, reference.labels)


def achieved_rates(row: dict, flops: dict[str, int], matmul: dict[str, float]) -> dict[str, float]:
    """Achieved FLOP/s (total and per stage) of a row (:meth:`Measurement.as_dict`) and the backbone's
    fraction of the measured matmul rate of the row's precision (fp32's for int8 and unknown ones)."""
    out: dict[str, float] = {}
    p50 = row["latency_ms"]["p50_ms"]
    if p50 > 0:
        out["total_flops_per_s"] = flops["total"] / (p50 / 1e3)
    for stage in ("backbone", "scga", "head"):
        ms = row["stages_ms"].get(stage, {}).get("p50_ms")
        if ms:
            out[f"{stage}_flops_per_s"] = flops[stage] / (ms / 1e3)
    rate = matmul.get(row["precision"]) or matmul.get("fp32")
    if rate and "backbone_flops_per_s" in out:
        out["backbone_fraction_of_matmul"] = out["backbone_flops_per_s"] / rate
    return out
