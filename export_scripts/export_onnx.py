"""Export RADSeg to ONNX (split graphs, and with --imgsz the fixed-resolution pipeline).

    python export_scripts/export_onnx.py --checkpoint c-radio_v3-b_half.pth.tar --vocab voc.safetensors \
        --imgsz 480x640 -o exported/

Same as `radseg-edge export --format onnx ...` (any of that command's options are accepted here, plus
--format to pick another ONNX variant).
"""

import sys

from radseg_edge.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--format" not in argv and "-f" not in argv:
        argv = ["--format", "onnx", *argv]
    sys.exit(main(["export", *argv]))
