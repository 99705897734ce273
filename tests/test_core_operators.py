"""Reference operators vs the official code's tensors (fixtures scra_attention_last_block, scga_batch2)
and the window arithmetic vs the recorded grids."""

import pytest
import torch
import torch.nn.functional as F

from radseg_edge.core import (
    preresize_size,
    scga_reference,
    scra_attention_reference,
    standard_attention_reference,
    window_boxes,
)
from radseg_edge.core.predict import class_probabilities, denoise_prompts, labels_from_probs
from radseg_edge.core.scga import scga_threshold
from tests.conftest import load_case

SLIDING_CASES = ["seg_slide112s48_70x110", "seg_slide112s48_96x96_noresize", "seg_slide64s32_100x150",
                 "seg_photo_coffee_slide64s32_90x135", "seg_slide64s32_batch2_48x72_QUIRK"]


def _last_block_weights(tiny_radio):
    a = tiny_radio.blocks[-1].attn
    return a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias, a.num_heads


@pytest.mark.parametrize("tau", [10, 7])
def test_scra_matches_reference_attention(tiny_radio, tau):
    _, t = load_case("scra_attention_last_block")
    with torch.no_grad():
        out = scra_attention_reference(t["attn_input"], *_last_block_weights(tiny_radio), tau=float(tau))
    ref = t[f"scra_attn_output_s{tau}"]
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_standard_attention_matches_timm_attention(tiny_radio):
    _, t = load_case("scra_attention_last_block")
    with torch.no_grad():
        out = standard_attention_reference(t["attn_input"], *_last_block_weights(tiny_radio))
        module = tiny_radio.blocks[-1].attn(t["attn_input"])
    ref = t["standard_attn_output"]
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert (module - ref).abs().max() <= 1e-5 * ref.abs().max()


def _nlc(x):
    return x.flatten(2).transpose(1, 2)


def test_scga_is_per_image_and_the_batch_mean_defect_is_reproducible():
    _, t = load_case("scga_batch2")
    x = _nlc(t["scga_input"])
    per_image = scga_reference(x, 10.0).transpose(1, 2).reshape(t["scga_input"].shape)
    batch_mixed = scga_reference(x, 10.0, batch_mean=True).transpose(1, 2).reshape(t["scga_input"].shape)
    scale = t["scga_output"].abs().max()
    assert (per_image - t["scga_output_per_image"]).abs().max() <= 1e-4 * scale
    assert (batch_mixed - t["scga_output"]).abs().max() <= 1e-4 * scale
    for i in range(2):  # image i alone gives the same as inside the batch
        alone = scga_reference(x[i : i + 1], 10.0)
        torch.testing.assert_close(alone[0], scga_reference(x, 10.0)[i])


def test_scga_threshold_is_mean_of_all_similarities_in_linear_time():
    x = torch.randn(3, 37, 16)
    t = F.normalize(x, dim=-1)
    torch.testing.assert_close(scga_threshold(x).flatten(), (t @ t.transpose(1, 2)).mean(dim=(1, 2)))


@pytest.mark.parametrize("case", SLIDING_CASES)
def test_preresize_and_window_grid_match_reference(case):
    meta, t = load_case(case)
    s = meta["settings"]
    h, w = t["image"].shape[-2:]
    assert preresize_size(h, w, s["slide_crop"], s["slide_stride"]) == tuple(t["preprocessed_image"].shape[-2:])
    ph, pw = t["preprocessed_image"].shape[-2:]
    boxes = window_boxes(ph, pw, s["slide_crop"], s["slide_stride"])
    assert torch.equal(torch.tensor(boxes) // 16, t["window_patch_locs"])


def test_windows_smaller_than_crop_are_kept_when_sizes_are_stride_multiples():
    assert preresize_size(96, 96, 112, 48) == (96, 96)
    assert window_boxes(96, 96, 112, 48) == [(0, 0, 96, 96)]


def test_probabilities_are_softmax_of_100_cosine():
    f = torch.randn(1, 8, 3, 4)
    t = torch.randn(5, 8) * 3
    p = class_probabilities(f, t)
    cos = torch.einsum("bdhw,kd->bkhw", F.normalize(f, dim=1), F.normalize(t, dim=1))
    torch.testing.assert_close(p, torch.softmax(100 * cos, dim=1))


def test_denoising_is_per_image_and_strict():
    probs = torch.zeros(2, 3, 2, 2)
    probs[0, 0] = 0.5  # exactly the threshold: kept (strict <)
    probs[0, 1, 0, 0] = 0.49
    probs[1, 1, 0, 0] = 0.9  # class 1 is confident in image 1 only
    out = denoise_prompts(probs, 0.5)
    assert out[0, 0].eq(0.5).all() and out[0, 1].eq(0).all() and out[1, 1, 0, 0] == 0.9


def test_prediction_threshold_marks_ignore():
    probs = torch.tensor([[[[0.7, 0.2]], [[0.3, 0.1]]]])
    assert labels_from_probs(probs, 0.5).tolist() == [[[0, -1]]]
    assert labels_from_probs(probs, 0.0).tolist() == [[[0, 0]]]
