"""The exportable operator variants (radseg_edge/export/ops.py) equal the reference operators in core/."""

from __future__ import annotations

import pytest
import torch

from radseg_edge.core.predict import class_probabilities, denoise_prompts, labels_from_probs
from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference, standard_attention_reference
from radseg_edge.core.windows import extract_windows, preresize_size, stitch_windows, window_boxes
from radseg_edge.export import ops


def _attn_weights(c: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3 * c, c, generator=g) * 0.2, torch.randn(3 * c, generator=g) * 0.1,
            torch.randn(c, c, generator=g) * 0.2, torch.randn(c, generator=g) * 0.1)


def test_mask_value_is_finite_and_representable_in_fp16():
    v = torch.tensor(ops.MASK_VALUE, dtype=torch.float16)
    assert torch.isfinite(v) and float(v) == ops.MASK_VALUE
    # the largest score a row can hold (tau <= 100) subtracted from it must not overflow either
    assert torch.isfinite(v - torch.tensor(100.0, dtype=torch.float16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_masked_softmax_rows_equal_the_minus_inf_reference_and_keep_the_diagonal(dtype):
    g = torch.Generator().manual_seed(1)
    o = torch.nn.functional.normalize(torch.randn(2, 3, 40, 16, generator=g), dim=-1)
    sim = (o @ o.transpose(-2, -1)) * 10.0  # self-correlation: diagonal = tau > 0
    ref = torch.softmax(sim.masked_fill(sim < 0, float("-inf")), dim=-1)
    out = ops.masked_softmax(sim.to(dtype)).float()
    tol = 1e-6 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(out, ref, atol=tol, rtol=0)
    assert (out[sim < 0] == 0).all()  # masked entries are exactly zero, also in fp16
    assert (torch.diagonal(out, dim1=-2, dim2=-1) > 0).all()


def test_scra_attention_export_matches_reference():
    x = torch.randn(2, 30, 48, generator=torch.Generator().manual_seed(2))
    w = _attn_weights(48)
    torch.testing.assert_close(ops.scra_attention_export(x, *w, 3, 10.0), scra_attention_reference(x, *w, 3, 10.0),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ops.attention_export(x, *w, 3), standard_attention_reference(x, *w, 3),
                               atol=1e-5, rtol=1e-5)


def test_scga_export_matches_reference_and_keeps_fp32_statistics():
    f = torch.randn(2, 50, 32, generator=torch.Generator().manual_seed(3)) * 5
    torch.testing.assert_close(ops.scga_export(f, 10.0), scga_reference(f, 10.0), atol=1e-5, rtol=1e-5)
    half = ops.scga_export(f.half(), 10.0)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), scga_reference(f.half().float(), 10.0), atol=2e-2, rtol=1e-2)


def test_class_probabilities_denoise_and_labels_match_reference():
    g = torch.Generator().manual_seed(4)
    feats, text = torch.randn(1, 24, 5, 7, generator=g), torch.randn(6, 24, generator=g)
    probs = class_probabilities(feats, text)
    torch.testing.assert_close(ops.class_probabilities_export(feats, text), probs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ops.denoise_export(probs, 0.5), denoise_prompts(probs, 0.5))
    assert torch.equal(ops.labels_export(probs, 0.3), labels_from_probs(probs, 0.3))


@pytest.mark.parametrize("hw", [(70, 110), (96, 96), (48, 72)])
def test_static_windows_and_stitch_match_reference(hw):
    crop, stride, patch = 64, 32, 16
    size = preresize_size(*hw, crop, stride)
    boxes = window_boxes(*size, crop, stride)
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ops.extract_windows_static(image, boxes), extract_windows(image, boxes))
    feats = torch.randn(len(boxes), 8, crop // patch, crop // patch)
    grid = (-(-size[0] // patch), -(-size[1] // patch))
    torch.testing.assert_close(ops.stitch_static(feats, boxes, grid, patch), stitch_windows(feats, boxes, size, patch))
