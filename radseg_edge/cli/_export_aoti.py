"""`radseg-edge export --format aoti`: the AOTInductor package for the C++ runtime (docs/cpp.md).

Called by radseg_edge/cli/export.py with its parsed arguments (--out, --imgsz, --vocab, the model and
RADSeg options); not a subcommand of its own.
"""

from __future__ import annotations

import argparse
import json

from radseg_edge.cli._common import load_model_from_args, radseg_from_args
from radseg_edge.errors import InputError

FORMAT = "aoti"
HELP_LINE = ("  aoti            AOTInductor .pt2 package of the whole pipeline for --imgsz and --vocab, for the C++\n"
             "                  runtime (cpp/, docs/cpp.md); CPU, or CUDA with --device cuda")


def run_aoti(args: argparse.Namespace) -> int:
    """Export ``args`` as an AOTInductor package into ``args.out``; returns the exit code."""
    from rich.console import Console

    from radseg_edge.export.aoti import export_aoti_package
    from radseg_edge.export.build import parse_imgsz, sample_images
    from radseg_edge.models.text import Vocabulary

    if not args.imgsz or not args.vocab:
        raise InputError("--format aoti compiles the pipeline for one frame size and one vocabulary: "
                         "pass --imgsz HxW and --vocab FILE (from `radseg-edge vocab build`)")
    height, width = parse_imgsz(args.imgsz)
    radio = load_model_from_args(args)
    vocab = Vocabulary.load(args.vocab)
    vocab.check_compatible(radio)
    seg = radseg_from_args(args, radio, vocabulary=vocab)
    device = next(radio.parameters()).device
    console = Console(stderr=True)
    console.print(f"compiling the {height}x{width} pipeline ({len(vocab.names)} classes) with AOTInductor for "
                  f"{device.type}; this runs a C++ compiler and takes a while")
    folder = args.gate_images or args.calib
    images = sample_images(folder, args.gate_limit, (height, width), [], "the accuracy gate") if folder else None
    path = export_aoti_package(seg, vocab, height, width, args.out, device=str(device), gate_images=images,
                               force=args.force)
    gate = json.loads(path.read_text())["gate"]["pipeline"]
    console.print(f"exported aoti to {args.out}: model.pt2, {path.name}")
    console.print(f"  gate (pipeline): labels {gate['label_agreement']:.4%} equal, max prob error "
                  f"{gate['max_prob_error']:.2e} on {gate['num_images']} image(s)")
    return 0
