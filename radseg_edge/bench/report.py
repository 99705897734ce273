"""Render a suite document (:func:`radseg_edge.bench.suite.run_suite`): console table, JSON, Markdown, PNG plots.

Plots need matplotlib (``pip install 'radseg-edge[plot]'``); without it they are skipped with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from radseg_edge.bench.machine import machine_line

MIB = 2**20

_COLUMNS = (
    "candidate", "p50 ms", "p90 ms", "backbone", "scga", "head", "peak +MiB",
    "speed-up", "memory", "labels", "backbone GFLOP/s",
)


def count_text(n: float) -> str:
    """2.1M, 34.4k, 512."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def flop_text(n: float) -> str:
    """178 GFLOP, 1.1 GFLOP, 93 MFLOP."""
    if n >= 10e9:
        return f"{n / 1e9:.0f} GFLOP"
    return f"{n / 1e9:.1f} GFLOP" if n >= 1e9 else f"{n / 1e6:.0f} MFLOP"


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _stage(row: dict, name: str) -> str:
    return _fmt(row["stages_ms"].get(name, {}).get("p50_ms"), ".0f")


def _backbone_rate(row: dict) -> str:
    ach = row.get("achieved", {})
    rate = ach.get("backbone_flops_per_s")
    if rate is None:
        return "-"
    frac = ach.get("backbone_fraction_of_matmul")
    return f"{rate / 1e9:.0f}" + (f" ({100 * frac:.0f}%)" if frac is not None else "")


def row_cells(row: dict) -> list[str]:
    """The cells of one candidate, in :data:`_COLUMNS` order."""
    extra = row["memory"].get("extra_bytes")
    agree = row.get("label_agreement")
    return [
        row["name"],
        _fmt(row["latency_ms"]["p50_ms"], ".0f"),
        _fmt(row["latency_ms"]["p90_ms"], ".0f"),
        _stage(row, "backbone"),
        _stage(row, "scga"),
        _stage(row, "head"),
        _fmt(None if extra is None else extra / MIB, ".0f"),
        _ratio(row.get("speedup_vs_baseline")),
        _ratio(row.get("memory_ratio_vs_baseline")),
        "-" if agree is None else f"{100 * agree:.2f}%",
        _backbone_rate(row),
    ]


def case_title(case: dict) -> str:
    wl = case["workload"]
    fl = case["flops"]
    return (
        f"{case['label']}: {case['image_hw'][0]}x{case['image_hw'][1]}, crop {case['crop']}/{case['stride']}, "
        f"{wl['windows']} windows, SCGA N={wl['scga_tokens']}, K={case['num_classes']}, "
        f"{flop_text(fl['total'])} (backbone {flop_text(fl['backbone'])}, SCGA {flop_text(fl['scga'])})"
    )


def parameters_line(doc: dict) -> str:
    p = doc["model"]["parameters"]
    parts = [f"backbone {count_text(p['backbone'])}", f"language head {count_text(p['language_head'])}"]
    if p.get("sam_path"):
        parts.append(f"SAM path {count_text(p['sam_path'])}")
    return (
        f"parameters: {', '.join(parts)}; total {count_text(p['total'])} "
        f"(text tower not needed at inference: class embeddings come from a vocabulary file)"
    )


def matmul_line(doc: dict) -> str:
    rates = doc.get("matmul_flops_per_s") or {}
    if not rates:
        return ""
    return "measured matrix-multiply rate (best seen): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items())


def header_lines(doc: dict) -> list[str]:
    lines = [
        f"machine: {machine_line(doc['machine'])}",
        f"model: {doc['model']['name']}, {doc['model']['weights']}",
        parameters_line(doc),
    ]
    if matmul_line(doc):
        lines.append(matmul_line(doc))
    return lines


def formats_rows(doc: dict) -> list[list[str]]:
    """Ultralytics-style table: format, precision, parameters, latency p50, label agreement (per case)."""
    out = []
    for case in doc["cases"]:
        for row in case["rows"]:
            params = (row.get("parameters") or {}).get("total")
            agree = row.get("label_agreement")
            out.append([
                case["label"], row["backend"], row["precision"],
                "-" if not params else count_text(params),
                _fmt(row["latency_ms"]["p50_ms"], ".0f"),
                _ratio(row.get("speedup_vs_baseline")),
                "-" if agree is None else f"{100 * agree:.2f}%",
            ])
    return out


_FORMAT_COLUMNS = ("case", "format", "precision", "parameters", "p50 ms", "speed-up", "labels vs fp32")


