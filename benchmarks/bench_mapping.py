"""Cost of 3D mapping per frame at 640x480 depth, as a ratio to the 2D segmentation of the same frame.

Measured in one process: RADSeg on c-radio_v3-b (exact architecture, seeded random weights; latency does not
depend on the weights) segments a 480x640 frame (paper defaults: crop 336, stride 224), then the same
frame's values are fused into a VoxelMap (5 cm voxels) from a synthetic 480x640 depth image (the room of
radseg_edge.mapping.synthetic seen from a circle of poses; rendering is not timed). Rows:

* features: the SCGA features (768-d) on the patch grid, full or PCA-reduced to 128 / 32 dims;
* probs: 21 class probabilities at the image size (what `--fuse probs` fuses);
* labels: integer labels (one-hot), the cheapest case.

Per row: fusion ms per frame (mean over the timed frames, the map already warm), the ratio to the
segmentation's ms, voxels after the sequence, stored bytes per voxel and MiB per million voxels, and the time of
one text query (21 classes) over the map: the first applies the language head to every voxel (features
mode), a second vocabulary only the cosine (the language features are cached).

    python benchmarks/bench_mapping.py            # CPU, 8 frames per row
    python benchmarks/bench_mapping.py --quick    # 4 frames per row, segmentation timed once
    python benchmarks/bench_mapping.py --device cuda

``run(device, quick)`` returns the JSON document (for benchmarks/gpu_acceptance.py). Writes
benchmarks/results/mapping.json and .md (mapping_cuda.* on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # benchmark the checkout this script lives in

from radseg_edge.mapping import VoxelMap  # noqa: E402
from radseg_edge.mapping.synthetic import SyntheticScene  # noqa: E402

RESULTS = ROOT / "results"
SIZE = (480, 640)
NUM_CLASSES = 21


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _segmentation(device: torch.device, runs: int, warmup: int):
    """(ms per 480x640 frame of RADSeg c-radio_v3-b, the SCGA feature map 768 x h x w, the language head)."""
    from radseg_edge.models import radio_from_config
    from radseg_edge.pipeline import RADSeg

    radio = radio_from_config("c-radio_v3-b", seed=0, adaptors=["siglip2"], device=device)
    seg = RADSeg(radio)
    vocab = torch.randn(NUM_CLASSES, seg.embedding_dim, generator=torch.Generator().manual_seed(0)).to(device)
    image = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    for _ in range(warmup):
        seg(image, vocab)
    times = []
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        result = seg(image, vocab)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), result.scga_features[0], seg.language_head, seg.kernels_name


def _fuse_row(name: str, values_of, frames, device, feature_dims=None, head=None, vocab=None) -> dict:
    vmap = VoxelMap(0.05, feature_dims=feature_dims, pca_frames=1, language_head=head, device=device)
    # the first frame fits the PCA (when reducing) and allocates the storage; it is not timed
    f0 = frames[0]
    vmap.integrate(values_of(0), f0.depth, f0.intrinsics, f0.pose, rgb=f0.rgb)
    vmap.flush()
    times = []
    for i, f in enumerate(frames[1:], start=1):
        v = values_of(i)
        _sync(device)
        t0 = time.perf_counter()
        vmap.integrate(v, f.depth, f.intrinsics, f.pose, rgb=f.rgb)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    query_ms = repeat_ms = None
    if vocab is not None or vmap.mode != "features":
        _sync(device)
        t0 = time.perf_counter()
        vmap.labels(vocab)
        _sync(device)
        query_ms = (time.perf_counter() - t0) * 1e3
        if vmap.mode == "features":  # a second vocabulary: the language features are cached
            t0 = time.perf_counter()
            vmap.labels(vocab[: max(1, vocab.shape[0] // 2)])
            _sync(device)
            repeat_ms = (time.perf_counter() - t0) * 1e3
    per_voxel = vmap.memory_bytes() / max(len(vmap), 1)
    return {"row": name, "channels": vmap.channels, "fuse_ms": float(np.mean(times)), "fuse_p50_ms": float(np.median(times)),
            "voxels": len(vmap), "bytes_per_voxel": per_voxel, "mib_per_million_voxels": per_voxel * 1e6 / 2**20,
            "query_ms": query_ms, "repeat_query_ms": repeat_ms, "frames_timed": len(times)}


def run(device: str = "cpu", quick: bool = False) -> dict:
    """Run the benchmark; returns the JSON document (also what :func:`main` saves)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    n_frames = 4 if quick else 8
    seg_ms, scga, head, kernels = _segmentation(dev, runs=1 if quick else 2, warmup=0 if quick else 1)
    scene = SyntheticScene()
    frames = scene.sequence(n_frames, SIZE, noise=0.01, seed=0)
    rng = torch.Generator().manual_seed(0)
    # per-frame values: the measured SCGA map perturbed per frame (same shape and scale as the real thing)
    feats = [(scga + 0.1 * torch.randn(scga.shape, generator=rng).to(dev)).contiguous() for _ in frames]
    probs = [torch.softmax(torch.randn(NUM_CLASSES, *SIZE, generator=rng) * 3, 0).to(dev) for _ in frames]
    labels = [torch.from_numpy(f.labels).to(dev) for f in frames]
    vocab = torch.randn(NUM_CLASSES, head.out_dim, generator=rng).to(dev)
    head = head.to(dev)
    rows = [
        _fuse_row(f"features {scga.shape[0]}-d", lambda i: feats[i], frames, dev, head=head, vocab=vocab),
        # PCA rows: the query costs as much as the full row's (reconstruction + the same head), not timed again
        _fuse_row("features PCA 128", lambda i: feats[i], frames, dev, feature_dims=128, head=head),
        _fuse_row("features PCA 32", lambda i: feats[i], frames, dev, feature_dims=32, head=head),
        _fuse_row(f"probs {NUM_CLASSES} classes", lambda i: probs[i], frames, dev),
        _fuse_row("labels (one-hot)", lambda i: labels[i], frames, dev),
    ]
    for r in rows:
        r["ratio_to_segmentation"] = r["fuse_ms"] / seg_ms
    return {
        "benchmark": "mapping", "device": str(dev), "quick": quick,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                    "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "segmentation": {"model": "c-radio_v3-b (random weights)", "size": list(SIZE), "crop": 336, "stride": 224,
                         "kernels": kernels, "ms": seg_ms, "scga_grid": list(scga.shape)},
        "depth_size": list(SIZE), "voxel_size": 0.05, "frames": n_frames, "rows": rows,
    }


