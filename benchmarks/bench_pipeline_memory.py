"""Whole-pipeline peak memory on the CPU: RADSeg(kernels="reference") vs RADSeg(kernels="auto").

A 1344 x 2688 image (N = 84 x 168 = 14112 patches for SCGA), crop 336 / stride 224, K random class
embeddings, a small checkpoint (default: the tiny test checkpoint; or a named config with random
weights, e.g. --model c-radio_v3-b). Each variant runs in a fresh subprocess; peak memory is the
RSS high-water mark above the RSS with the model loaded (the image and embeddings count) (benchmarks/memlib.py).
Target (issue 4): kernels="auto" stays under 600 MB above the loaded model.

    python -m benchmarks.bench_pipeline_memory [--model PATH|CONFIG] [--height 1344 --width 2688]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "tests" / "fixtures" / "tiny_radio.pth.tar"


def measure(
    kernels: str, model: str, height: int, width: int, classes: int, threads: int, window_batch: int, out: str
) -> dict:
    """Runs inside the subprocess: one segmentation, its time and peak extra memory."""
    import torch

    from benchmarks.memlib import peak_kb, reset_peak
    from radseg_edge import RADSeg
    from radseg_edge.models import load_radio, radio_from_config

    torch.set_num_threads(threads)
    radio = load_radio(model) if Path(model).exists() else radio_from_config(model, seed=0)
    params_mb = sum(p.numel() * p.element_size() for p in radio.parameters()) / 2**20
    seg = RADSeg(radio, kernels=kernels, window_batch=window_batch or None)
    before = reset_peak()  # the image and class embeddings count as part of the work
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, height // 64, width // 64, generator=g)
    image = torch.nn.functional.interpolate(
        coarse, size=(height, width), mode="bilinear", align_corners=False
    )
    text = torch.nn.functional.normalize(torch.randn(classes, seg.embedding_dim, generator=g), dim=-1)
    start = time.perf_counter()
    with torch.no_grad():
        result = seg(image, text)
    seconds = time.perf_counter() - start
    peak = peak_kb()
    torch.save({"labels": result.labels, "scga_features": result.scga_features}, out)
    return {"kernels": kernels, "ran": result.kernels, "model": model, "params_mb": params_mb,
            "rss_before_mb": before / 1024, "peak_extra_mb": (peak - before) / 1024, "time_s": seconds,
            "patches": int(result.scga_features.shape[-2] * result.scga_features.shape[-1])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(TINY), help="checkpoint path or RADIO config name")
    parser.add_argument("--height", type=int, default=1344)
    parser.add_argument("--width", type=int, default=2688)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window-batch", type=int, default=0, help="windows per backbone pass (0: all)")
    parser.add_argument("--output", default="pipeline_memory", help="results file name (no extension)")
    parser.add_argument("--variants", nargs="+", default=["reference", "auto"])
    parser.add_argument("--case", nargs=2, metavar=("KERNELS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        kernels, out = args.case
        print(
            json.dumps(
                measure(
                    kernels,
                    args.model,
                    args.height,
                    args.width,
                    args.classes,
                    args.threads,
                    args.window_batch,
                    out,
                )
            )
        )
        return 0

    import torch

    from benchmarks.memlib import run_case
    from tests.kernels_cases import relative_error

    common = ["--model", args.model, "--height", str(args.height), "--width", str(args.width),
              "--classes", str(args.classes), "--threads", str(args.threads), "--window-batch", str(args.window_batch)]  # fmt: skip
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            rows[variant] = run_case(
                "benchmarks.bench_pipeline_memory", [*common, "--case", variant, f"{tmp}/{variant}.pt"], ROOT
            )
            r = rows[variant]
            print(
                f"kernels={variant:9s} ran {r['ran']:9s} N={r['patches']} peak +{r['peak_extra_mb']:.1f} MB "
                f"(model {r['params_mb']:.1f} MB)  time {r['time_s']:.2f} s",
                flush=True,
            )
        base, new = args.variants[0], args.variants[-1]
        a, b = torch.load(f"{tmp}/{base}.pt"), torch.load(f"{tmp}/{new}.pt")
        agreement = (a["labels"] == b["labels"]).float().mean().item()
        err = relative_error(b["scga_features"], a["scga_features"])
    summary = {"benchmark": "pipeline_memory", "image": [args.height, args.width], "classes": args.classes,
               "threads": args.threads, "window_batch": args.window_batch, "torch": torch.__version__, "rows": rows,
               "memory_ratio": rows[new]["peak_extra_mb"] / rows[base]["peak_extra_mb"],
               "time_ratio": rows[new]["time_s"] / rows[base]["time_s"], "label_agreement": agreement,
               "scga_max_rel_error": err, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average_1m": os.getloadavg()[0]}  # fmt: skip
    print(
        f"memory ratio {summary['memory_ratio']:.3f}  time ratio {summary['time_ratio']:.3f}  "
        f"labels equal {agreement:.6f}  SCGA rel err {err:.1e}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# RADSeg pipeline peak memory on CPU ({args.height} x {args.width}, {args.threads} threads, window batch {args.window_batch or 'all'})", "",
             "| kernels | ran | patches N | model MB | peak above loaded model MB | time s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for variant, r in rows.items():
        lines.append(
            f"| {variant} | {r['ran']} | {r['patches']} | {r['params_mb']:.1f} | {r['peak_extra_mb']:.1f} | {r['time_s']:.2f} |"
        )
    lines += ["", f"Memory ratio {summary['memory_ratio']:.3f}, time ratio {summary['time_ratio']:.3f}, "
              f"identical labels {agreement:.6f}, SCGA max rel error {err:.1e}. Model: {Path(args.model).name}; "
              f"{summary['date']}; fresh process per variant (benchmarks/memlib.py)."]  # fmt: skip
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    print(f"saved {RESULTS / args.output}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