def print_console(doc: dict, console=None) -> None:
    """Rich tables: one per case, then the formats table when there are several backends."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and CI logs: do not squeeze the tables into 80 columns
            console = Console(width=160)
    for line in header_lines(doc):
        console.print(line, highlight=False)
    for case in doc["cases"]:
        table = Table(title=case_title(case), title_justify="left", show_lines=False)
        for col in _COLUMNS:
            table.add_column(col, justify="left" if col == "candidate" else "right")
        for row in case["rows"]:
            table.add_row(*row_cells(row))
        console.print(table)
    if len({r["backend"] for c in doc["cases"] for r in c["rows"]} - {"baseline"}) > 1:
        table = Table(title="formats", title_justify="left")
        for col in _FORMAT_COLUMNS:
            table.add_column(col, justify="left" if col in ("case", "format") else "right")
        for cells in formats_rows(doc):
            table.add_row(*cells)
        console.print(table)
    for line in doc.get("skipped", []):
        console.print(f"skipped: {line}", highlight=False)
    console.print(
        "speed-up = baseline p50 / p50; memory = peak working memory / the baseline's; labels = pixels with the "
        "same label as the fp32 PyTorch path; stage columns are p50 ms",
        highlight=False,
    )


def write_json(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _md_table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def to_markdown(doc: dict, title: str = "radseg-edge benchmark") -> str:
    """The document as Markdown: header (machine, model, parameters), one table per case, SCGA sweep."""
    lines = [f"## {title}", ""]
    lines += [f"- {line}" for line in header_lines(doc)]
    lines.append("")
    for case in doc["cases"]:
        lines += [f"**{case_title(case)}**", ""]
        lines += _md_table(_COLUMNS, [row_cells(r) for r in case["rows"]])
        lines.append("")
    if doc.get("scga_memory"):
        lines += ["**SCGA working memory vs N** (one N x N fp32 matrix = N^2 x 4 bytes)", ""]
        lines += _md_table(
            ("N", "N x N fp32 MiB", "reference +MiB", "reference ms",
             f"kernels={doc['scga_memory'][0]['kernels']} +MiB", f"kernels={doc['scga_memory'][0]['kernels']} ms"),
            [[
                str(r["n"]), f"{r['nxn_fp32_bytes'] / MIB:.0f}",
                _fmt(None if r["reference_extra_bytes"] is None else r["reference_extra_bytes"] / MIB, ".0f"),
                f"{r['reference_ms']:.0f}",
                _fmt(None if r["optimized_extra_bytes"] is None else r["optimized_extra_bytes"] / MIB, ".0f"),
                f"{r['optimized_ms']:.0f}",
            ] for r in doc["scga_memory"]],
        )
        lines.append("")
    for line in doc.get("skipped", []):
        lines.append(f"- skipped: {line}")
    lines += [
        "",
        "speed-up = baseline p50 / p50; memory = peak working memory (above the loaded model) / the baseline's; "
        "labels = share of pixels with the same label as the fp32 PyTorch path; stage columns are p50 ms; "
        "backbone GFLOP/s = analytical FLOPs / backbone p50 (share of the measured matmul rate of its precision).",
        "",
    ]
    return "\n".join(lines)


def write_markdown(doc: dict, path: str | Path, title: str = "radseg-edge benchmark") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_markdown(doc, title), encoding="utf-8")
    return path


def _line_plot(plt, path: Path, series: dict[str, tuple[list, list, dict]], xlabel: str, ylabel: str, title: str = "") -> Path:
    """One PNG with a line per series: name -> (x values, y values, extra plot keywords)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys, style) in series.items():
        ax.plot(xs, ys, label=name, **({"marker": "o"} | style))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title[:80], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(doc: dict, folder: str | Path) -> list[Path]:
    """latency_vs_size.png (p50 vs megapixels, one line per candidate) and scga_memory.png (if swept).

    Returns the written files; prints one line and returns [] when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install 'radseg-edge[plot]')")
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    points: dict[str, list[tuple[float, float]]] = {}
    for case in doc["cases"]:
        mp = case["image_hw"][0] * case["image_hw"][1] / 1e6
        for row in case["rows"]:
            points.setdefault(row["name"], []).append((mp, row["latency_ms"]["p50_ms"]))
    latency = {name: ([x for x, _ in sorted(p)], [y for _, y in sorted(p)], {}) for name, p in points.items()}
    written = [_line_plot(plt, folder / "latency_vs_size.png", latency, "image size (megapixels, after the protocol resize)",
                          "latency p50 (ms)", f"{doc['model']['name']} on {doc['machine']['cpu']}")]
    sweep = doc.get("scga_memory")
    if sweep:
        ns = [r["n"] for r in sweep]
        memory = {
            "reference (materialized)": (ns, [(r["reference_extra_bytes"] or 0) / MIB for r in sweep], {}),
            sweep[0]["kernels"]: (ns, [(r["optimized_extra_bytes"] or 0) / MIB for r in sweep], {}),
            "one N x N fp32 matrix": (ns, [r["nxn_fp32_bytes"] / MIB for r in sweep], {"linestyle": "--", "marker": ""}),
        }
        written.append(_line_plot(plt, folder / "scga_memory.png", memory, "N (patches of the stitched map)",
                                  "SCGA working memory (MiB)"))
    return written
