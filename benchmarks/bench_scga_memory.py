"""Reference vs blocked SCGA on the CPU: peak extra memory and time at N = 1k, 4k, 14k (C = 768).

Each (implementation, N) runs in a fresh subprocess; peak memory is the RSS high-water mark above
the RSS after setup (input features allocated; see benchmarks/memlib.py). Time is the median of the
repeats. Printed as blocked / reference ratios and saved to benchmarks/results/scga_memory.{json,md}.
Target (issue 4): peak-memory ratio <= 0.1 at N = 14k with time ratio <= 1.0.

    python -m benchmarks.bench_scga_memory [--sizes 1024 4096 14112] [--channels 768] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def measure(impl: str, n: int, channels: int, threads: int, repeats: int, out_path: str) -> dict:
    """Runs inside the subprocess: time and peak extra memory of one SCGA implementation."""
    import torch

    from benchmarks.memlib import peak_kb, reset_peak
    from radseg_edge.kernels import get_ops

    torch.set_num_threads(threads)
    scga = get_ops(impl, "cpu").scga
    features = torch.randn(1, n, channels, generator=torch.Generator().manual_seed(0))
    scga(features[:, :64], 10.0)  # load code paths outside the measurement
    before = reset_peak()
    times, out = [], None
    with torch.no_grad():
        for _ in range(repeats):
            del out
            out = None
            start = time.perf_counter()
            out = scga(features, 10.0)
            times.append(time.perf_counter() - start)
    peak = peak_kb()
    torch.save(out, out_path)
    return {"impl": impl, "n": n, "peak_extra_mb": (peak - before) / 1024, "time_s": statistics.median(times),
            "times_s": times}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 14112])
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--impls", nargs="+", default=["reference", "blocked"])
    parser.add_argument("--case", nargs=3, metavar=("IMPL", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # subprocess mode
        impl, n, out = args.case
        print(json.dumps(measure(impl, int(n), args.channels, args.threads, args.repeats, out)))
        return 0

    import torch

    from benchmarks.memlib import run_case
    from tests.kernels_cases import relative_error

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            repeats = args.repeats if n < 8192 else max(1, args.repeats - 1)
            case = {}
            for impl in args.impls:
                out = f"{tmp}/{impl}_{n}.pt"
                case[impl] = run_case("benchmarks.bench_scga_memory",
                                      ["--channels", str(args.channels), "--threads", str(args.threads),
                                       "--repeats", str(repeats), "--case", impl, str(n), out], ROOT)  # fmt: skip
                print(
                    f"N={n:6d} {impl:10s} peak +{case[impl]['peak_extra_mb']:8.1f} MB  "
                    f"time {case[impl]['time_s']:.3f} s",
                    flush=True,
                )
            base, new = case[args.impls[0]], case[args.impls[-1]]
            err = relative_error(
                torch.load(f"{tmp}/{args.impls[-1]}_{n}.pt"), torch.load(f"{tmp}/{args.impls[0]}_{n}.pt")
            )
            rows.append({"n": n, "channels": args.channels, args.impls[0]: base, args.impls[-1]: new,
                         "memory_ratio": new["peak_extra_mb"] / base["peak_extra_mb"],
                         "time_ratio": new["time_s"] / base["time_s"], "max_rel_error": err})  # fmt: skip
            print(
                f"N={n:6d} memory ratio {rows[-1]['memory_ratio']:.3f}  time ratio {rows[-1]['time_ratio']:.3f}  "
                f"rel err {err:.2e}",
                flush=True,
            )

    meta = {"benchmark": "scga_memory", "baseline": args.impls[0], "candidate": args.impls[-1],
            "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_1m": os.getloadavg()[0]}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scga_memory.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = [f"# SCGA on CPU: {args.impls[-1]} vs {args.impls[0]} (C = {args.channels}, {args.threads} threads)", "",
             "| N | reference peak MB | blocked peak MB | memory ratio | reference s | blocked s | time ratio | max rel err |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        b, c = r[args.impls[0]], r[args.impls[-1]]
        lines.append(f"| {r['n']} | {b['peak_extra_mb']:.1f} | {c['peak_extra_mb']:.1f} | {r['memory_ratio']:.3f} | "
                     f"{b['time_s']:.3f} | {c['time_s']:.3f} | {r['time_ratio']:.3f} | {r['max_rel_error']:.1e} |")  # fmt: skip
    lines += ["", "Peak MB: RSS high-water above the RSS with the input allocated, fresh process per case "
              f"(benchmarks/memlib.py). torch {torch.__version__}, {meta['date']}."]  # fmt: skip
    (RESULTS / "scga_memory.md").write_text("\n".join(lines) + "\n")
    print(f"saved {RESULTS / 'scga_memory.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
