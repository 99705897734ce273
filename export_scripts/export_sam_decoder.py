"""Export RADSeg+'s SAM part (neck + prompt encoder + mask decoder) to ONNX with a dynamic number of prompts.

    python export_scripts/export_sam_decoder.py --sam-checkpoint sam_vit_h_4b8939.pth --out sam_decoder.onnx

With --check, the graph is run in ONNX Runtime for 1, 5 and 37 prompts and compared with PyTorch.
"""

from __future__ import annotations

import argparse
import sys

import torch

from radseg_edge.backends.sam_onnx import run_sam_decoder_onnx
from radseg_edge.errors import RadsegError
from radseg_edge.export.sam_onnx import example_inputs, export_sam_decoder_onnx
from radseg_edge.models.sam import load_sam


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sam-checkpoint", required=True, help="sam_vit_h_4b8939.pth, or a .safetensors with the official names")
    ap.add_argument("--num-heads", type=int, default=8, help="two-way transformer heads (8 for released SAMs)")
    ap.add_argument("--out", default="sam_decoder.onnx", help="output .onnx path")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17 keeps LayerNorm one op)")
    ap.add_argument("--check", action="store_true", help="compare ONNX Runtime with PyTorch for 1, 5, 37 prompts")
    args = ap.parse_args(argv)
    try:
        sam = load_sam(args.sam_checkpoint, num_heads=args.num_heads)
        path = export_sam_decoder_onnx(sam, args.out, opset=args.opset)
        print(f"wrote {path} ({sam.num_parameters() / 1e6:.2f}M parameters)")
        if args.check:
            for n in (1, 5, 37):
                x = example_inputs(sam, n, min(n, 4), seed=n)
                with torch.no_grad():
                    ref = sam(*x)
                out = run_sam_decoder_onnx(path, x)
                err = max(float((a - b).abs().max()) for a, b in zip(out, ref, strict=True))
                print(f"{n:3d} prompts: max |ONNX Runtime - PyTorch| = {err:.2e}")
    except RadsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
