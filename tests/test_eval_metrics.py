"""Confusion-matrix metrics: hand-computed values, ignore pixels, absent classes, direct per-class check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radseg_edge.errors import InputError
from radseg_edge.eval.metrics import Agreement, ConfusionMatrix

I = 255  # noqa: E741


def test_hand_computed_miou_with_ignore_absent_class_and_no_prediction():
    # 4 classes; class 3 appears in neither prediction nor ground truth -> excluded from the mean.
    gt = np.array([[0, 0, 1, 1], [2, 2, I, I]])
    pred = np.array([[0, 1, 1, 1], [2, -1, 0, 3]])  # predictions at ignore pixels are not scored
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    s = cm.scores()
    # class 0: tp 1, gt 2, pred 1 -> 1 / (2 + 1 - 1) = 1/2
    # class 1: tp 2, gt 2, pred 3 -> 2 / 3
    # class 2: tp 1, gt 2 (one pixel predicted "no class"), pred 1 -> 1 / 2
    assert s.iou[:3] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert math.isnan(s.iou[3])
    assert s.miou == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.scored_pixels == 6
    d = s.as_dict(["a", "b", "c", "d"])
    assert d["per_class_iou"]["d"] is None and d["miou"] == pytest.approx(100 * 5 / 9, abs=1e-4)


def test_class_only_predicted_counts_with_iou_zero():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 2]), np.array([0, 0]))
    s = cm.scores()
    assert s.iou[0] == pytest.approx(1 / 2) and s.iou[2] == 0.0 and math.isnan(s.iou[1])
    assert s.miou == pytest.approx(1 / 4)


def test_accumulation_over_images_is_the_sum_not_the_mean_of_images():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0]))  # image 1: class 0 perfect
    cm.update(np.array([1, 1]), np.array([0, 1]))  # image 2
    s = cm.scores()
    assert s.iou == pytest.approx([4 / 5, 1 / 2])
    assert cm.counts.dtype == np.int64


def _direct_iou(preds, gts, k, ignore=255):
    ious = []
    for c in range(k):
        inter = union = 0
        for p, g in zip(preds, gts, strict=True):
            valid = g != ignore
            inter += int(np.sum((p == c) & (g == c) & valid))
            union += int(np.sum(((p == c) | (g == c)) & valid))
        ious.append(inter / union if union else float("nan"))
    return np.array(ious)


def test_bincount_matrix_matches_a_direct_per_class_computation():
    rng = np.random.default_rng(0)
    k = 7
    preds, gts = [], []
    cm = ConfusionMatrix(k)
    for _ in range(5):
        g = rng.integers(0, k - 1, size=(13, 17))  # class k-1 never in the ground truth
        g[rng.random(g.shape) < 0.2] = 255
        p = rng.integers(-1, k - 2, size=g.shape)  # class k-2, k-1 never predicted; -1 = no class
        preds.append(p)
        gts.append(g)
        cm.update(p, g)
    expected = _direct_iou(preds, gts, k)
    np.testing.assert_allclose(cm.scores().iou, expected, equal_nan=True)
    assert math.isnan(expected[k - 1])
    assert cm.scores().miou == pytest.approx(np.nanmean(expected))


def test_counts_survive_a_json_roundtrip():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1, 2]]), np.array([[0, 2, 255]]))
    again = ConfusionMatrix.from_list(cm.to_list())
    np.testing.assert_array_equal(again.counts, cm.counts)
    assert again.counts.dtype == np.int64


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="original image size"):
        ConfusionMatrix(2).update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_agreement_over_all_and_scored_pixels():
    a = np.array([[0, 1], [2, 3]])
    b = np.array([[0, 1], [0, 0]])
    scored = np.array([[True, False], [True, True]])
    ag = Agreement()
    ag.update(a, b, scored)
    d = ag.as_dict()
    assert d["all_pixels"] == 50.0
    assert d["scored_pixels"] == pytest.approx(100 / 3, abs=1e-4)
