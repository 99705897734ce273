"""The naive baseline reproduces the official release's outputs (fixtures made by running the official code)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from radseg_edge.bench.baseline import NaiveRADSeg
from radseg_edge.models import load_radio

CASES = [("seg_slide64s32_100x150", 64, 32), ("seg_slide112s48_70x110", 112, 48), ("seg_single_80x112", 0, 0)]


@pytest.fixture(scope="module")
def tiny_radio():
    return load_radio("tests/fixtures/tiny_radio.pth.tar", adaptors=["siglip2"])


@pytest.mark.parametrize("attention", ["sdpa", "materialized"])
@pytest.mark.parametrize("case,crop,stride", CASES)
def test_baseline_matches_official_probabilities_and_labels(tiny_radio, case, crop, stride, attention):
    ref = load_file(f"tests/fixtures/{case}.safetensors")
    out = NaiveRADSeg(tiny_radio, crop=crop, stride=stride, attention=attention)(ref["image"], ref["text_embeds"])
    # the official probabilities carry a leading all-zero "ignore" channel and labels shifted by +1
    torch.testing.assert_close(out.probs, ref["seg_probs"][:, 1:], atol=1e-5, rtol=0)
    assert torch.equal(out.labels + 1, ref["seg_pred"][:, 0])
    torch.testing.assert_close(out.scga_features, ref["scga_features"], atol=1e-4, rtol=0)
