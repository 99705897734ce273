"""Confusion-matrix segmentation metrics: mIoU, per-class IoU, pixel accuracy (mmseg's IoUMetric semantics).

Ground-truth pixels equal to the ignore label are not scored. A predicted value outside ``0..K-1``
(e.g. -1 or 255, "no class") at a scored pixel is a miss for the ground-truth class and a false positive
for no class. A class absent from both prediction and ground truth over the whole set has IoU nan and is
left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radseg_edge.errors import InputError


class ConfusionMatrix:
    """K x (K+1) int64 pixel counts: rows = ground-truth class, columns = predicted class, last column = none.

    ``update`` is vectorised with ``np.bincount`` and accumulates in int64 (no overflow on full datasets).
    """

    def __init__(self, num_classes: int, ignore_label: int = 255):
        if num_classes < 1:
            raise InputError(f"a confusion matrix needs at least one class, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        """Add one image: ``prediction`` and ``ground_truth`` are H x W integer arrays of the same shape."""
        prediction = np.asarray(prediction)
        ground_truth = np.asarray(ground_truth)
        if prediction.shape != ground_truth.shape:
            raise InputError(
                f"prediction of shape {prediction.shape} does not match the ground truth's {ground_truth.shape}; "
                "predictions must be at the original image size"
            )
        k = self.num_classes
        gt = ground_truth.reshape(-1).astype(np.int64)
        scored = (gt >= 0) & (gt < k) & (gt != self.ignore_label)
        gt = gt[scored]
        pred = prediction.reshape(-1).astype(np.int64)[scored]
        pred = np.where((pred >= 0) & (pred < k), pred, k)
        self.counts += np.bincount(gt * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)

    def merge(self, other: ConfusionMatrix) -> None:
        self.counts += other.counts

    def scores(self) -> SegScores:
        return scores_from_counts(self.counts)

    def to_list(self) -> list[list[int]]:
        return self.counts.tolist()

    @classmethod
    def from_list(cls, counts: list[list[int]], ignore_label: int = 255) -> ConfusionMatrix:
        array = np.asarray(counts, dtype=np.int64)
        matrix = cls(array.shape[0], ignore_label)
        if array.shape != matrix.counts.shape:
            raise InputError(f"confusion counts must be K x (K+1), got {array.shape}")
        matrix.counts = array
        return matrix


@dataclass
class SegScores:
    """Scores in [0, 1]. ``iou``/``accuracy`` are per class (nan for classes absent from both sides)."""

    miou: float
    iou: np.ndarray
    pixel_accuracy: float
    mean_accuracy: float
    accuracy: np.ndarray
    scored_pixels: int

    def as_dict(self, class_names: list[str] | None = None) -> dict:
        """JSON-ready: percentages like the paper's tables; nan becomes None."""
        names = class_names or [str(i) for i in range(len(self.iou))]

        def pct(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x) * 100.0, 4)

        return {
            "miou": pct(self.miou),
            "pixel_accuracy": pct(self.pixel_accuracy),
            "mean_accuracy": pct(self.mean_accuracy),
            "scored_pixels": self.scored_pixels,
            "per_class_iou": {n: pct(v) for n, v in zip(names, self.iou, strict=True)},
        }


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


def scores_from_counts(counts: np.ndarray) -> SegScores:
    """mIoU etc. from K x (K+1) confusion counts (see :class:`ConfusionMatrix`)."""
    counts = np.asarray(counts, dtype=np.int64)
    k = counts.shape[0]
    tp = np.diag(counts[:, :k]).astype(np.float64)
    gt_total = counts.sum(axis=1).astype(np.float64)
    pred_total = counts[:, :k].sum(axis=0).astype(np.float64)
    union = gt_total + pred_total - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        accuracy = np.where(gt_total > 0, tp / gt_total, np.nan)
    scored = int(gt_total.sum())
    return SegScores(
        miou=_nanmean(iou),
        iou=iou,
        pixel_accuracy=float(tp.sum() / scored) if scored else float("nan"),
        mean_accuracy=_nanmean(accuracy),
        accuracy=accuracy,
        scored_pixels=scored,
    )


@dataclass
class Agreement:
    """Per-pixel label agreement between two predictions, over all pixels and over scored (non-ignore) pixels."""

    same_all: int = 0
    total_all: int = 0
    same_scored: int = 0
    total_scored: int = 0

    def update(self, a: np.ndarray, b: np.ndarray, scored: np.ndarray) -> None:
        """``a``, ``b``: H x W labels; ``scored``: H x W bool (ground truth not ignored)."""
        if a.shape != b.shape or a.shape != scored.shape:
            raise InputError(f"cannot compare label maps of shapes {a.shape} and {b.shape} (mask {scored.shape})")
        same = a == b
        self.same_all += int(same.sum())
        self.total_all += int(same.size)
        self.same_scored += int(same[scored].sum())
        self.total_scored += int(scored.sum())

    def as_dict(self) -> dict:
        def pct(n: int, d: int) -> float | None:
            return round(100.0 * n / d, 4) if d else None

        return {
            "all_pixels": pct(self.same_all, self.total_all),
            "scored_pixels": pct(self.same_scored, self.total_scored),
            "counts": [self.same_all, self.total_all, self.same_scored, self.total_scored],
        }
