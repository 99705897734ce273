"""Build TensorRT engines on THIS machine (e.g. the Jetson) for an export folder made anywhere.

    # desktop:  radseg-edge export --format onnx --checkpoint ... --vocab voc.safetensors --imgsz 480x640 -o exported/
    # Jetson:   python export_scripts/build_engine.py exported/ --precision fp16 --workspace 512

TensorRT 10.x (JetPack 6) builds the fp32 graphs with the FP16 flag; TensorRT 11 needs the folder
exported with --format onnx-fp16 (strongly typed). INT8 needs --format onnx-int8 first. Each engine
gets a key record; the TensorRT backend refuses engines whose key does not match the machine.
"""

import argparse
import sys

from radseg_edge.errors import RadsegError
from radseg_edge.export.build import build_folder_engines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="export folder (radseg-edge export --format onnx | onnx-fp16 | onnx-int8)")
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"))
    p.add_argument("--workspace", type=int, default=1024, metavar="MiB", help="builder workspace (Orin Nano: 256-512)")
    p.add_argument("--max-windows", type=int, default=32)
    p.add_argument("--max-classes", type=int, default=1024)
    p.add_argument("--max-image-side", type=int, default=2048)
    p.add_argument("--plugin", action="append", default=[], metavar="SO",
                   help="TensorRT plugin library the graphs need (e.g. libradseg_trt_plugin.so); repeatable")
    args = p.parse_args()
    try:
        manifest = build_folder_engines(args.folder, args.precision, args.workspace, args.max_windows,
                                        args.max_classes, args.max_image_side, plugin_libraries=args.plugin)
    except RadsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    engines = sorted(k for k in manifest.artefacts if k.endswith("_engine"))
    print(f"built {', '.join(engines)} in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
