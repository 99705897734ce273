"""Produce benchmarks/RESULTS.md (and benchmarks/results/bench_<device>.json/.md) with the benchmark suite.

    python benchmarks/make_results.py            # the full set (several minutes on a 2-core CPU)
    python benchmarks/make_results.py --quick    # 1 run per candidate, no Cityscapes high (smoke test)

Random weights of c-radio_v3-b (the exact architecture; latency and memory do not depend on the weights).
Cases: VOC20 mid (336x448), Cityscapes low (560x1120) and mid (688x1376, the issue's targets), and the
largest setting, Cityscapes high (1344x2688, SCGA N = 14112), for peak memory. Every ratio is against the
naive baseline (the reference's behaviour, eager fp32) measured in the same process, interleaved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # benchmark the checkout this script lives in

from radseg_edge.bench import report  # noqa: E402
from radseg_edge.bench.suite import BenchOptions, case_from_setting, fill_achieved, run_suite  # noqa: E402

#: (setting, runs, warmup, formats, precision): formats adds the exported backends (ONNX Runtime fp32/INT8
#: on a CPU), precision a reduced-precision PyTorch row next to the exact fp32 one.
PLAN = [
    ("voc20-mid", 5, 1, True, "bf16"),
    ("cityscapes-low", 3, 1, True, "bf16"),
    ("cityscapes-mid", 2, 1, False, "bf16"),
    ("cityscapes-high", 1, 0, False, "fp32"),
]
QUICK_PLAN = [("voc20-mid", 1, 0, True, "bf16"), ("cityscapes-low", 1, 0, False, "bf16")]

#: the issue's targets on this CPU: (description, case, candidate (backend, precision), check)
TARGETS = [
    ("exact fp32 PyTorch path no slower than the baseline at VOC mid", "voc20-mid", ("pytorch", "fp32"),
     lambda r: (r["speedup_vs_baseline"] or 0) >= 1.0),
    ("exact fp32 PyTorch path >= 1.1x faster at Cityscapes mid", "cityscapes-mid", ("pytorch", "fp32"),
     lambda r: (r["speedup_vs_baseline"] or 0) >= 1.1),
    ("peak memory <= 1/3 of the baseline at Cityscapes mid", "cityscapes-mid", ("pytorch", "fp32"),
     lambda r: r["memory_ratio_vs_baseline"] is not None and r["memory_ratio_vs_baseline"] <= 1 / 3),
    ("bf16 CPU path >= 1.8x faster with >= 98% label agreement (VOC mid)", "voc20-mid", ("pytorch", "bf16"),
     lambda r: (r["speedup_vs_baseline"] or 0) >= 1.8 and (r["label_agreement"] or 0) >= 0.98),
    ("ONNX Runtime INT8 >= 2x faster with >= 97% label agreement (VOC mid)", "voc20-mid", ("onnxruntime", "int8"),
     lambda r: (r["speedup_vs_baseline"] or 0) >= 2.0 and (r["label_agreement"] or 0) >= 0.97),
]

#: columns of the summary: (title, backend, precision)
SUMMARY = [
    ("PyTorch fp32 (exact)", "pytorch", "fp32"),
    ("PyTorch bf16", "pytorch", "bf16"),
    ("ONNX Runtime fp32", "onnxruntime", "fp32"),
    ("ONNX Runtime INT8", "onnxruntime", "int8"),
]


def find_row(doc: dict, case: str, backend: str, precision: str) -> dict | None:
    for c in doc["cases"]:
        if c["label"] == case:
            for r in c["rows"]:
                if r["backend"] == backend and r["precision"] == precision:
                    return r
    return None


def _cell(row: dict | None, pending: str) -> str:
    if row is None:
        return pending
    text = f"{row['speedup_vs_baseline']:.2f}x ({row['latency_ms']['p50_ms']:.0f} ms)"
    if row.get("label_agreement") is not None and (row["backend"], row["precision"]) != ("pytorch", "fp32"):
        text += f", labels {100 * (row['label_agreement'] or 0):.1f}%"
    return text


def summary_markdown(doc: dict) -> list[str]:
    lines = ["| setting | baseline p50 | " + " | ".join(t for t, _, _ in SUMMARY) + " | peak memory (exact path / baseline) |",
             "|---|---|" + "---|" * len(SUMMARY) + "---|"]
    for case in doc["cases"]:
        base = find_row(doc, case["label"], "baseline", "fp32")
        exact = find_row(doc, case["label"], "pytorch", "fp32")
        cells = []
        for _, backend, precision in SUMMARY:
            missing = any(line.startswith("ONNX Runtime / TensorRT formats") for line in doc.get("skipped", []))
            pending = "pending (export backends not in this build)" if backend == "onnxruntime" and missing else "not run"
            cells.append(_cell(find_row(doc, case["label"], backend, precision), pending))
        mem = "-"
        if exact and base and exact["memory_ratio_vs_baseline"] is not None:
            mem = (f"{exact['memory_ratio_vs_baseline']:.2f}x ({exact['memory']['extra_bytes'] / 2**20:.0f} / "
                   f"{base['memory']['extra_bytes'] / 2**20:.0f} MiB)")
        base_text = f"{base['latency_ms']['p50_ms']:.0f} ms" if base else "-"
        lines.append(f"| {case['label']} ({case['image_hw'][0]}x{case['image_hw'][1]}, N={case['workload']['scga_tokens']}) "
                     f"| {base_text} | " + " | ".join(cells) + f" | {mem} |")
    return lines


def targets_markdown(doc: dict) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for text, case, (backend, precision), check in TARGETS:
        row = find_row(doc, case, backend, precision)
        if row is None:
            lines.append(f"| {text} | not measured ({backend} {precision} unavailable here) | pending |")
            continue
        measured = f"{row['speedup_vs_baseline']:.2f}x speed"
        if row.get("memory_ratio_vs_baseline") is not None:
            measured += f", {row['memory_ratio_vs_baseline']:.2f}x memory"
        if row.get("label_agreement") is not None:
            measured += f", labels {100 * row['label_agreement']:.2f}%"
        lines.append(f"| {text} | {measured} | {'yes' if check(row) else 'no'} |")
    return lines


def roofline_markdown(doc: dict) -> list[str]:
    lines = ["| setting | candidate | backbone GFLOP/s | share of the matmul rate measured around the case |",
             "|---|---|---|---|"]
    for case in doc["cases"]:
        rates = case.get("matmul_flops_per_s") or doc.get("matmul_flops_per_s", {})
        for r in case["rows"]:
            ach = r.get("achieved", {})
            if "backbone_flops_per_s" in ach and r["backend"] in ("baseline", "pytorch"):
                frac = ach.get("backbone_fraction_of_matmul")
                lines.append(f"| {case['label']} | {r['name']} | {ach['backbone_flops_per_s'] / 1e9:.0f} | "
                             + ("-" if frac is None else f"{100 * frac:.0f}% of {r['precision'] if r['precision'] in rates else 'fp32'}"
                                f" ({rates.get(r['precision'], rates.get('fp32', 0)) / 1e9:.0f} GFLOP/s)")
                             + " |")
    return lines


def code_version() -> str:
    """The git commit benchmarked (and whether the tree had changes)."""
    import subprocess

    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" with uncommitted changes" if dirty else "")


def results_markdown(doc: dict, command: str, note: str = "") -> str:
    m = doc["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` on **{m['cpu']}** ({m['cpu_count']} CPUs, {m['torch_threads']} torch threads, "
        f"{m.get('gpu') or 'no GPU'}), **{m['date']}**"
        + (f", load average at start {m['load_average'][0]:.1f} (other jobs shared the CPU: absolute times are "
           "noisy, ratios are measured interleaved in one process)" if m.get("load_average") else "") + ".",
        f"Model: {doc['model']['name']} with {doc['model']['weights']}; latency and memory do not depend on the weights. "
        f"{report.parameters_line(doc)}.",
        f"Code: commit {doc.get('code_version', 'unknown')}" + (f"; {note}" if note else "") + ".",
        "",
        "Ratios are against the naive baseline (`radseg_edge.bench.baseline.NaiveRADSeg`: the official release's "
        "behaviour, eager fp32, N x N SCRA/SCGA matrices materialized) measured in the same process; "
        "speed-up = baseline p50 / p50, memory = peak working memory above the loaded model / the baseline's, "
        "labels = share of pixels labelled as by the exact fp32 PyTorch path.",
        "",
        "## Ratios vs the baseline",
        "",
        *summary_markdown(doc),
        "",
        "## Targets on this CPU (from the benchmark issue)",
        "",
        *targets_markdown(doc),
        "",
        "## Achieved FLOP/s of the backbone",
        "",
        report.matmul_line(doc) + ".",
        "",
        *roofline_markdown(doc),
        "",
    ]
    if doc.get("skipped"):
        lines += ["## Not run here", ""] + [f"- {s}" for s in doc["skipped"]] + [""]
    lines += ["## Full tables", "", report.to_markdown(doc, title="Per setting").split("\n", 2)[2]]
    lines += other_results_markdown()
    return "\n".join(lines)


#: results of the other benchmark scripts (each saves benchmarks/results/<name>.md), in data-flow order.
OTHER_RESULTS = (
    ("scga_memory", "python benchmarks/bench_scga_memory.py", "SCGA kernels: blocked CPU vs reference"),
    ("pipeline_memory", "python benchmarks/bench_pipeline_memory.py", "Whole pipeline at N = 14112: peak memory"),
    ("export_formats", "python benchmarks/export_formats.py", "Export formats: PyTorch vs ONNX Runtime fp32 / INT8"),
    ("refine", "python benchmarks/bench_refine.py", "RADSeg+ refinement cost"),
    ("cpp_runtime", "python benchmarks/bench_cpp_runtime.py", "C++ runtime vs Python pipeline"),
    ("stream_pipeline_c-radio_v3-b", "python benchmarks/stream_pipeline.py", "Streaming runtime"),
    ("soak_stream", "python benchmarks/soak_stream.py", "Soak: RSS, frame accounting and reconnects of `stream`"),
    ("ros2_overhead_tiny", "python benchmarks/bench_ros2_overhead.py --model tiny --size 480x640 --frames 4",
     "ROS 2 adapter overhead vs the bare backend"),
    ("mapping", "python benchmarks/bench_mapping.py", "3D mapping: fusion cost per frame vs segmentation"),
    ("gpu_h200/gpu_acceptance", "python3 benchmarks/gpu_acceptance.py --out benchmarks/results/gpu_h200",
     "GPU acceptance on one H200 (kernels, pipeline, targets, AGX Orin estimate)"),
    ("triton_load", "python benchmarks/bench_triton_load.py", "Many cameras, one server: Triton serving under load"),
)

OTHER_RESULTS_HEADING = "## Other benchmark scripts"


def refresh_other_results(path: Path) -> None:
    """Rewrite only the "Other benchmark scripts" section of an existing RESULTS.md from the saved
    tables (no benchmark is run: the suite's own figures are kept as they are)."""
    text = path.read_text(encoding="utf-8")
    head, found, _ = text.partition(OTHER_RESULTS_HEADING)
    if not found:
        raise SystemExit(f"{path} has no '{OTHER_RESULTS_HEADING}' section: run make_results.py without --others-only")
    path.write_text(head.rstrip("\n") + "\n" + "\n".join(other_results_markdown()), encoding="utf-8")


def other_results_markdown() -> list[str]:
    """The saved tables of the other benchmark scripts, each with the command that regenerates it."""
    lines = ["", OTHER_RESULTS_HEADING, "",
             "Each table below is the last saved output of its script (re-run the command to refresh it; its own "
             "header says when and under which load it ran)."]
    for name, command, title in OTHER_RESULTS:
        path = ROOT / "results" / f"{name}.md"
        if not path.is_file():
            continue
        body = path.read_text(encoding="utf-8").strip().splitlines()
        if body and body[0].startswith("#"):
            body = body[1:]
        while body and not body[0].strip():
            body = body[1:]
        lines += ["", f"### {title}", "", f"`{command}`", "", *[ln.replace("# ", "#### ", 1) if ln.startswith("# ") else ln for ln in body]]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run per candidate, VOC mid and Cityscapes low only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kernels", default="auto")
    parser.add_argument("--out", default=str(ROOT / "RESULTS.md"))
    parser.add_argument("--note", default="", help="a provenance line for RESULTS.md (e.g. which branches were merged)")
    parser.add_argument("--others-only", action="store_true",
                        help="only refresh the 'Other benchmark scripts' tables of --out from benchmarks/results/*.md "
                             "(runs nothing)")
    args = parser.parse_args(argv)
    if args.others_only:
        refresh_other_results(Path(args.out))
        print(f"refreshed the other benchmark tables in {args.out}")
        return 0
    torch.manual_seed(0)
    docs = []
    for setting, runs, warmup, formats, precision in (QUICK_PLAN if args.quick else PLAN):
        if args.device.startswith("cuda") and precision == "bf16":
            precision = "fp16"
        options = BenchOptions(
            cases=[case_from_setting(setting)], device=args.device, kernels=args.kernels, runs=runs, warmup=warmup,
            formats=formats, precision=precision, matmul=True,
            scga_sweep=None if docs else [588, 2450, 5488, 14112] if not args.quick else [588, 2450],
        )
        docs.append(run_suite(options))
    doc = docs[0]
    for d in docs[1:]:
        doc["cases"] += d["cases"]
        doc["skipped"] += [s for s in d["skipped"] if s not in doc["skipped"]]
        for k, v in d["matmul_flops_per_s"].items():
            doc["matmul_flops_per_s"][k] = max(v, doc["matmul_flops_per_s"].get(k, 0.0))
    fill_achieved(doc)
    doc["code_version"] = code_version()
    name = f"bench_{args.device.split(':')[0]}"
    report.write_json(doc, ROOT / "results" / f"{name}.json")
    report.write_markdown(doc, ROOT / "results" / f"{name}.md")
    command = "python benchmarks/make_results.py" + (" --quick" if args.quick else "")
    Path(args.out).write_text(results_markdown(doc, command, args.note), encoding="utf-8")
    report.write_plots(doc, ROOT / "results")
    report.print_console(doc)
    print(f"wrote {args.out} and {ROOT / 'results' / name}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
