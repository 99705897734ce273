"""The blocked CPU SCGA/SCRA equal the references and the official-code fixtures (fp32 round-off)."""

from __future__ import annotations

import pytest
import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference, self_correlation_attention, split_qkv
from radseg_edge.kernels.blocked import (
    SLAB_ELEMENTS,
    rows_per_block,
    scga_blocked,
    scra_blocked,
    self_correlation_blocked,
)
from tests.kernels_cases import (
    SEG_SCGA_FIXTURES,
    diagonal_rows_features,
    relative_error,
    scga_batch_fixture,
    scga_fixture,
    scra_fixture,
    scra_random_args,
)

TOL = 1e-5


@pytest.mark.parametrize(("name", "batch_mean"), SEG_SCGA_FIXTURES)
def test_blocked_scga_matches_official_stitched_fixture(name, batch_mean):
    features, expected = scga_fixture(name)
    out = scga_blocked(features, 10.0, batch_mean=batch_mean, rows=16)
    assert relative_error(out, expected) <= TOL
    assert relative_error(out, scga_reference(features, 10.0, batch_mean=batch_mean)) <= TOL


def test_blocked_scga_batch_threshold_modes_match_scga_batch2_fixture():
    case = scga_batch_fixture()
    assert relative_error(scga_blocked(case["input"], 10.0, rows=7), case["per_image"]) <= TOL
    assert (
        relative_error(scga_blocked(case["input"], 10.0, batch_mean=True, rows=7), case["batch_mean"]) <= TOL
    )


@pytest.mark.parametrize("tau", [1.0, 10.0, 30.0])
@pytest.mark.parametrize("rows", [7, 50, 257, None])
def test_blocked_scga_equals_reference_for_odd_sizes(tau, rows):
    features = torch.randn(3, 257, 64, generator=torch.Generator().manual_seed(1))
    assert relative_error(scga_blocked(features, tau, rows=rows), scga_reference(features, tau)) <= TOL


def test_blocked_scga_rows_with_only_the_diagonal_return_their_input():
    features = diagonal_rows_features()
    out = scga_blocked(features, 10.0, rows=16)
    torch.testing.assert_close(out[0, :12], features[0, :12], rtol=0, atol=1e-6)
    assert relative_error(out, scga_reference(features, 10.0)) <= TOL


def test_blocked_scga_keeps_the_input_dtype():
    features = torch.randn(1, 40, 16, dtype=torch.float64)
    out = scga_blocked(features, 10.0)
    assert out.dtype == torch.float64 and out.shape == features.shape
    assert relative_error(out, scga_reference(features, 10.0)) <= TOL


@pytest.mark.parametrize("tau", [10.0, 7.0])
def test_blocked_scra_matches_official_last_block_fixture(tau):
    args, expected = scra_fixture()
    out = scra_blocked(*args, tau)
    assert relative_error(out, expected[tau]) <= TOL
    assert relative_error(out, scra_attention_reference(*args, tau)) <= TOL


@pytest.mark.parametrize("rows", [1, 5, 21])
def test_blocked_self_correlation_equals_reference_step(rows):
    x, qkv_w, qkv_b, _, _, heads = scra_random_args()
    _, _, v = split_qkv(x, qkv_w, qkv_b, heads)
    o = torch.randn_like(x)
    expected = self_correlation_attention(o, v, 10.0)
    assert relative_error(self_correlation_blocked(o, v, 10.0, rows=rows), expected) <= TOL


def test_rows_per_block_bounds_the_similarity_slab():
    for n, groups in [(14112, 1), (449, 288), (100, 1)]:
        rows = rows_per_block(n, groups)
        assert 1 <= rows <= n
        assert rows == 16 or groups * rows * n <= SLAB_ELEMENTS
    assert rows_per_block(14112) * 14112 * 4 <= 16 * 2**20


def test_blocked_self_correlation_processes_images_in_chunks(monkeypatch):
    import radseg_edge.kernels.blocked as blocked

    x, qkv_w, qkv_b, _, _, heads = scra_random_args(b=5, n=21, c=48)
    _, _, v = split_qkv(x, qkv_w, qkv_b, heads)
    o = torch.randn_like(x)
    monkeypatch.setattr(blocked, "SLAB_ELEMENTS", 2 * heads * 21 * 21)  # two images per chunk
    out = blocked.self_correlation_blocked(o, v, 10.0)
    assert relative_error(out, self_correlation_attention(o, v, 10.0)) <= TOL
