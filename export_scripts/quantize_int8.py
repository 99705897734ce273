"""Quantize the ONNX graphs of an export folder to INT8 Q/DQ (MatMul/Gemm/Conv only), in place.

    python export_scripts/quantize_int8.py exported/ --calib my_images/ [--backend modelopt|ort|auto]

Writes <role>.int8.onnx beside the fp32 graphs (backbone, pipeline; the head stays fp32), calibrated on
the windows (or frames) of the images in --calib, and updates manifest.json. Run the accuracy gate
afterwards with `radseg-edge export` or radseg_edge.export.build.check_export.
"""

import argparse
import sys
from pathlib import Path

from radseg_edge.export.build import artefact_record, calibration_inputs
from radseg_edge.export.manifest import Manifest
from radseg_edge.export.quantize import list_images, quantize_int8, read_rgb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="export folder with fp32 graphs (radseg-edge export --format onnx)")
    p.add_argument("--calib", required=True, help="folder of calibration images")
    p.add_argument("--limit", type=int, default=32, help="at most this many images (default 32)")
    p.add_argument("--backend", default="auto", choices=("auto", "modelopt", "ort"))
    p.add_argument("--quantize-attention", action="store_true", help="also quantize attention MatMuls")
    args = p.parse_args()
    folder = Path(args.folder)
    manifest = Manifest.read(folder)
    images = [read_rgb(f) for f in list_images(args.calib, args.limit)]
    win = manifest.windows
    for role in ("backbone", "pipeline"):
        art = manifest.artefacts.get(role)
        if art is None or art.get("kind", "fp32") != "fp32":
            continue
        role_images = images
        if role == "pipeline":
            import cv2

            h, w = art["imgsz"]
            role_images = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images]
        calib = calibration_inputs(role_images, role, win["crop"], win["stride"])
        result = quantize_int8(folder / art["file"], folder / f"{role}.int8.onnx", calib, backend=args.backend,
                               quantize_attention=args.quantize_attention)
        manifest.artefacts[role] = artefact_record(result.path, kind="qdq", **({"imgsz": art["imgsz"]} if "imgsz" in art else {}))
        manifest.notes.append(f"{role}: INT8 by {result.backend}, {result.quantized_nodes} MatMul/Gemm/Conv quantized")
        print(f"{role}: {result.path.name} ({result.backend}, {result.quantized_nodes} quantized ops)")
    manifest.format, manifest.precision = "onnx-int8", "int8"
    manifest.gate = {}
    manifest.write(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
