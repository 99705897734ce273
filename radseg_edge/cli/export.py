"""`radseg-edge export`: ONNX graphs, FP16/INT8 variants, TensorRT engines and torch-tensorrt programs."""

from __future__ import annotations

import argparse

from radseg_edge.cli._common import add_model_args, add_radseg_args, load_model_from_args, radseg_from_args
from radseg_edge.cli._export_aoti import FORMAT as AOTI
from radseg_edge.cli._export_aoti import HELP_LINE as AOTI_HELP

FORMAT_HELP = """formats:
  onnx            fp32 graphs: window backbone (dynamic batch) + head (vocabulary as input);
                  with --imgsz HxW also the whole pipeline for that frame size as one static graph
  onnx-fp16       the same, fp16 (LayerNorm, softmax, reductions and SCGA kept in fp32)
  onnx-int8       Q/DQ INT8 (MatMul/Gemm/Conv only), calibrated on --calib DIR (ModelOpt, else ONNX Runtime)
  engine-fp16     TensorRT engines for THIS GPU (needs tensorrt and a GPU; TRT 10 weakly / TRT 11 strongly typed)
  engine-int8     TensorRT INT8 engines from the Q/DQ graphs
                  (engine formats: SCGA of the head graph is the radseg TensorRT plugin's node, built from
                  kernels/ by CMake; --no-plugin keeps standard ops)
  torch-tensorrt  torch-tensorrt compiled programs saved as ExportedPrograms (needs torch_tensorrt and a GPU)
""" + AOTI_HELP + """  triton          a Triton Inference Server model repository (--imgsz and --vocab needed): the fixed-size
                  pipeline as an onnxruntime_onnx model with a dynamic batch (+ tensorrt_plan with a GPU);
                  -o is the repository folder (see docs/serving.md)

Every export is compared with the PyTorch pipeline (accuracy gate); a failing export is refused unless --force.
The folder gets manifest.json (model, vocabulary dimension, crop, precision, versions, gate figures)."""


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export ONNX / FP16 / INT8 graphs, TensorRT engines or torch-tensorrt programs",
        description="Write a folder with exported artefacts and manifest.json, checked by an accuracy gate.",
        epilog=FORMAT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from radseg_edge.export.build import FORMATS

    p.add_argument("--format", "-f", required=True, choices=(*FORMATS, AOTI, "triton"), help="what to produce (see below)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--imgsz", metavar="HxW", help="also export the whole pipeline for frames of this size (e.g. 480x640)")
    p.add_argument("--no-split", action="store_true", help="with --imgsz: skip the backbone/head graphs")
    p.add_argument("--no-plugin", action="store_true",
                   help="engine formats: keep SCGA as standard ONNX ops instead of the radseg TensorRT plugin node")
    p.add_argument("--plugin-lib", metavar="FILE",
                   help="libradseg_trt_plugin.so for engine builds (default: $RADSEG_TRT_PLUGIN_LIB, build/kernels/)")
    p.add_argument("--vocab", metavar="FILE", help="vocabulary file (`radseg-edge vocab build`); needed with --imgsz")
    p.add_argument("--calib", metavar="DIR", help="folder of sample images for INT8 calibration and the accuracy gate")
    p.add_argument("--calib-limit", type=int, default=32, help="at most this many calibration images (default 32)")
    p.add_argument("--gate-images", metavar="DIR", help="images for the accuracy gate (default: --calib, else synthetic)")
    p.add_argument("--gate-limit", type=int, default=8, help="at most this many gate images (default 8)")
    p.add_argument("--min-label-agreement", type=float, help="gate: minimum fraction of equal labels")
    p.add_argument("--max-prob-error", type=float, help="gate: maximum absolute probability error")
    p.add_argument("--min-feature-cosine", type=float, help="gate: minimum backbone feature cosine (split graphs)")
    p.add_argument("--force", action="store_true", help="keep an export that fails the accuracy gate (with a warning)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18, at least 17)")
    p.add_argument("--workspace", type=int, default=1024, metavar="MiB", help="TensorRT builder workspace (default 1024)")
    p.add_argument("--max-windows", type=int, default=32, help="largest window batch of the backbone engine (default 32)")
    p.add_argument("--max-classes", type=int, default=1024, help="largest vocabulary of the head engine (default 1024)")
    p.add_argument("--max-image-side", type=int, default=2048, metavar="PX",
                   help="largest (pre-resized) image side the head engine takes (default 2048)")
    p.add_argument("--quant-backend", choices=("auto", "modelopt", "ort"), default="auto",
                   help="INT8 quantizer (auto: NVIDIA ModelOpt, else ONNX Runtime)")
    p.add_argument("--quantize-attention", action="store_true",
                   help="also quantize attention/SCRA/SCGA MatMuls (default: only MatMuls with weights)")
    from radseg_edge.cli._export_triton import add_triton_args

    add_triton_args(p)
    add_model_args(p)
    add_radseg_args(p)
    p.set_defaults(func=run)


