"""The benchmark suite: every candidate on every case, ratios against the naive baseline, one JSON document.

    doc = run_suite(BenchOptions(cases=[case_from_setting("voc20-mid")]))
    doc["cases"][0]["rows"]   # one row per candidate: latency p50/p90 per stage, memory, ratios, agreement

Candidates: ``baseline`` (:class:`NaiveRADSeg`, the reference's behaviour, eager fp32), ``pytorch`` (the
library's :class:`radseg_edge.RADSeg` with the chosen kernels, fp32 = the exact path; plus the chosen
reduced precision), and with ``formats`` every other backend/format available here (ONNX Runtime,
TensorRT, ...). Inputs are synthetic: a smooth random image and K class embeddings taken as
"prototypes" (the language features of K well-separated patches of the fp32 result), so that random
weights still give a label map with K regions whose agreement across formats is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from radseg_edge.bench import flops as flops_mod
from radseg_edge.bench.baseline import NaiveRADSeg
from radseg_edge.bench.machine import describe_machine, matmul_rate
from radseg_edge.bench.runner import (
    Candidate,
    PeakMemory,
    achieved_rates,
    compare_to_baseline,
    measure_all,
    parameters_per_part,
    random_text_embeddings,
    synthetic_image,
    trim_heap,
)
from radseg_edge.bench.settings import Workload, get_setting, workload
from radseg_edge.utils.precision import precision_supported
from radseg_edge.utils.profiling import StageProfiler

SCHEMA = "radseg-edge-bench/1"


@dataclass(frozen=True)
class BenchCase:
    """One image to benchmark: its size (after the protocol's resize), the window settings and K."""

    label: str
    image_hw: tuple[int, int]
    crop: int
    stride: int
    num_classes: int
    setting: str | None = None

    def workload(self) -> Workload:
        return workload(self.image_hw, self.crop, self.stride)


def case_from_setting(name: str) -> BenchCase:
    s = get_setting(name)
    return BenchCase(s.name, s.image_hw, s.crop, s.stride, s.num_classes, s.name)


def case_from_imgsz(image_hw: tuple[int, int], crop: int = 336, stride: int = 224, num_classes: int = 20) -> BenchCase:
    return BenchCase(f"{image_hw[0]}x{image_hw[1]}", image_hw, crop, stride, num_classes)


@dataclass
class BenchOptions:
    """What to benchmark. ``precision`` adds a reduced-precision PyTorch row next to the exact fp32 one."""

    cases: list[BenchCase]
    model: str = "c-radio_v3-b"
    checkpoint: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    kernels: str = "auto"
    window_batch: int | None = None  # windows per backbone call of the PyTorch path (None: RADSeg's default)
    runs: int = 3
    warmup: int = 1
    baseline: bool = True
    baseline_attention: str = "sdpa"
    formats: bool = False
    backends: list[str] | None = None  # None: pytorch only (all available ones with ``formats``)
    seed: int = 0
    matmul: bool = True
    scga_sweep: list[int] | None = None
    extra: dict = field(default_factory=dict)


def build_radio(options: BenchOptions):
    """The RADIO model: the checkpoint when given, else random weights of the exact architecture (no download)."""
    from radseg_edge.models import load_radio, radio_from_config
    from radseg_edge.models.configs import get_config

    if options.checkpoint:
        radio = load_radio(options.checkpoint, device=options.device)
        return radio, f"checkpoint {options.checkpoint}"
    lang = get_config(options.model).language_teacher()
    radio = radio_from_config(options.model, seed=options.seed, adaptors=[lang] if lang else None, device=options.device)
    return radio, f"random weights of {options.model} (seed {options.seed})"


def prototype_embeddings(language_features: Tensor, num_classes: int) -> Tensor:
    """K class embeddings = language features of K mutually far-apart patches (greedy farthest points).

    Args:
        language_features: 1 x D x h x w (the language head's output on the SCGA features).
    Returns:
        K x D unit-norm embeddings (K capped at h*w).
    """
    f = F.normalize(language_features[0].flatten(1).T.float(), dim=-1)  # N x D
    k = min(num_classes, f.shape[0])
    chosen = [int(torch.argmin(f @ f.mean(0)))]
    closest = f @ f[chosen[0]]
    for _ in range(1, k):
        nxt = int(torch.argmin(closest))
        chosen.append(nxt)
        closest = torch.maximum(closest, f @ f[nxt])
    return f[chosen].clone()


def _labels_of(fn: Callable[[], object]) -> Callable[[], Tensor]:
    def run() -> Tensor:
        return fn().labels

    return run


def _pytorch_candidate(radio, case: BenchCase, image: Tensor, text: Tensor, options: BenchOptions, precision: str) -> Candidate:
    from radseg_edge.pipeline import RADSeg

    prof = StageProfiler(device=options.device)
    seg = RADSeg(radio, crop=case.crop, stride=case.stride, kernels=options.kernels, precision=precision, profiler=prof,
                 window_batch=options.window_batch)
    notes = [f"kernels={seg.kernels_name}", f"window_batch={seg.windows_per_call or 'all'}"]
    return Candidate(
        name=f"pytorch {precision}",
        backend="pytorch",
        precision=precision,
        run=_labels_of(lambda: seg(image, text)),
        profiler=prof,
        device=options.device,
        notes=notes,
    )


def _baseline_candidate(radio, case: BenchCase, image: Tensor, text: Tensor, options: BenchOptions) -> Candidate:
    prof = StageProfiler(device=options.device)
    naive = NaiveRADSeg(radio, crop=case.crop, stride=case.stride, attention=options.baseline_attention, profiler=prof)
    return Candidate(
        name="baseline fp32",
        backend="baseline",
        precision="fp32",
        run=_labels_of(lambda: naive(image, text)),
        profiler=prof,
        device=options.device,
        notes=[f"reference behaviour, eager fp32, attention={options.baseline_attention}"],
    )


def _reduced_precisions(options: BenchOptions) -> list[str]:
    """Reduced precisions to add as PyTorch rows (the requested one; with formats, every worthwhile one)."""
    wanted = [options.precision] if options.precision != "fp32" else []
    if options.formats:
        wanted += [p for p in ("bf16", "fp16") if p not in wanted]
    return [p for p in wanted if precision_supported(p, options.device)[0] or p == options.precision]


def _case_candidates(radio, case, image, text, options, parameters, skipped: list[str]) -> list[Candidate]:
    from radseg_edge.bench.formats import format_candidates

    cands: list[Candidate] = []
    if options.baseline:
        cands.append(_baseline_candidate(radio, case, image, text, options))
    cands.append(_pytorch_candidate(radio, case, image, text, options, "fp32"))
    for p in _reduced_precisions(options):
        ok, reason = precision_supported(p, options.device)
        if not ok:
            skipped.append(f"pytorch {p}: {reason}")
            continue
        cands.append(_pytorch_candidate(radio, case, image, text, options, p))
    if options.formats or options.backends:
        more, why = format_candidates(radio, case, image, text, options)
        cands += more
        skipped += why
    for c in cands:
        if c.parameters is None:
            c.parameters = parameters
    return cands


def make_inputs(radio, case: BenchCase, options: BenchOptions) -> tuple[Tensor, Tensor]:
    """The synthetic image (1 x 3 x H x W in [0,1]) and K prototype class embeddings for ``case``."""
    from radseg_edge.pipeline import RADSeg

    image = synthetic_image(*case.image_hw, seed=options.seed).to(options.device)
    seg = RADSeg(radio, crop=case.crop, stride=case.stride, kernels=options.kernels, denoise=0.0)
    dim = seg.embedding_dim
    res = seg(image, random_text_embeddings(case.num_classes, dim, options.seed).to(options.device))
    with torch.inference_mode():
        text = prototype_embeddings(seg.language_features(res.scga_features), case.num_classes)
    return image, text


def scga_memory_sweep(ns: list[int], channels: int, kernels: str, device: str = "cpu", seed: int = 0) -> list[dict]:
    """Working memory (bytes above the input) and time of SCGA at each N: reference vs the chosen kernels."""
    import time

    from radseg_edge.core.scga import scga_reference
    from radseg_edge.kernels.dispatch import get_ops

    ops = get_ops(kernels, device)
    out = []
    gen = torch.Generator().manual_seed(seed)
    for n in sorted(set(ns)):
        x = torch.randn(1, n, channels, generator=gen).to(device)
        row: dict[str, object] = {"n": n, "channels": channels, "kernels": ops.name,
                                  "nxn_fp32_bytes": flops_mod.scga_matrix_bytes(n)}
        for name, fn in (("reference", scga_reference), ("optimized", ops.scga)):
            trim_heap()
            with torch.inference_mode(), PeakMemory(device) as mem:
                t0 = time.perf_counter()
                y = fn(x, 10.0)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1e3
            del y
            row[f"{name}_extra_bytes"] = mem.extra_bytes
            row[f"{name}_ms"] = ms
        out.append(row)
    return out


def matmul_rates(options: BenchOptions) -> dict[str, float]:
    """This machine's matrix-multiply FLOP/s now, in fp32 and each reduced precision worth using here."""
    rates = {"fp32": matmul_rate(torch.float32, options.device)}
    for p in ("bf16", "fp16"):
        if precision_supported(p, options.device)[0]:
            rates[p] = matmul_rate(PRECISION_DTYPES[p], options.device)
    return rates


def fill_achieved(doc: dict) -> None:
    """(Re)compute every row's achieved FLOP/s from its case's FLOPs and the matmul rates measured around
    that case (the document's best rates for cases without their own)."""
    for case in doc["cases"]:
        rates = case.get("matmul_flops_per_s") or doc.get("matmul_flops_per_s") or {}
        for row in case["rows"]:
            row["achieved"] = achieved_rates(row, case["flops"], rates)


def run_suite(options: BenchOptions, log: Callable[[str], None] = print) -> dict:
    """Run every case; return the JSON-ready document (see module docstring)."""
    machine = describe_machine()
    radio, weights = build_radio(options)
    shape = flops_mod.BackboneShape.from_model(radio)
    head_shapes = flops_mod.linear_shapes(radio.heads[radio.language_adaptor].summary_head)
    parameters = parameters_per_part(radio)
    doc: dict = {
        "schema": SCHEMA,
        "machine": machine,
        "model": {"name": radio.config.name, "weights": weights, "parameters": parameters, "shape": asdict(shape)},
        "options": {
            k: v for k, v in asdict(options).items() if k not in ("cases", "extra")
        },
        "matmul_flops_per_s": {},
        "cases": [],
        "skipped": [],
    }
    for case in options.cases:
        wl = case.workload()
        log(f"{case.label}: {wl.image_hw[0]}x{wl.image_hw[1]}, crop {case.crop}/{case.stride}, "
            f"{wl.windows} windows, SCGA N={wl.scga_tokens}")
        fl = flops_mod.pipeline_flops(shape, wl, head_shapes, case.num_classes)
        image, text = make_inputs(radio, case, options)
        skipped: list[str] = []
        cands = _case_candidates(radio, case, image, text, options, parameters, skipped)
        rates = matmul_rates(options) if options.matmul else {}
        try:
            rows = measure_all(cands, runs=options.runs, warmup=options.warmup, log=log)
            if options.matmul:  # the better of before and after: a busy machine slows both measurements
                rates = {k: max(v, rates.get(k, 0.0)) for k, v in matmul_rates(options).items()}
        finally:
            for c in cands:
                if c.cleanup is not None:
                    c.cleanup()
        baseline = next((r for r in rows if r.backend == "baseline"), None)
        reference = next((r for r in rows if r.backend == "pytorch" and r.precision == "fp32"), baseline)
        compare_to_baseline(rows, baseline, reference)
        doc["cases"].append({
            "label": case.label,
            "setting": case.setting,
            "image_hw": list(case.image_hw),
            "crop": case.crop,
            "stride": case.stride,
            "num_classes": case.num_classes,
            "workload": {**asdict(wl), "window_patches": wl.window_patches, "scga_tokens": wl.scga_tokens},
            "flops": fl.as_dict(),
            "rows": [r.as_dict() for r in rows],
            "matmul_flops_per_s": rates,
        })
        for k, v in rates.items():
            doc["matmul_flops_per_s"][k] = max(v, doc["matmul_flops_per_s"].get(k, 0.0))
        fill_achieved(doc)
        doc["skipped"] += [s for s in skipped if s not in doc["skipped"]]
        for line in skipped:
            log(f"  skipped {line}")
        del rows, cands
        trim_heap()
    if options.scga_sweep:
        doc["scga_memory"] = scga_memory_sweep(options.scga_sweep, shape.embed_dim, options.kernels, options.device)
    return doc


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def rows_of(doc: dict, case_label: str | None = None) -> list[dict]:
    """All rows of the document (of one case when ``case_label`` is given)."""
    return [r for c in doc["cases"] if case_label in (None, c["label"]) for r in c["rows"]]