def markdown(doc: dict) -> str:
    seg = doc["segmentation"]
    load = doc["machine"]["load_avg"]
    lines = [
        f"# Mapping: fusion cost per frame vs segmentation ({doc['device']})", "",
        f"{doc['date']}; {doc['machine']['platform']}, {doc['machine']['cpu_count']} CPUs, torch {doc['machine']['torch']}"
        + (f", load average {load[0]:.1f}" if load else "") + (f", {doc['machine']['gpu']}" if doc["machine"]["gpu"] else "")
        + (" (quick run)" if doc["quick"] else ""), "",
        f"Baseline, same process: RADSeg {seg['model']} on one {seg['size'][0]}x{seg['size'][1]} frame "
        f"(crop {seg['crop']}, stride {seg['stride']}, kernels {seg['kernels']}, SCGA grid {seg['scga_grid'][1]}x{seg['scga_grid'][2]}): "
        f"**{seg['ms']:.0f} ms**. Fusion: {doc['depth_size'][0]}x{doc['depth_size'][1]} depth, {doc['voxel_size']} m voxels, "
        f"mean of {doc['rows'][0]['frames_timed']} warm frames of a synthetic room; query = labels for "
        f"{NUM_CLASSES} classes over the whole map.", "",
        "| fused values | channels | fuse ms/frame | fuse / segmentation | voxels | bytes/voxel | MiB per 1M voxels | first query ms | next query ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        q = "-" if r["query_ms"] is None else f"{r['query_ms']:.0f}"
        q2 = "-" if r.get("repeat_query_ms") is None else f"{r['repeat_query_ms']:.0f}"
        lines.append(f"| {r['row']} | {r['channels']} | {r['fuse_ms']:.1f} | {r['ratio_to_segmentation']:.3f} | {r['voxels']} | "
                     f"{r['bytes_per_voxel']:.0f} | {r['mib_per_million_voxels']:.0f} | {q} | {q2} |")
    lines += ["", "Bytes per voxel count the used storage: key, fp32 values, hits, last-seen frame, mean colour and "
              "the sorted index (the growable buffers may hold up to 1.5x more). PCA rows: a query costs as much as the "
              "full row's (PCA reconstruction, then the same language head), not timed again."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="4 frames per row, segmentation timed once")
    args = parser.parse_args(argv)
    doc = run(args.device, args.quick)
    name = "mapping" if args.device == "cpu" else f"mapping_{args.device.split(':')[0]}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    print(f"wrote {RESULTS / name}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
