"""PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8 (and FP16 with --fp16) on the CPU.

One run, one machine: the exported backends' latencies are printed as ratios against PyTorch eager
measured in the same run, with label agreement against PyTorch on the same images.

    python benchmarks/export_formats.py --model c-radio_v3-b --crop 336 --stride 112 --imgsz 336x336

Random weights of the exact architecture are used unless --checkpoint is given (figures about speed and
agreement, not accuracy). With random weights and random class embeddings one class wins everywhere, so
by default the classes are *prototypes*: the language features of the first image at K spread-out
patches (labels then vary across the image and agreement means something). Results:
benchmarks/results/export_formats.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from radseg_edge.backends import make_backend  # noqa: E402
from radseg_edge.export.build import ExportOptions, export_model, parse_imgsz, synthetic_images  # noqa: E402
from radseg_edge.export.gate import GateThresholds  # noqa: E402
from radseg_edge.pipeline import RADSeg  # noqa: E402


def timed(fn, image, repeats: int) -> tuple[float, object]:
    out = fn(image)  # warm-up (sessions, allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(image)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), out


def prototype_classes(seg, image, k: int) -> torch.Tensor:
    """K x D class embeddings = the image's language features at K evenly spread patches."""
    with torch.no_grad():
        result = seg(image, torch.randn(1, seg.embedding_dim))
        lang = seg.language_features(result.scga_features)[0].flatten(1).T  # (h*w) x D
    idx = torch.linspace(0, lang.shape[0] - 1, k).round().long()
    return lang[idx].clone()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="c-radio_v3-b")
    p.add_argument("--checkpoint", help="real weights (default: random weights of --model)")
    p.add_argument("--crop", type=int, default=336)
    p.add_argument("--stride", type=int, default=112)
    p.add_argument("--imgsz", default="336x336", help="image size HxW (336x336 = one 336 px window)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--images", type=int, default=3, help="timed images (label agreement over all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calib", type=int, default=8, help="synthetic calibration images for INT8")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--fp16", action="store_true", help="also ONNX Runtime FP16 (slow on most CPUs)")
    p.add_argument("--random-classes", action="store_true", help="random class embeddings instead of prototypes")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_formats"))
    args = p.parse_args()

    from radseg_edge.models import load_radio, radio_from_config

    if args.threads:
        torch.set_num_threads(args.threads)
    radio = load_radio(args.checkpoint) if args.checkpoint else radio_from_config(args.model, seed=0)
    seg = RADSeg(radio, crop=args.crop, stride=args.stride)
    size = parse_imgsz(args.imgsz)
    images = synthetic_images(args.images, size, seed=123)
    text = torch.randn(args.classes, seg.embedding_dim, generator=torch.Generator().manual_seed(0))
    if not args.random_classes:
        text = prototype_classes(seg, images[0], args.classes)
    loose = GateThresholds(min_label_agreement=0.0, max_prob_error=None, min_feature_cosine=None)

    rows = []
    t_torch, torch_outs = [], []
    for img in images:
        ms, out = timed(lambda im: seg(im, text), img, args.repeats)
        t_torch.append(ms)
        torch_outs.append(out)
    base = statistics.median(t_torch)
    classes_seen = sorted({int(v) for out in torch_outs for v in torch.unique(out.labels)})
    rows.append({"backend": "torch eager fp32", "ms": base, "ratio_vs_torch": 1.0, "label_agreement": 1.0,
                 "feature_cosine": 1.0, "classes_in_labels": len(classes_seen)})
    print(f"classes present in the PyTorch labels: {len(classes_seen)} of {text.shape[0]}")
    print(f"torch eager fp32: {base:.1f} ms/image")

    formats = ["onnx", "onnx-int8"] + (["onnx-fp16"] if args.fp16 else [])
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            t0 = time.perf_counter()
            folder = Path(tmp) / fmt
            opts = ExportOptions(calib_limit=args.calib, gate_limit=1, thresholds=loose, force=True,
                                 max_windows=max(8, 2), progress=False)
            if fmt == "onnx-int8":  # calibration images: a folder of synthetic images
                import cv2

                cdir = Path(tmp) / "calib"
                cdir.mkdir(exist_ok=True)
                for i, im in enumerate(synthetic_images(args.calib, size, seed=7)):
                    cv2.imwrite(str(cdir / f"{i}.png"), im[..., ::-1])
                opts.calib_dir = str(cdir)
            manifest = export_model(seg, fmt, folder, options=opts)
            export_s = time.perf_counter() - t0
            backend = make_backend("onnxruntime", export_dir=folder, providers="cpu", threads=args.threads)
            times, equal, total, cos = [], 0, 0, []
            for img, ref in zip(images, torch_outs, strict=True):
                ms, out = timed(lambda im, b=backend: b(im, text), img, args.repeats)
                times.append(ms)
                equal += int((out.labels == ref.labels).sum())
                total += ref.labels.numel()
                from radseg_edge.export.gate import feature_cosine

                cos.append(feature_cosine(ref.features, out.features))
            ms = statistics.median(times)
            row = {"backend": f"onnxruntime {manifest.precision}", "ms": ms, "ratio_vs_torch": ms / base,
                   "label_agreement": equal / total, "feature_cosine": float(np.mean(cos)),
                   "export_s": export_s, "notes": manifest.notes}
            rows.append(row)
            print(f"{row['backend']}: {ms:.1f} ms/image ({row['ratio_vs_torch']:.2f}x torch), labels "
                  f"{row['label_agreement']:.4%} equal, feature cosine {row['feature_cosine']:.5f}")

    result = {
        "model": args.checkpoint or f"{args.model} (random weights)",
        "class_embeddings": "random" if args.random_classes else "prototypes (language features of image 0)",
        "crop": args.crop, "stride": args.stride, "imgsz": list(size), "classes": args.classes,
        "images": args.images, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "machine": {"cpu_count": __import__("os").cpu_count(), "torch": torch.__version__,
                    "load_average": list(__import__("os").getloadavg())},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Export formats on the CPU: {result['model']}, {size[0]}x{size[1]} image, crop {args.crop}",
             "", f"{result['threads']} threads, load average {result['machine']['load_average'][0]:.1f} at the end; "
             f"classes: {result['class_embeddings']}, {rows[0]['classes_in_labels']} of {args.classes} present in the "
             "PyTorch labels.", "",
             "| backend | ms / image | vs torch eager | label agreement | feature cosine |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['ms']:.1f} | {r['ratio_vs_torch']:.2f}x | {r['label_agreement']:.4%} | "
                     f"{r['feature_cosine']:.5f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
