"""RADSeg with the blocked kernels ("auto" on the CPU) reproduces the official fixtures end to end."""

import pytest
import torch

from radseg_edge.pipeline import RADSeg
from tests.conftest import load_case
from tests.kernels_cases import relative_error


@pytest.mark.parametrize("case", ["seg_slide64s32_100x150", "seg_photo_coffee_slide64s32_90x135"])
def test_auto_kernels_pipeline_matches_official_fixture(tiny_radio, case):
    meta, t = load_case(case)
    s = meta["settings"]
    seg = RADSeg(tiny_radio, scra_tau=s["scra_scaling"], scga_tau=s["scga_scaling"], crop=s["slide_crop"],
                 stride=s["slide_stride"], denoise=s["prompt_denoising_thresh"],
                 prediction_thresh=s["prediction_thresh"], kernels="auto")  # fmt: skip
    assert seg.kernels_name == "blocked"
    result = seg(t["image"], t["text_embeds"])
    assert relative_error(result.features, t["stitched_features"]) <= 1e-4
    assert relative_error(result.scga_features, t["scga_features"]) <= 1e-4
    assert (result.probs - t["seg_probs"][:, 1:]).abs().max() <= 1e-5
    assert torch.equal(result.labels_with_ignore()[:, None], t["seg_pred"])
