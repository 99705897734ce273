"""`radseg-edge map` (fuse a posed RGB-D sequence into a voxel map) and `radseg-edge map-query` (label a map
with a new vocabulary, without the model). docs/mapping.md."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from radseg_edge.cli._common import (
    add_model_args,
    add_radseg_args,
    add_vocab_args,
    load_model_from_args,
    radseg_from_args,
    vocab_from_args,
)
from radseg_edge.errors import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "map", help="fuse a posed RGB-D sequence into a 3D voxel map (features or class probabilities)",
        description="Segments every N-th frame of a Replica (NICE-SLAM), ScanNet (SensReader) or TUM RGB-D sequence "
                    "and fuses the SCGA features (default; queryable later by any vocabulary with `map-query`) or "
                    "the class probabilities into a sparse voxel map (safetensors). Prints per-stage timings.",
    )
    p.add_argument("sequence", metavar="SEQUENCE", help="the sequence folder")
    p.add_argument("--layout", required=True, choices=("replica", "scannet", "tum"), help="folder layout")
    p.add_argument("-o", "--out", required=True, metavar="MAP", help="output map file (.safetensors)")
    p.add_argument("--ply", metavar="PATH", help="also write the labelled voxel centres as a PLY point cloud")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many (selected) frames")
    p.add_argument("--voxel", type=float, default=0.05, help="voxel size in metres (default 0.05, the paper's)")
    p.add_argument("--fuse", choices=("features", "probs"), default="features",
                   help="features (default: SCGA features, re-queryable) or probs (class probabilities, any backend)")
    p.add_argument("--feature-space", choices=("scga", "language"), default="scga",
                   help="features: fuse SCGA features and apply the language head per voxel at query time (default), "
                        "or fuse the language head's output")
    p.add_argument("--feature-dims", type=int, default=None,
                   help="reduce features by a PCA fitted on the first --pca-frames frames (RayFronts on Orin: 128)")
    p.add_argument("--pca-frames", type=int, default=5, help="frames the PCA is fitted on (default 5)")
    p.add_argument("--depth-min", type=float, default=0.1, help="nearest depth fused, metres (default 0.1)")
    p.add_argument("--depth-max", type=float, default=10.0, help="farthest depth fused, metres (default 10)")
    p.add_argument("--max-voxels", type=int, default=4_000_000, help="voxel budget (default 4M)")
    p.add_argument("--budget", choices=("drop", "evict"), default="drop",
                   help="when the budget is full: drop new voxels (default) or evict the least-observed ones")
    p.add_argument("--map-prediction-thresh", type=float, default=0.1,
                   help="voxels whose max probability is below it are unlabelled in the PLY (default 0.1, RADSEG.md 3D)")
    p.add_argument("--profile", metavar="JSON", help="write per-stage timings to this JSON file")
    add_model_args(p)
    add_radseg_args(p)
    add_vocab_args(p)
    from radseg_edge.backends import add_backend_args

    add_backend_args(p)
    p.set_defaults(func=run_map)

    q = sub.add_parser(
        "map-query", help="label a voxel map with a vocabulary (no model needed) and write a PLY",
        description="Reads a map written by `radseg-edge map` and labels its voxels: features maps by the 100*cos "
                    "softmax of the language features with the vocabulary (any vocabulary built for the same "
                    "text model), probability maps by their fused classes. Prints the voxels per class.",
    )
    q.add_argument("map", metavar="MAP", help="map file from `radseg-edge map`")
    q.add_argument("--vocab", metavar="FILE", help="vocabulary file (required for features maps)")
    q.add_argument("--ply", metavar="PATH", help="write the labelled voxel centres as a PLY point cloud")
    q.add_argument("--denoise", type=float, default=0.5, help="prompt-denoising threshold over the map (default 0.5)")
    q.add_argument("--prediction-thresh", type=float, default=0.1, help="unlabelled below this max probability (default 0.1)")
    q.add_argument("--eval", metavar="PLY", help="score against a labelled point cloud (PLY with x y z and a label property)")
    q.add_argument("--label-property", default="label", help="the label property of --eval's PLY (default label)")
    q.add_argument("--knn", type=int, default=5, help="neighbours voting per ground-truth point (default 5)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(func=run_query)


def run_map(args: argparse.Namespace) -> int:
    from rich.console import Console
    from tqdm import tqdm

    from radseg_edge.backends import backend_from_args
    from radseg_edge.mapping import Mapper, open_sequence
    from radseg_edge.utils.profiling import StageProfiler

    console = Console(stderr=True)
    if args.voxel <= 0:
        raise InputError(f"--voxel must be > 0 metres, got {args.voxel}")
    seq = open_sequence(args.sequence, args.layout, every=args.every, max_frames=args.max_frames)
    if len(seq) == 0:
        raise InputError(f"{args.sequence}: no frames with a valid pose")
    radio = load_model_from_args(args)
    vocab = vocab_from_args(args, radio)
    seg = radseg_from_args(args, radio, vocabulary=vocab)
    backend = backend_from_args(args, radseg=seg, vocabulary=vocab)
    prof = StageProfiler(device=seg.device)
    mapper = Mapper(backend, voxel_size=args.voxel, fuse=args.fuse, feature_space=args.feature_space,
                    feature_dims=args.feature_dims, pca_frames=args.pca_frames, vocabulary=vocab,
                    depth_range=(args.depth_min, args.depth_max), max_voxels=args.max_voxels, budget=args.budget,
                    profiler=prof)
    t0 = time.perf_counter()
    it = iter(seq)
    for _ in tqdm(range(len(seq)), desc="mapping", unit="frame"):
        with prof.stage("read"):
            frame = next(it)
        mapper.add_frame(frame)
    vmap = mapper.map
    with prof.stage("save"):
        out = vmap.save(args.out)
    if args.ply:
        vmap.to_ply(args.ply, vocab if args.fuse == "features" else None, prediction_thresh=args.map_prediction_thresh)
    wall = time.perf_counter() - t0
    summary = prof.summary()
    console.print(f"fused {len(seq)} frame(s) of {args.sequence} into {len(vmap)} voxels of {args.voxel} m "
                  f"({args.fuse}, {vmap.channels} channels, {vmap.memory_bytes() / 2**20:.1f} MiB) -> {out}")
    for name in ("read", "segment", "fuse"):
        if name in summary:
            s = summary[name]
            console.print(f"  {name:8s} {s['mean_ms']:9.1f} ms/frame (p50 {s['p50_ms']:.1f}, p90 {s['p90_ms']:.1f})")
    if vmap.dropped_points:
        console.print(f"  voxel budget full: {vmap.dropped_points} points not fused (--max-voxels, --budget evict)")
    if vmap.evicted_voxels:
        console.print(f"  voxel budget full: {vmap.evicted_voxels} voxels evicted")
    if args.profile:
        Path(args.profile).write_text(json.dumps({"frames": len(seq), "wall_s": wall, "voxels": len(vmap),
                                                  "stages": summary}, indent=2))
    return 0


def run_query(args: argparse.Namespace) -> int:
    import numpy as np

    from radseg_edge.mapping import VoxelMap
    from radseg_edge.models.text import Vocabulary

    vmap = VoxelMap.load(args.map)
    vocab = Vocabulary.load(args.vocab) if args.vocab else None
    if vmap.mode == "features" and vocab is None:
        raise InputError(f"{args.map} holds features: give --vocab FILE to label it")
    labels, _ = vmap.labels(vocab, args.denoise, args.prediction_thresh)
    names = list(vocab.names) if vocab is not None else (vmap.class_names or [str(i) for i in range(vmap.channels)])
    counts = np.bincount(labels.cpu().numpy() + 1, minlength=len(names) + 1)
    summary = {"voxels": len(vmap), "voxel_size": vmap.voxel_size, "mode": vmap.mode,
               "per_class": {n: int(c) for n, c in zip(names, counts[1:], strict=False)}, "unlabelled": int(counts[0])}
    if args.eval:
        from radseg_edge.mapping.evaluate import evaluate_map
        from radseg_edge.mapping.ply import read_ply

        cloud = read_ply(args.eval)
        if args.label_property not in cloud:
            raise InputError(f"{args.eval}: no vertex property {args.label_property!r} (has {sorted(cloud)}); use --label-property")
        pts = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
        scores = evaluate_map(vmap, pts, cloud[args.label_property].astype(np.int64), vocab, k=args.knn,
                              denoise=args.denoise, prediction_thresh=args.prediction_thresh)
        summary["miou"] = scores.miou
        summary["iou"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, scores.iou, strict=False)}
    if args.ply:
        vmap.to_ply(args.ply, vocab, args.denoise, args.prediction_thresh)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['voxels']} voxels of {vmap.voxel_size} m ({vmap.mode}); unlabelled {summary['unlabelled']}")
        for n, c in summary["per_class"].items():
            print(f"  {n:24s} {c}")
        if "miou" in summary:
            print(f"mIoU {100 * summary['miou']:.2f} (k = {args.knn} nearest voxels per ground-truth point)")
    return 0
