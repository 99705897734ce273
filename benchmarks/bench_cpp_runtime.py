"""Per-frame latency of the C++ runtime vs the Python pipeline, on the same AOTInductor package.

    python benchmarks/bench_cpp_runtime.py [--frames 50] [--config tiny:64x96 --config c-radio_v3-b:224x224]

For each configuration (model : frame size, one pass without windows) the script exports an
AOTInductor package (cached under build/bench-cpp), then measures, on the same photo frame:

- ``cpp``: radseg_frame_loop (C API, BGR camera buffer with padded rows, labels + probabilities);
- ``python_package``: the same .pt2 loaded in Python (torch._inductor.aoti_load_package), numpy frame in,
  numpy labels + probabilities out;
- ``python_eager``: the eager PyTorch pipeline ``RADSeg(frame, vocabulary)``.

Ratios are against ``python_package`` measured in the same run. Results: benchmarks/results/cpp_runtime.{json,md}.
``tiny`` is tests/fixtures/tiny_radio.pth.tar (192-d, 4 blocks); named configs use random weights
(same architecture and cost as the real checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import cpp_runtime_support as support  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"mean_ms": statistics.fmean(ms), "p50_ms": ms[len(ms) // 2], "p90_ms": ms[int(0.9 * (len(ms) - 1) + 0.5)],
            "frames": len(ms)}


def _timed(fn, frames: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return _stats(out)


def _radseg_for(model: str):
    from radseg_edge import RADSeg, radio_from_config
    from radseg_edge.models.text import Vocabulary

    if model == "tiny":
        return support.tiny_radseg()
    radio = radio_from_config(model, seed=0).eval()
    seg = RADSeg(radio, crop=0, kernels="reference").eval()
    gen = torch.Generator().manual_seed(0)
    names = ["sky", "grass", "sheep", "mountain", "road", "car", "tree"]
    emb = torch.randn(len(names), seg.embedding_dim, generator=gen)
    return seg, Vocabulary.from_embeddings(names, emb)


def bench_config(model: str, height: int, width: int, frames: int, binaries: dict, threads: int) -> dict:
    from radseg_edge.export.aoti import export_aoti_package

    seg, vocab = _radseg_for(model)
    module = support.frame_module(seg, vocab, height, width)
    out_dir = REPO / "build" / "bench-cpp" / f"{model}_{height}x{width}"
    t0 = time.perf_counter()
    if not (out_dir / "model.pt2").exists():
        export_aoti_package(seg, vocab, height, width, out_dir, device="cpu", module=module)
    compile_s = time.perf_counter() - t0
    rgb = support.photo_frame(height, width)
    ppm = support.write_ppm(out_dir / "photo.ppm", rgb)

    proc = subprocess.run([str(binaries["radseg_frame_loop"]), str(out_dir), "--frames", str(frames), "--image", str(ppm),
                           "--threads", str(threads)], capture_output=True, text=True, check=True, timeout=1800)
    cpp = json.loads(proc.stdout)

    package = torch._inductor.aoti_load_package(str(out_dir / "model.pt2"))

    def run_package():
        with torch.inference_mode():
            labels, probs = package(torch.from_numpy(rgb)[None])
        return labels[0].numpy(), probs[0].numpy()

    def run_eager():
        return seg(rgb, vocab)

    warmup = max(2, frames // 10)
    py_pkg = _timed(run_package, frames, warmup)
    py_eager = _timed(run_eager, max(5, frames // 5), 1)
    base = py_pkg["mean_ms"]
    return {
        "model": model,
        "frame": [height, width],
        "classes": len(vocab.names),
        "package_compile_s": round(compile_s, 1),
        "cpp": {**cpp["total"], "stages": {k: cpp[k] for k in ("preprocess", "inference", "postprocess")},
                "result_buffers_reused": cpp["result_buffers_reused"]},
        "python_package": py_pkg,
        "python_eager": py_eager,
        "speedup_cpp_vs_python_package": base / cpp["total"]["mean_ms"],
        "speedup_cpp_vs_python_eager": py_eager["mean_ms"] / cpp["total"]["mean_ms"],
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# C++ runtime vs Python pipeline (same AOTInductor package)",
        "",
        f"CPU: {report['machine']['cpu']}, {report['machine']['threads']} threads, torch {report['machine']['torch']}. "
        "Per-frame wall time, labels + probabilities returned to the caller.",
        "",
        "| model | frame HxW | K | C++ mean / p50 ms | Python (.pt2) mean ms | Python eager mean ms | C++ vs .pt2 | C++ vs eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        h, w = r["frame"]
        lines.append(
            f"| {r['model']} | {h}x{w} | {r['classes']} | {r['cpp']['mean_ms']:.2f} / {r['cpp']['p50_ms']:.2f} | "
            f"{r['python_package']['mean_ms']:.2f} | {r['python_eager']['mean_ms']:.2f} | "
            f"{r['speedup_cpp_vs_python_package']:.2f}x | {r['speedup_cpp_vs_python_eager']:.2f}x |"
        )
    lines += ["", "C++ stages (mean ms): " + "; ".join(
        f"{r['model']} {r['frame'][0]}x{r['frame'][1]}: " + ", ".join(f"{k} {v['mean_ms']:.3f}" for k, v in r["cpp"]["stages"].items())
        for r in report["results"]), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--config", action="append", metavar="MODEL:HxW",
                        help="model (tiny or a named RADIO config) and frame size; repeatable (default tiny:64x96, tiny:224x320)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    configs = args.config or ["tiny:64x96", "tiny:224x320"]
    torch.set_num_threads(args.threads)
    missing = support.toolchain_missing()
    if missing:
        print(f"cannot build the C++ runtime: {missing}", file=sys.stderr)
        return 1
    binaries = support.build_runtime(REPO / "build" / "bench-cpp")
    results = []
    for cfg in configs:
        model, size = cfg.split(":")
        h, w = (int(v) for v in size.lower().split("x"))
        r = bench_config(model, h, w, args.frames, binaries, args.threads)
        print(f"{model} {h}x{w}: C++ {r['cpp']['mean_ms']:.2f} ms, Python .pt2 {r['python_package']['mean_ms']:.2f} ms, "
              f"eager {r['python_eager']['mean_ms']:.2f} ms -> C++ {r['speedup_cpp_vs_python_package']:.2f}x vs .pt2")
        results.append(r)
    report = {
        "benchmark": "cpp_runtime",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version()},
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpp_runtime.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cpp_runtime.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
