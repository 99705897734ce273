"""RADSeg+ end to end matches the official code (tests/fixtures/sam, every case): SAM-path features, SAM outputs,
masks, merged labels and probabilities; the coarse result comes back, flagged, when nothing can be refined."""

import dataclasses

import pytest
import torch

from radseg_edge.core.refine import RefineOptions, merge_refinement, postprocess_logits, resize_for_sam
from radseg_edge.errors import CheckpointError, InputError
from radseg_edge.models.sam_refiner import PAPER_COARSE_THRESH, SamRefiner, resolve_coarse_thresh
from radseg_edge.utils.profiling import StageProfiler
from tests.sam_cases import (
    CASES,
    SAM_WEIGHTS,
    assert_digest_close,
    coarse_probs,
    load_case,
    near0_pixels,
    refine_kwargs,
    refined,
    sha256,
    tiny_radio,
    tiny_refiner,
)


@pytest.mark.parametrize("name", CASES)
def test_sam_image_and_sam_path_features_match_reference(name):
    meta, t = load_case(name)
    res = refined(name)
    for b, info in enumerate(res.images):
        if info.sam_features is None:  # nothing prompted: the SAM path never ran
            continue
        x = resize_for_sam(t["image"][b : b + 1])
        assert sha256(x) == meta["digests"][f"b{b}_sam_image"]["sha256"]
        pad = torch.nn.functional.pad(info.sam_features, (0, 64 - info.sam_features.shape[-1], 0, 64 - info.sam_features.shape[-2]))
        assert_digest_close(pad, meta["digests"][f"b{b}_sam_neck_input_padded64"])
        assert_digest_close(info.image_embeddings, meta["digests"][f"b{b}_sam_image_embeddings"])
        assert_digest_close(info.radio_features, meta["digests"][f"b{b}_sam_radio_features"])
        if f"b{b}_sam_adaptor_features" in t:
            assert torch.equal(x[..., 5::16, 5::16], t[f"b{b}_sam_image_sub16"])
            assert torch.equal(x[..., :32, :32], t[f"b{b}_sam_image_crop_tl"])
            assert torch.equal(x[..., -32:, -32:], t[f"b{b}_sam_image_crop_br"])
            assert (info.radio_features - t[f"b{b}_sam_radio_features"]).abs().max() <= 1e-4
            assert (info.sam_features - t[f"b{b}_sam_adaptor_features"]).abs().max() <= 1e-4
            assert (info.image_embeddings - t[f"b{b}_sam_image_embeddings"]).abs().max() <= 1e-4


@pytest.mark.parametrize("name", CASES)
def test_sam_outputs_and_masks_match_reference(name):
    meta, t = load_case(name)
    res = refined(name)
    h, w = t["image"].shape[-2:]
    for b, info in enumerate(res.images):
        assert (info.iou - t[f"b{b}_sam_iou_predictions"][:, 0]).abs().max() <= 1e-4
        assert torch.equal(info.valid.to(torch.uint8), t[f"b{b}_sam_valid"])
        assert_digest_close(info.mask_inputs.squeeze(1).unsqueeze(1), meta["digests"][f"b{b}_sam_mask_inputs"])
        assert_digest_close(info.low_res_logits, meta["digests"][f"b{b}_sam_lowres_logits"], rtol=1e-4)
        if f"b{b}_sam_lowres_logits" in t:
            assert (info.low_res_logits - t[f"b{b}_sam_lowres_logits"]).abs().max() <= 1e-4
        logits = postprocess_logits(info.low_res_logits, info.sam_hw, (h, w))
        masks = (logits > 0).to(torch.uint8)
        flips = (masks != t[f"b{b}_sam_masks"]).nonzero()
        near = {tuple(r) for r in t[f"b{b}_sam_mask_logit_near0_idx"].tolist()}
        assert all((p, y, x) in near for p, _, y, x in flips.tolist())
        if f"b{b}_failed_area" in t:
            assert torch.equal(info.failed_area.to(torch.uint8), t[f"b{b}_failed_area"][0])
        if f"b{b}_labels_before_failed_merge" in t:
            assert torch.equal(info.labels_before_failed_merge.to(torch.uint8), t[f"b{b}_labels_before_failed_merge"][0])
        assert info.refined == (not meta["images"][b]["refinement_returned_unrefined"])


