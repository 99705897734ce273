"""Analytical FLOPs (radseg_edge.bench.flops) against values worked out by hand for the tiny checkpoint.

Tiny model (tests/fixtures/tiny_radio.pth.tar): C=192, 4 blocks, 3 heads, MLP 768, 8 prefix tokens, patch 16;
siglip2 summary head MLP2 192 -> 96 -> (1 inner 96x96) -> 64.
"""

from __future__ import annotations

import pytest

from radseg_edge.bench.flops import (
    BackboneShape,
    linear_shapes,
    per_token_flops,
    pipeline_flops,
    scga_flops,
    scga_matrix_bytes,
    window_flops,
)
from radseg_edge.bench.settings import workload
from radseg_edge.models import load_radio

TINY = BackboneShape(embed_dim=192, depth=4, num_heads=3, mlp_hidden=768, num_prefix=8, patch_size=16)


@pytest.fixture(scope="module")
def tiny_radio():
    return load_radio("tests/fixtures/tiny_radio.pth.tar", adaptors=["siglip2"])


def test_backbone_shape_is_read_from_the_model(tiny_radio):
    assert BackboneShape.from_model(tiny_radio) == TINY


def test_language_head_linear_shapes_of_the_tiny_head(tiny_radio):
    head = tiny_radio.heads["siglip2"].summary_head
    assert linear_shapes(head) == [(192, 96), (96, 96), (96, 64)]
    # 2 * (192*96 + 96*96 + 96*64) = 2 * (18432 + 9216 + 6144)
    assert per_token_flops(linear_shapes(head)) == 67_584


def test_window_flops_of_a_64x64_window_match_hand_count():
    # 64x64 window: P = 16 patches, T = 24 tokens
    f = window_flops(TINY, patches=16)
    assert f.patch_embed == 2 * 16 * 768 * 192 == 4_718_592
    # per block: qkv 2*24*192*576 = 5_308_416, q k^T + A v 4*24*24*192 = 442_368, proj 2*24*192*192 = 1_769_472
    assert f.attention == 4 * (5_308_416 + 442_368 + 1_769_472) == 30_081_024
    # per block: 2 * 2*24*192*768
    assert f.mlp == 4 * 14_155_776 == 56_623_104
    # self-correlation + A' v 442_368 and the second projection 1_769_472
    assert f.scra_extra == 2_211_840
    assert f.total == 4_718_592 + 30_081_024 + 56_623_104 + 2_211_840


def test_scga_counts_the_two_n_by_n_by_c_products():
    assert scga_flops(80, 192) == 2 * 2 * 80 * 80 * 192 == 4_915_200
    assert scga_matrix_bytes(14112) == 14112 * 14112 * 4


def test_pipeline_flops_of_the_fixture_image(tiny_radio):
    # seg_slide64s32_100x150: pre-resized to 128x160 -> 3 x 4 = 12 windows, 8 x 10 = 80 stitched patches
    wl = workload((100, 150), crop=64, stride=32)
    assert (wl.windows, wl.grid_hw, wl.scga_tokens) == (12, (8, 10), 80)
    head = linear_shapes(tiny_radio.heads["siglip2"].summary_head)
    f = pipeline_flops(TINY, wl, head, num_classes=7)
    assert f.backbone == 12 * 93_634_560
    assert f.scga == 4_915_200
    assert f.language_head == 80 * 67_584
    assert f.cosine == 2 * 80 * 7 * 64 == 71_680
    stages = f.stages()
    assert stages["total"] == stages["backbone"] + stages["scga"] + stages["head"]
    assert stages["head"] == 80 * 67_584 + 71_680