def _thresholds(args, precision: str):
    from dataclasses import replace

    from radseg_edge.export.gate import DEFAULT_THRESHOLDS

    th = DEFAULT_THRESHOLDS[precision]
    changes = {k: v for k, v in (("min_label_agreement", args.min_label_agreement),
                                 ("max_prob_error", args.max_prob_error),
                                 ("min_feature_cosine", args.min_feature_cosine)) if v is not None}
    return replace(th, **changes)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from radseg_edge.export.build import (
        FORMAT_PRECISION,
        ExportOptions,
        check_feasible,
        export_model,
        parse_imgsz,
    )

    console = Console(stderr=True)
    if args.format == AOTI:
        from radseg_edge.cli._export_aoti import run_aoti

        return run_aoti(args)
    if args.format == "triton":
        from radseg_edge.cli._export_triton import run_triton

        return run_triton(args, _thresholds(args, "fp32"))
    check_feasible(args.format)  # say why a format is impossible here before loading anything
    imgsz = parse_imgsz(args.imgsz) if args.imgsz else None
    radio = load_model_from_args(args)
    vocab = None
    if args.vocab:
        from radseg_edge.models.text import Vocabulary

        vocab = Vocabulary.load(args.vocab)
        vocab.check_compatible(radio)
    seg = radseg_from_args(args, radio, vocabulary=vocab)
    options = ExportOptions(
        imgsz=imgsz, calib_dir=args.calib, calib_limit=args.calib_limit, gate_dir=args.gate_images,
        gate_limit=args.gate_limit, thresholds=_thresholds(args, FORMAT_PRECISION[args.format]), force=args.force,
        opset=args.opset, workspace_mib=args.workspace, max_windows=args.max_windows, max_classes=args.max_classes,
        max_image_side=args.max_image_side, quant_backend=args.quant_backend,
        quantize_attention=args.quantize_attention, split=not args.no_split,
        plugin=not args.no_plugin, plugin_libraries=[args.plugin_lib] if args.plugin_lib else [],
    )
    info = {"checkpoint": args.checkpoint or args.model, "random_weights": bool(args.random_weights)}
    manifest = export_model(seg, args.format, args.out, vocabulary=vocab, options=options, model_info=info)
    console.print(f"exported {args.format} ({manifest.precision}) to {args.out}: {', '.join(sorted(manifest.artefacts))}")
    for key in ("split", "pipeline"):
        if key in manifest.gate:
            g = manifest.gate[key]
            cos = f", feature cosine {g['feature_cosine']:.5f}" if g.get("feature_cosine") is not None else ""
            console.print(f"  gate ({key}): labels {g['label_agreement']:.4%} equal, max prob error "
                          f"{g['max_prob_error']:.2e}{cos} on {g['num_images']} image(s)")
    for note in manifest.notes:
        console.print(f"  note: {note}")
    return 0
