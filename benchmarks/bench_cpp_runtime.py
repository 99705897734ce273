"""Per-frame latency of the C++ runtime vs the Python pipeline, on the same AOTInductor package.

    python benchmarks/bench_cpp_runtime.py [--frames 50] [--config tiny:64x96 --config c-radio_v3-b:224x224]

For each configuration (model : frame size, one pass without windows) the script exports an
AOTInductor package (cached under build/bench-cpp), then measures, on the same photo frame:

- ``cpp``: libradseg_edge through its C API (loaded with ctypes into this process), BGR frame with
  padded rows in, labels + probabilities out (the runtime's own ``total_ms``);
- ``python_package``: the same .pt2 loaded in Python (torch._inductor.aoti_load_package), numpy frame in,
  numpy labels + probabilities out;
- ``python_eager``: the eager PyTorch pipeline ``RADSeg(frame, vocabulary)`` (its default kernels);
- ``cpp_process``: the radseg_frame_loop example program on its own (what a robot process sees).

``cpp``, ``python_package`` and ``python_eager`` alternate frame by frame in one process, so all see
the same machine load; a ratio is the median of the per-frame ratios. Results: benchmarks/results/cpp_runtime.{json,md}.
``tiny`` is tests/fixtures/tiny_radio.pth.tar (192-d, 4 blocks); named configs use random weights
(same architecture and cost as the real checkpoint).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import cpp_runtime_support as support  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"mean_ms": statistics.fmean(ms), "p50_ms": ms[len(ms) // 2], "p90_ms": ms[int(0.9 * (len(ms) - 1) + 0.5)],
            "frames": len(ms)}


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


class _Frame(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("stride_bytes", ctypes.c_int64), ("format", ctypes.c_int)]


class _Timing(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms")]


class _Result(ctypes.Structure):
    _fields_ = [("labels", ctypes.c_void_p), ("probs", ctypes.c_void_p), ("width", ctypes.c_int32),
                ("height", ctypes.c_int32), ("num_classes", ctypes.c_int32), ("timing", _Timing)]


class CRuntime:
    """Minimal ctypes binding of radseg_edge.h (create / run / destroy) for in-process timing."""

    def __init__(self, library: Path, export_dir: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.lib.radseg_last_error.restype = ctypes.c_char_p
        self.handle = ctypes.c_void_p()
        if self.lib.radseg_create(str(export_dir).encode(), None, ctypes.byref(self.handle)) != 0:
            raise RuntimeError(self.lib.radseg_last_error().decode())

    def run(self, bgr_rows: np.ndarray, width: int, height: int) -> tuple[dict, np.ndarray]:
        """BGR frame (height x stride uint8 rows) -> (stage timing ms, labels height x width int32 view)."""
        frame = _Frame(bgr_rows.ctypes.data, width, height, bgr_rows.strides[0], 1)
        result = _Result()
        if self.lib.radseg_run(self.handle, ctypes.byref(frame), ctypes.byref(result)) != 0:
            raise RuntimeError(self.lib.radseg_last_error().decode())
        labels = np.ctypeslib.as_array(ctypes.cast(result.labels, ctypes.POINTER(ctypes.c_int32)), (height, width))
        return {name: getattr(result.timing, name) for name, _ in _Timing._fields_}, labels

    def close(self) -> None:
        self.lib.radseg_destroy(self.handle)


def bench_config(model: str, height: int, width: int, frames: int, build_dir: Path, binaries: dict, threads: int) -> dict:
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
    stride = (width * 3 + 63) // 64 * 64  # a camera buffer: BGR rows padded to 64 bytes
    bgr_padded = np.zeros((height, stride), np.uint8)
    bgr_padded[:, : width * 3] = rgb[..., ::-1].reshape(height, width * 3)

    package = torch._inductor.aoti_load_package(str(out_dir / "model.pt2"))

    def run_package():
        with torch.inference_mode():
            labels, probs = package(torch.from_numpy(rgb)[None])
        return labels[0].numpy(), probs[0].numpy()

    def run_eager():
        return seg(rgb, vocab)

    runtime = CRuntime(build_dir / "libradseg_edge.so", out_dir)
    for _ in range(max(2, frames // 10)):
        run_package()
        runtime.run(bgr_padded, width, height)
        run_eager()
    cpp_ms, pkg_ms, eager_ms = [], [], []
    stages = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
    same_labels = True
    for _ in range(frames):  # the three alternate, so that each frame's ratios see the same machine load
        t = time.perf_counter()
        py_labels, _ = run_package()
        pkg_ms.append((time.perf_counter() - t) * 1e3)
        timing, labels = runtime.run(bgr_padded, width, height)
        cpp_ms.append(timing["total_ms"])
        for k in stages:
            stages[k].append(timing[k])
        same_labels &= bool(np.array_equal(labels, py_labels))
        t = time.perf_counter()
        run_eager()
        eager_ms.append((time.perf_counter() - t) * 1e3)
    runtime.close()

    proc = subprocess.run([str(binaries["radseg_frame_loop"]), str(out_dir), "--frames", str(frames), "--image", str(ppm),
                           "--threads", str(threads)], capture_output=True, text=True, check=True, timeout=1800)
    process = json.loads(proc.stdout)["total"]
    cpp = _stats(cpp_ms)
    return {
        "model": model,
        "frame": [height, width],
        "classes": len(vocab.names),
        "package_compile_s": round(compile_s, 1),
        "cpp": {**cpp, "stages": {k.removesuffix("_ms"): _stats(v) for k, v in stages.items()}},
        "python_package": _stats(pkg_ms),
        "python_eager": _stats(eager_ms),
        "cpp_process": process,
        "labels_identical_cpp_vs_python_package": same_labels,
        "speedup_cpp_vs_python_package": statistics.median(p / c for p, c in zip(pkg_ms, cpp_ms, strict=True)),
        "speedup_cpp_vs_python_eager": statistics.median(e / c for e, c in zip(eager_ms, cpp_ms, strict=True)),
    }


def to_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# C++ runtime vs Python pipeline (same AOTInductor package)",
        "",
        f"CPU {m['cpu']}, {m['threads']} threads, torch {m['torch']}, load average {m['load_average']} during the run "
        "(shared machine: compare the medians and the paired ratio, not the means). Per-frame wall time with "
        "labels + probabilities returned to the caller; C++, Python .pt2 and eager alternate frame by frame "
        "(ratios: median of per-frame ratios). The C++ program column is radseg_frame_loop run on its own afterwards.",
        "",
        "| model | frame HxW | K | C++ p50 / mean ms | C++ program p50 ms | Python .pt2 p50 / mean ms | Python eager p50 ms "
        "| C++ vs .pt2 | C++ vs eager | labels equal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        h, w = r["frame"]
        c, p, e = r["cpp"], r["python_package"], r["python_eager"]
        lines.append(
            f"| {r['model']} | {h}x{w} | {r['classes']} | {c['p50_ms']:.2f} / {c['mean_ms']:.2f} | "
            f"{r['cpp_process']['p50_ms']:.2f} | {p['p50_ms']:.2f} / {p['mean_ms']:.2f} | {e['p50_ms']:.2f} | "
            f"{r['speedup_cpp_vs_python_package']:.2f}x | {r['speedup_cpp_vs_python_eager']:.2f}x | "
            f"{'yes' if r['labels_identical_cpp_vs_python_package'] else 'NO'} |"
        )
    lines += ["", "C++ stages (p50 ms): " + "; ".join(
        f"{r['model']} {r['frame'][0]}x{r['frame'][1]}: " + ", ".join(f"{k} {v['p50_ms']:.3f}" for k, v in r["cpp"]["stages"].items())
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
    build_dir = REPO / "build" / "bench-cpp"
    binaries = support.build_runtime(build_dir)
    results = []
    for cfg in configs:
        model, size = cfg.split(":")
        h, w = (int(v) for v in size.lower().split("x"))
        r = bench_config(model, h, w, args.frames, build_dir, binaries, args.threads)
        print(f"{model} {h}x{w}: p50 C++ {r['cpp']['p50_ms']:.2f} ms, Python .pt2 {r['python_package']['p50_ms']:.2f} ms, "
              f"eager {r['python_eager']['p50_ms']:.2f} ms -> C++ {r['speedup_cpp_vs_python_package']:.2f}x vs .pt2")
        results.append(r)
    report = {
        "benchmark": "cpp_runtime",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version(), "load_average": round(os.getloadavg()[0], 1)},
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpp_runtime.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cpp_runtime.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
