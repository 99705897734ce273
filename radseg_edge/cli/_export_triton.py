"""`radseg-edge export --format triton`: a Triton Inference Server model repository (docs/serving.md).

Called by radseg_edge/cli/export.py with its parsed arguments; not a subcommand of its own.
"""

from __future__ import annotations

import argparse

from radseg_edge.cli._common import load_model_from_args, radseg_from_args
from radseg_edge.errors import InputError


def add_triton_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--format triton (model repository)")
    g.add_argument("--triton-model", default="radseg", metavar="NAME", help="model name in the repository (default radseg)")
    g.add_argument("--max-batch", type=int, default=8, help="max_batch_size: frames batched by Triton (default 8)")
    g.add_argument("--queue-delay-us", type=int, default=2000,
                   help="dynamic batching: max microseconds a frame waits for others (default 2000)")
    g.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    g.add_argument("--triton-device", choices=("gpu", "cpu", "auto"), default="gpu",
                   help="instance_group kind of the onnxruntime model (default gpu)")
    g.add_argument("--engine", choices=("auto", "never"), default="auto",
                   help="tensorrt_plan model: auto (when TensorRT and a GPU are here) or never")


def run_triton(args: argparse.Namespace, thresholds) -> int:
    """Write the repository into ``args.out``; returns the exit code."""
    from rich.console import Console

    from radseg_edge.export.build import ExportOptions, parse_imgsz
    from radseg_edge.export.triton_repo import TritonRepoOptions, write_triton_repository
    from radseg_edge.models.text import Vocabulary

    if not args.imgsz or not args.vocab:
        raise InputError("--format triton serves the pipeline for one frame size and one vocabulary: "
                         "pass --imgsz HxW and --vocab FILE (from `radseg-edge vocab build`)")
    imgsz = parse_imgsz(args.imgsz)
    options = TritonRepoOptions(model_name=args.triton_model, max_batch_size=args.max_batch,
                                max_queue_delay_us=args.queue_delay_us, instances=args.instances,
                                kind=args.triton_device)
    options.check()
    radio = load_model_from_args(args)
    vocab = Vocabulary.load(args.vocab)
    vocab.check_compatible(radio)
    seg = radseg_from_args(args, radio, vocabulary=vocab)
    eopts = ExportOptions(imgsz=imgsz, gate_dir=args.gate_images or args.calib, gate_limit=args.gate_limit,
                          thresholds=thresholds, force=args.force, opset=args.opset, workspace_mib=args.workspace)
    info = {"checkpoint": args.checkpoint or args.model, "random_weights": bool(args.random_weights)}
    manifest = write_triton_repository(seg, vocab, imgsz, args.out, options, eopts, info, engine=args.engine)
    console = Console(stderr=True)
    console.print(f"wrote the Triton model repository {args.out}: model '{options.model_name}' "
                  f"({imgsz[0]}x{imgsz[1]}, {len(vocab)} classes, max batch {options.max_batch_size})")
    g = manifest.gate.get("pipeline")
    if g:
        console.print(f"  gate (pipeline): labels {g['label_agreement']:.4%} equal, max prob error "
                      f"{g['max_prob_error']:.2e} on {g['num_images']} image(s)")
    for note in manifest.notes:
        console.print(f"  note: {note}")
    return 0