@pytest.mark.parametrize("name", CASES)
def test_final_labels_and_probabilities_match_reference(name):
    meta, t = load_case(name)
    res = refined(name)
    want_labels = t["final_seg_pred"][:, 0].long() - 1  # reference: 1-based, 0 = ignore
    want_probs = t["final_seg_probs"]
    assert want_probs[:, 0].abs().max() == 0
    for b in range(t["image"].shape[0]):
        ok = ~near0_pixels(t, b, want_labels.shape[-2:])
        assert torch.equal(res.labels[b][ok], want_labels[b][ok])
        assert (res.probs[b] - want_probs[b, 1:]).abs().amax(0)[ok].max() <= 1e-4
    # the reference's final labels are not the argmax of its final probabilities; neither are ours
    def not_argmax(labels, probs):
        return (labels != probs.argmax(1)) & (labels >= 0)

    want_ne = not_argmax(want_labels, want_probs[:, 1:])
    assert int(want_ne.sum()) == meta["threshold_margins"]["final_label_ne_argmax_final_probs_count"]
    ok = torch.stack([~near0_pixels(t, b, want_labels.shape[-2:]) for b in range(want_labels.shape[0])])
    assert torch.equal(not_argmax(res.labels, res.probs)[ok], want_ne[ok])


def test_no_valid_mask_returns_the_coarse_result_and_says_so():
    meta, t = load_case("sam_smooth_64x80_allfail")
    res = refined("sam_smooth_64x80_allfail")
    assert not res.refined and res.num_valid_masks == 0 and res.num_regions == 4
    assert "coarse result kept" in res.message and "IoU" in res.message
    assert torch.equal(res.probs, coarse_probs(t))
    assert torch.equal(res.labels, coarse_probs(t).argmax(1))


def test_no_region_large_enough_skips_sam_and_returns_the_coarse_result():
    meta, t = load_case("sam_smooth_120x160_full")
    kwargs = refine_kwargs(meta) | {"minimal_area": 60 * 80 + 1}
    prof = StageProfiler()
    res = tiny_refiner().refine(tiny_radio(), t["image"], coarse_probs(t), profiler=prof, **kwargs)
    assert not res.refined and res.num_regions == 0 and res.num_valid_masks == 0
    assert "no region" in res.message and "coarse result kept" in res.message
    assert torch.equal(res.probs, coarse_probs(t)) and torch.equal(res.labels, coarse_probs(t).argmax(1))
    assert "sam_backbone" not in prof.summary() and "sam_decoder" not in prof.summary()


def test_profiler_records_the_sam_stages():
    meta, t = load_case("sam_smooth_96x200_coarse0")
    prof = StageProfiler()
    tiny_refiner().refine(tiny_radio(), t["image"], coarse_probs(t), profiler=prof, **refine_kwargs(meta))
    assert {"sam_prompts", "sam_backbone", "sam_decoder", "sam_merge"} <= set(prof.summary())


def test_radseg_plus_through_the_pipeline_matches_reference():
    """RADSeg(refine='sam') end to end on a single-image case (batch-coupled SCGA is the pipeline's business)."""
    from radseg_edge.pipeline import RADSeg

    name = "sam_smooth_120x160_full"
    meta, t = load_case(name)
    s = meta["settings"]
    seg = RADSeg(
        tiny_radio(), scra_tau=s["scra_scaling"], scga_tau=s["scga_scaling"], crop=s["slide_crop"],
        stride=s["slide_stride"], denoise=s["prompt_denoising_thresh"], prediction_thresh=s["prediction_thresh"],
        refine="sam", sam_checkpoint=str(SAM_WEIGHTS),
        sam_num_heads=2, coarse_thresh=s["coarse_thresh"], minimal_area=s["minimal_area"],
        sam_iou_thresh=s["sam_iou_thresh"], sam_mask_coeff=s["sam_mask_coff"],
    )
    res = seg(t["image"], t["text_embeds"])
    assert res.refined and res.refine_message.startswith("refined with 2 of 4")
    ok = ~near0_pixels(t, 0, res.labels.shape[-2:])
    assert torch.equal(res.labels_with_ignore()[0][ok], t["final_seg_pred"][0, 0].long()[ok])
    assert (res.probs[0] - t["final_seg_probs"][0, 1:]).abs().amax(0)[ok].max() <= 1e-4


def test_output_frame_other_than_the_image_size_follows_the_reference_orig_img_size():
    """Coarse probabilities at another size (RADSeg's output_size): SAM runs on the image, prompts and the
    merge live in the output frame."""
    meta, t = load_case("sam_smooth_96x200_coarse0")
    probs = torch.nn.functional.interpolate(coarse_probs(t), size=(120, 250), mode="bilinear", align_corners=False)
    res = tiny_refiner().refine(tiny_radio(), t["image"], probs, **refine_kwargs(meta))
    info = res.images[0]
    assert info.sam_hw == tuple(meta["images"][0]["sam_input_hw"])  # from the 96 x 200 image
    assert info.prompts.seg_down.shape == (60, 125) and res.probs.shape == (1, 5, 120, 250)
    assert res.refined and torch.allclose(info.sam_features, refined("sam_smooth_96x200_coarse0").images[0].sam_features)


