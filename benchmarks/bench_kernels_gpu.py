"""SCGA implementations on a GPU: time and peak memory vs the reference and vs torch SDPA with a mask.

For each dtype (fp32, fp16) and N (1k, 4k, 14k; C = 768) every implementation runs on the same
features. "sdpa_mask" is torch's scaled_dot_product_attention with a precomputed N x N boolean
mask (softmax is shift-invariant, so scale = tau and mask = similarity >= m give SCGA). Peak memory
is torch.cuda.max_memory_allocated above the inputs; time is the median of CUDA-synchronised runs.
Ratios are against the reference in the same dtype. Saves benchmarks/results/kernels_gpu.{json,md}.

    python -m benchmarks.bench_kernels_gpu [--sizes 1024 4096 14112] [--impls reference sdpa_mask triton cuda]
    python -m benchmarks.bench_kernels_gpu --device cpu --sizes 256 --impls reference sdpa_mask blocked  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def scga_sdpa_mask(features: torch.Tensor, tau: float = 10.0) -> torch.Tensor:
    """SCGA through torch SDPA with an N x N boolean mask (materialises the similarity once)."""
    from radseg_edge.core.scga import scga_threshold

    t = F.normalize(features.float(), dim=-1)
    mask = (t @ t.transpose(-2, -1)) >= scga_threshold(features)
    t = t.to(features.dtype)
    return F.scaled_dot_product_attention(t, t, features, attn_mask=mask, scale=tau)


def implementation(name: str, device: torch.device):
    if name == "sdpa_mask":
        return scga_sdpa_mask
    from radseg_edge.kernels import get_ops

    return get_ops(name, device).scga


def run_one(fn, features: torch.Tensor, repeats: int) -> tuple[float, float | None, torch.Tensor]:
    """(median seconds, peak extra MB or None on CPU, output)."""
    cuda = features.is_cuda
    out = fn(features, 10.0)  # warm-up (and JIT builds)
    del out
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(features, 10.0)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
    return statistics.median(times), peak, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 14112])
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16"], choices=sorted(DTYPES))
    parser.add_argument("--impls", nargs="+", default=["reference", "sdpa_mask", "blocked", "triton", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="kernels_gpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    from radseg_edge.core.scga import scga_reference

    rows = []
    for n in args.sizes:
        x32 = torch.randn(1, n, args.channels, generator=torch.Generator().manual_seed(0)).to(device)
        truth = scga_reference(x32, 10.0).float()
        for dtype_name in args.dtypes:
            x = x32.to(DTYPES[dtype_name])
            base = None
            for name in args.impls:
                try:
                    seconds, peak, out = run_one(implementation(name, device), x, args.repeats)
                except Exception as exc:  # report and go on (e.g. OOM, kernels unavailable)
                    print(f"N={n} {dtype_name} {name}: failed: {str(exc).splitlines()[0]}", flush=True)
                    continue
                err = ((out.float() - truth).abs().max() / truth.abs().max()).item()
                row = {"n": n, "dtype": dtype_name, "impl": name, "time_s": seconds, "peak_extra_mb": peak,
                       "max_rel_error_vs_fp32_reference": err}  # fmt: skip
                if name == "reference":
                    base = row
                if base is not None:
                    row["time_ratio"] = seconds / base["time_s"]
                    if peak is not None and base["peak_extra_mb"]:
                        row["memory_ratio"] = peak / base["peak_extra_mb"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                del out
            if device.type == "cuda":
                torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    summary = {"benchmark": "kernels_gpu", "device": name, "channels": args.channels, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# SCGA kernels on {name} (C = {args.channels})", "",
             "| N | dtype | impl | time ms | time ratio | peak MB | memory ratio | max rel err |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        peak = "-" if r["peak_extra_mb"] is None else f"{r['peak_extra_mb']:.1f}"
        lines.append(f"| {r['n']} | {r['dtype']} | {r['impl']} | {1000 * r['time_s']:.2f} | "
                     f"{r.get('time_ratio', float('nan')):.3f} | {peak} | {r.get('memory_ratio', float('nan')):.3f} | "
                     f"{r['max_rel_error_vs_fp32_reference']:.1e} |")  # fmt: skip
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    print(f"saved {RESULTS / args.output}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
