"""RADSeg end to end vs the official code (every radseg_predict fixture case)."""

import re

import numpy as np
import pytest
import torch

from radseg_edge.core.predict import class_maxima, upsample_probs
from radseg_edge.errors import InputError
from radseg_edge.pipeline import RADSeg
from radseg_edge.utils.precision import precision_supported
from tests.conftest import load_case

CASES = ["seg_single_80x112", "seg_slide112s48_70x110", "seg_slide112s48_96x96_noresize",
         "seg_slide64s32_100x150", "seg_photo_coffee_slide64s32_90x135"]


def _radseg(radio, settings, **kw):
    return RADSeg(radio, scra_tau=settings["scra_scaling"], scga_tau=settings["scga_scaling"],
                  crop=settings["slide_crop"], stride=settings["slide_stride"],
                  denoise=settings["prompt_denoising_thresh"], prediction_thresh=settings["prediction_thresh"],
                  kernels="reference", **kw)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("case", CASES)
def test_every_stage_matches_reference(tiny_radio, case):
    meta, t = load_case(case)
    seg = _radseg(tiny_radio, meta["settings"])
    if "window_features" in t and meta["settings"]["slide_crop"]:
        _, windows, _ = seg.windows_of(t["image"])
        with torch.no_grad():
            assert _rel(seg.backbone(windows), t["window_features"]) <= 1e-4
    r = seg(t["image"], t["text_embeds"])
    assert _rel(r.features, t["stitched_features"]) <= 1e-4
    assert _rel(r.scga_features, t["scga_features"]) <= 1e-4
    assert _rel(seg.language_features(r.scga_features), t["lang_aligned_features"]) <= 1e-4
    assert (r.lowres_probs - t["seg_probs_lowres"]).abs().max() <= 1e-5
    assert (r.probs - t["seg_probs"][:, 1:]).abs().max() <= 1e-5
    assert torch.equal(r.labels_with_ignore()[:, None], t["seg_pred"])
    if "seg_pred_noignore" in t:
        assert torch.equal(r.probs.argmax(1, keepdim=True), t["seg_pred_noignore"])
    denoised = sorted(meta["denoised_class_indices_0based"])
    assert torch.nonzero(r.probs.flatten(2).amax(-1)[0] == 0).flatten().tolist() == denoised


def test_denoise_maxima_match_reference(tiny_radio):
    meta, t = load_case("seg_slide64s32_100x150")
    up = upsample_probs(t["seg_probs_lowres"], tuple(t["image"].shape[-2:]))
    assert (class_maxima(up)[0] - t["denoise_class_max"]).abs().max() <= 1e-5


def test_batch_images_are_independent_unlike_the_reference_quirk(tiny_radio):
    """The official batch path mixes images (QUIRK fixture); ours equals running each image alone."""
    meta, t = load_case("seg_slide64s32_batch2_48x72_QUIRK")
    seg = _radseg(tiny_radio, meta["settings"])
    both = seg(t["image"], t["text_embeds"])
    # window features of each image are exactly the reference's (window-major: entry j = window j//B of image j%B)
    for i in range(2):
        _, windows, _ = seg.windows_of(t["image"][i : i + 1])
        with torch.no_grad():
            assert _rel(seg.backbone(windows), t["window_features"][i::2]) <= 1e-4
        alone = seg(t["image"][i : i + 1], t["text_embeds"])
        torch.testing.assert_close(both.probs[i], alone.probs[0])
        torch.testing.assert_close(both.scga_features[i], alone.scga_features[0])
    # the reference's stitched maps are identical for both images (the defect); ours differ
    assert torch.equal(t["stitched_features"][0], t["stitched_features"][1])
    assert not torch.allclose(both.features[0], both.features[1])


def test_uint8_bgr_array_equals_rgb_tensor(tiny_radio):
    meta, t = load_case("seg_slide64s32_100x150")
    seg = _radseg(tiny_radio, meta["settings"])
    rgb = (t["image"][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    a = seg(rgb, t["text_embeds"])
    b = seg(np.ascontiguousarray(rgb[..., ::-1]), t["text_embeds"], channel_order="bgr")
    c = seg(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, t["text_embeds"])
    assert torch.equal(a.labels, b.labels) and torch.equal(a.labels, c.labels)
    assert a.probs.shape == (1, 7, 100, 150)


def test_window_batching_does_not_change_results(tiny_radio):
    meta, t = load_case("seg_slide64s32_100x150")
    full = _radseg(tiny_radio, meta["settings"], window_batch=0)(t["image"], t["text_embeds"])
    for batch in (None, 5):  # None: the CPU default of 4 windows per call
        chunked = _radseg(tiny_radio, meta["settings"], window_batch=batch)(t["image"], t["text_embeds"])
        torch.testing.assert_close(full.probs, chunked.probs, atol=1e-5, rtol=0)
    assert _radseg(tiny_radio, meta["settings"]).windows_per_call == 4


def test_bf16_precision_runs_on_cpu_and_mostly_agrees(tiny_radio):
    """bf16 runs where the library says this CPU supports it, and is refused with the reason elsewhere
    (AVX2-only x86, or ONEDNN_MAX_CPU_ISA=AVX2 on any CPU)."""
    meta, t = load_case("seg_slide64s32_100x150")
    ok, reason = precision_supported("bf16", "cpu")
    if not ok:
        with pytest.raises(InputError, match=re.escape(reason)):
            _radseg(tiny_radio, meta["settings"], precision="bf16")
        return
    ref = _radseg(tiny_radio, meta["settings"])(t["image"], t["text_embeds"])
    low = _radseg(tiny_radio, meta["settings"], precision="bf16")(t["image"], t["text_embeds"])
    assert low.probs.dtype == torch.float32
    assert (low.labels == ref.labels).float().mean() > 0.8


def test_output_size_predicts_at_another_resolution(tiny_radio):
    meta, t = load_case("seg_slide64s32_100x150")
    seg = _radseg(tiny_radio, meta["settings"])
    r = seg(t["image"], t["text_embeds"], output_size=(50, 75))
    expected = upsample_probs(t["seg_probs_lowres"], (50, 75))
    expected = expected * (class_maxima(expected) >= 0.5)[:, :, None, None]
    assert r.probs.shape == (1, 7, 50, 75) and (r.probs - expected).abs().max() <= 1e-5