def test_prompt_batching_does_not_change_the_result():
    meta, t = load_case("sam_smooth_96x200_coarse0")  # 6 prompts
    one_by_one = SamRefiner(tiny_refiner().sam, prompt_batch=1).refine(tiny_radio(), t["image"], coarse_probs(t), **refine_kwargs(meta))
    ref = refined("sam_smooth_96x200_coarse0")
    assert (one_by_one.images[0].low_res_logits - ref.images[0].low_res_logits).abs().max() <= 1e-5
    assert torch.equal(one_by_one.images[0].valid, ref.images[0].valid)
    ok = ~near0_pixels(t, 0, ref.probs.shape[-2:])
    assert (one_by_one.probs - ref.probs)[0].abs().amax(0)[ok].max() <= 1e-5


def test_prediction_threshold_uses_the_coarse_maximum_by_default():
    meta, t = load_case("sam_photo_coffee_75x113")  # prediction_thresh 0.6
    res = refined("sam_photo_coffee_75x113")
    coarse_max = coarse_probs(t).amax(1)
    assert torch.equal(res.labels < 0, coarse_max < meta["settings"]["prediction_thresh"])
    final_max = res.probs.amax(1)
    assert bool(((final_max < 0.6) & (res.labels >= 0)).any())  # the refined maximum is not what decides


def test_corrected_failed_region_labels_follow_the_coarse_winner():
    coarse = torch.tensor([[[0.9, 0.2]], [[0.1, 0.8]]])  # C=2, H=1, W=2
    coarse_labels = coarse.argmax(0)
    logits = torch.tensor([[[4.0, 4.0]]])  # one valid mask of class 1 over both pixels
    failed = torch.ones(1, 1, 1, dtype=torch.bool)  # the x1/2 region covering pixel (0, 0) and (0, 1)
    ref = merge_refinement(coarse, coarse_labels, torch.tensor([1]), logits, failed)
    cor = merge_refinement(coarse, coarse_labels, torch.tensor([1]), logits, failed, RefineOptions.corrected())
    assert torch.equal(ref.probs, cor.probs)
    assert ref.probs[0, 0, 0] == pytest.approx(0.9) and ref.labels.tolist() == [[1, 1]]  # reference: no-op
    assert cor.labels.tolist() == [[0, 1]]  # corrected: coarse class 0 wins at pixel 0


def test_corrected_options_change_the_sam_inputs_but_keep_the_api():
    meta, t = load_case("sam_smooth_96x200_coarse0")
    sam = tiny_refiner().sam
    corrected = SamRefiner(sam, RefineOptions.corrected())
    kwargs = refine_kwargs(meta)
    res = corrected.refine(tiny_radio(), t["image"], coarse_probs(t), **kwargs)
    ref = refined("sam_smooth_96x200_coarse0")
    a, b = res.images[0], ref.images[0]
    assert torch.equal(a.prompts.regions, b.prompts.regions)
    assert not torch.equal(a.point_coords, b.point_coords)
    assert (a.iou - b.iou).abs().max() > 1e-3  # batched LayerNorm and true frames give other SAM outputs
    assert res.probs.shape == ref.probs.shape and res.labels.dtype == torch.int64


def test_accepts_a_segmentation_result_and_dataset_threshold_names():
    from radseg_edge.pipeline import SegmentationResult

    meta, t = load_case("sam_smooth_64x80_allfail")
    probs = coarse_probs(t)
    coarse = SegmentationResult(probs=probs, labels=probs.argmax(1), features=torch.zeros(1), scga_features=torch.zeros(1),
                                lowres_probs=torch.zeros(1))
    kwargs = refine_kwargs(meta) | {"minimal_area": 10**6}
    out = tiny_refiner()(tiny_radio(), t["image"], coarse, **kwargs)
    assert dataclasses.is_dataclass(out) and out.refined is False and "coarse result kept" in out.refine_message
    assert out.extras["refine"].num_regions == 0 and out.probs is not probs and torch.equal(out.probs, probs)
    assert resolve_coarse_thresh("VOC20") == PAPER_COARSE_THRESH["voc20"] == 0.2
    assert resolve_coarse_thresh("0.3") == 0.3
    with pytest.raises(InputError, match="coarse_thresh"):
        resolve_coarse_thresh("kitti")


def test_bad_inputs_are_refused_with_clear_errors():
    meta, t = load_case("sam_smooth_64x80_allfail")
    refiner, radio = tiny_refiner(), tiny_radio()
    with pytest.raises(InputError, match="B x 3 x H x W"):
        refiner.refine(radio, t["image"][0], coarse_probs(t))
    with pytest.raises(InputError, match="coarse probabilities"):
        refiner.refine(radio, t["image"], coarse_probs(t)[0])

    class NoSamHead(torch.nn.Module):
        heads = torch.nn.ModuleDict()

    with pytest.raises(CheckpointError, match="'sam' adaptor"):
        refiner.refine(NoSamHead(), t["image"], coarse_probs(t))
