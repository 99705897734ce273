"""``radseg-edge bench``: latency, memory, parameters and FLOPs of RADSeg next to the naive baseline.

Runs out of the box: random weights of the exact architecture (no download), the VOC20 mid-resolution
setting (336x448, 2 windows), 3 timed runs; prints the ratios against the reference-behaviour baseline.
"""

from __future__ import annotations

import argparse

from radseg_edge.errors import InputError

DEFAULT_SETTING = "voc20-mid"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark latency, memory, parameters and FLOPs against the naive baseline",
        description=(
            "Benchmark the RADSeg pipeline (random weights of the exact architecture unless --checkpoint) on a "
            "synthetic image, next to a naive baseline with the reference's behaviour measured in the same run. "
            f"Default: the {DEFAULT_SETTING} setting (336x448, crop 336/112)."
        ),
    )
    p.add_argument("--model", default="c-radio_v3-b", help="RADIO architecture for random weights (default c-radio_v3-b)")
    p.add_argument("--checkpoint", help="a RADIO checkpoint (.pth.tar or Hugging Face folder) instead of random weights")
    where = p.add_argument_group("image size (repeatable; default: --setting voc20-mid)")
    where.add_argument("--setting", action="append", default=[], metavar="NAME",
                       help="paper setting <dataset>-<low|mid|high>, e.g. voc20-mid, cityscapes-low (see --list-settings)")
    where.add_argument("--imgsz", action="append", default=[], metavar="HxW", help="image size in pixels, e.g. 336x448")
    where.add_argument("--crop", type=int, default=336, help="window size for --imgsz (0: one pass; default 336)")
    where.add_argument("--stride", type=int, default=224, help="window stride for --imgsz (default 224)")
    where.add_argument("--classes", type=int, default=20, help="number of classes K for --imgsz (default 20)")
    p.add_argument("--list-settings", action="store_true", help="print the paper settings and exit")
    p.add_argument("--device", default="auto", help="auto (the GPU when torch sees one, else the CPU), cpu or cuda")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="adds a PyTorch row at this precision next to the exact fp32 one (default fp32)")
    p.add_argument("--kernels", default="auto", help="SCRA/SCGA kernels of the PyTorch path (default auto)")
    p.add_argument("--window-batch", type=int, default=None, metavar="N",
                   help="windows per backbone call of the PyTorch path (default: RADSeg's, 4 on the CPU and all on a GPU; 0 = all)")
    p.add_argument("--backend", action="append", default=None, metavar="NAME",
                   help="also run this exported backend (onnxruntime, tensorrt, ...); repeatable")
    p.add_argument("--formats", action="store_true",
                   help="benchmark every backend/format/precision available on this machine in one table")
    p.add_argument("--runs", type=int, default=3, help="timed runs per candidate (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs per candidate (default 1)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the naive baseline and print ratios against it (default on)")
    p.add_argument("--baseline-attention", default="sdpa", choices=("sdpa", "materialized"),
                   help="attention of the baseline's first blocks: timm's SDPA like the official code (default) or materialized")
    p.add_argument("--scga-sweep", type=int, nargs="*", metavar="N",
                   help="also measure SCGA memory at these N (default with --plot: 588 2352 5488)")
    p.add_argument("--no-matmul", action="store_true", help="skip measuring the machine's matrix-multiply rate")
    p.add_argument("--json", metavar="PATH", help="write the full results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots (needs matplotlib: pip install 'radseg-edge[plot]')")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--quiet", action="store_true", help="do not print per-run progress")
    p.set_defaults(func=handler)


def _cases(args):
    from radseg_edge.bench.settings import parse_imgsz
    from radseg_edge.bench.suite import case_from_imgsz, case_from_setting

    cases = [case_from_setting(s) for s in args.setting]
    cases += [case_from_imgsz(parse_imgsz(s), args.crop, args.stride, args.classes) for s in args.imgsz]
    return cases or [case_from_setting(DEFAULT_SETTING)]


def _list_settings() -> int:
    from radseg_edge.bench.settings import SETTINGS

    for name, s in SETTINGS.items():
        print(f"{name:16s} {s.describe()}")
    return 0


def handler(args) -> int:
    if args.list_settings:
        return _list_settings()
    if args.runs < 1 or args.warmup < 0:
        raise InputError(f"--runs must be >= 1 and --warmup >= 0, got {args.runs} and {args.warmup}")
    import torch

    from radseg_edge.bench import report
    from radseg_edge.bench.suite import BenchOptions, run_suite

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    sweep = args.scga_sweep
    if sweep is not None and not sweep or (sweep is None and args.plot):
        sweep = [588, 2352, 5488]
    options = BenchOptions(
        cases=_cases(args),
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        kernels=args.kernels,
        window_batch=args.window_batch,
        runs=args.runs,
        warmup=args.warmup,
        baseline=args.baseline,
        baseline_attention=args.baseline_attention,
        formats=args.formats,
        backends=args.backend,
        seed=args.seed,
        matmul=not args.no_matmul,
        scga_sweep=sweep,
    )
    doc = run_suite(options, log=(lambda s: None) if args.quiet else print)
    report.print_console(doc)
    if args.json:
        print(f"wrote {report.write_json(doc, args.json)}")
    if args.markdown:
        print(f"wrote {report.write_markdown(doc, args.markdown)}")
    if args.plot:
        for path in report.write_plots(doc, args.plot):
            print(f"wrote {path}")
    return 0
