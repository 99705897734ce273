"""3D evaluation (the RayFronts / RADSeg protocol): score voxel labels against a labelled point cloud.

Every ground-truth point takes the majority label of its k = 5 nearest voxel centres (ties: the label of
the nearer voxel); mIoU over the classes, with :class:`radseg_edge.eval.metrics.ConfusionMatrix` semantics
(ground-truth points labelled ``ignore_label`` or outside 0..K-1 are not scored; a voxel label -1 is a miss).
"""

from __future__ import annotations

import numpy as np
import torch

from radseg_edge.errors import InputError
from radseg_edge.eval.metrics import ConfusionMatrix, SegScores


def knn_indices(reference: np.ndarray, queries: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Indices (N x k, nearest first) of the k nearest ``reference`` points (M x 3) of each query (N x 3).

    Uses scipy's cKDTree when installed, else exact brute force in torch, in chunks.
    """
    k = min(k, reference.shape[0])
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # pragma: no cover - scipy is optional
        cKDTree = None
    if cKDTree is not None:
        _, idx = cKDTree(reference).query(queries, k=k)
        return np.asarray(idx).reshape(queries.shape[0], k)
    ref = torch.as_tensor(reference, dtype=torch.float32)
    out = []
    for i in range(0, queries.shape[0], chunk):
        q = torch.as_tensor(queries[i : i + chunk], dtype=torch.float32)
        out.append(torch.cdist(q, ref).topk(k, largest=False).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def knn_labels(voxel_xyz: np.ndarray, voxel_labels: np.ndarray, points: np.ndarray, k: int = 5) -> np.ndarray:
    """N labels: the majority of the labels of each point's k nearest voxels (ties: the nearest's label)."""
    if voxel_xyz.shape[0] == 0:
        return np.full(points.shape[0], -1, np.int64)
    idx = knn_indices(np.asarray(voxel_xyz, np.float64), np.asarray(points, np.float64), k)
    lab = np.asarray(voxel_labels, np.int64)[idx]  # N x k, nearest first
    shifted = lab + 1  # -1 -> 0
    counts = np.zeros((lab.shape[0], int(shifted.max()) + 1), np.int64)
    np.add.at(counts, (np.arange(lab.shape[0])[:, None], shifted), 1)
    best = counts.max(1, keepdims=True)
    # ties: the first (nearest) neighbour whose label has the maximum count
    tied = counts[np.arange(lab.shape[0])[:, None], shifted] == best
    first = tied.argmax(1)
    return lab[np.arange(lab.shape[0]), first]


def evaluate_labels(voxel_xyz: np.ndarray, voxel_labels: np.ndarray, points: np.ndarray, gt_labels: np.ndarray,
                    num_classes: int, k: int = 5, ignore_label: int = 255) -> SegScores:
    """mIoU etc. of voxel labels against a labelled cloud (points N x 3 metres, gt_labels N) by kNN voting."""
    points, gt_labels = np.asarray(points), np.asarray(gt_labels)
    if points.ndim != 2 or points.shape[1] != 3 or gt_labels.shape != (points.shape[0],):
        raise InputError(f"ground truth must be N x 3 points and N labels, got {points.shape} and {gt_labels.shape}")
    pred = knn_labels(voxel_xyz, voxel_labels, points, k)
    matrix = ConfusionMatrix(num_classes, ignore_label)
    matrix.update(pred, gt_labels)
    return matrix.scores()


def evaluate_map(vmap, points: np.ndarray, gt_labels: np.ndarray, vocabulary=None, k: int = 5,
                 ignore_label: int = 255, **label_options) -> SegScores:
    """Score a :class:`VoxelMap` (labels from ``vocabulary`` in features mode) against a labelled cloud."""
    labels, _ = vmap.labels(vocabulary, **label_options)
    k_classes = len(vocabulary.names) if vocabulary is not None else int(vmap.num_classes or vmap.channels)
    return evaluate_labels(vmap.centers().cpu().numpy(), labels.cpu().numpy(), points, gt_labels, k_classes, k, ignore_label)
