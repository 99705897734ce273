"""Build a voxel map of the synthetic room from ground-truth labels, score it, and write a coloured PLY.

    python examples/map_synthetic.py [--out room.ply] [--frames 8] [--voxel 0.05]

No model needed: the frames' ground-truth labels are fused as one-hot probabilities, with Kinect-like depth
noise. With a model, the same loop is `Mapper(RADSeg(radio, vocabulary=vocab)).add_frame(frame)` (or
`radseg-edge map SEQUENCE --layout replica ...` on a folder written by `write_sequence`).
"""

import argparse

import torch

from radseg_edge.mapping import VoxelMap
from radseg_edge.mapping.evaluate import evaluate_map
from radseg_edge.mapping.synthetic import SyntheticScene, surface_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="room.ply")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--voxel", type=float, default=0.05)
    args = parser.parse_args()
    scene = SyntheticScene()
    noisy = scene.sequence(args.frames, (240, 320), noise=0.01, seed=0)
    vmap = VoxelMap(args.voxel, class_names=list(scene.classes))
    for frame in noisy:
        vmap.integrate(torch.from_numpy(frame.labels), frame.depth, frame.intrinsics, frame.pose, rgb=frame.rgb)
    points, gt = surface_points(scene.sequence(args.frames, (240, 320)))
    scores = evaluate_map(vmap, points[::4], gt[::4], k=5)
    print(f"{len(vmap)} voxels of {args.voxel} m from {args.frames} frames; mIoU {100 * scores.miou:.1f} "
          f"(k = 5 nearest voxels per ground-truth point)")
    print(f"wrote {vmap.to_ply(args.out)}")


if __name__ == "__main__":
    main()
