"""RADSeg+ prompts from the coarse prediction match the official code exactly (tests/fixtures/sam, every case):
x1/2 maps, 8-connected regions, points, boxes, SAM coordinates and mask prompts; corrected frames separately."""

import pytest
import torch

from radseg_edge.core.refine import (
    RefineOptions,
    build_prompts,
    downsample_labels,
    mask_prompts,
    preprocess_shape,
    prompt_coordinates,
    sam_input_size,
)
from tests.sam_cases import CASES, coarse_probs, load_case, refined, sha256


def _images(name):
    meta, t = load_case(name)
    return [(meta, t, b) for b in range(t["image"].shape[0])]


def _prompts(t, b, meta):
    probs = t[f"b{b}_coarse_probs"]
    labels = torch.max(probs.unsqueeze(0), 1)[1][0]
    s = meta["settings"]
    return probs, labels, build_prompts(probs, labels, s["coarse_thresh"], s["minimal_area"])


@pytest.mark.parametrize("name", CASES)
def test_regions_points_and_boxes_match_reference(name):
    for meta, t, b in _images(name):
        probs, labels, p = _prompts(t, b, meta)
        assert torch.equal(labels.to(torch.uint8), t[f"b{b}_coarse_pred"][0])
        assert torch.equal(p.seg_down.to(torch.uint8), t[f"b{b}_seg_down"])
        assert sha256(p.probs_down) == meta["digests"][f"b{b}_seg_logits_down"]["sha256"]
        assert torch.equal(p.classes, t[f"b{b}_region_class"])
        assert torch.equal(p.regions.to(torch.uint8), t[f"b{b}_regions"])
        assert torch.equal(p.points_xy, t[f"b{b}_region_points_xy"])
        assert torch.equal(p.boxes_xyxy, t[f"b{b}_region_boxes_xyxy"])
        assert torch.allclose(p.scores, t[f"b{b}_region_scores"], atol=1e-6, rtol=0)
        counts = {str(c): int((p.classes == c).sum()) for c in p.prompted_classes()}
        assert counts == meta["images"][b]["prompts_per_class"]


@pytest.mark.parametrize("name", CASES)
def test_sam_coordinates_and_mask_prompts_match_reference(name):
    for meta, t, b in _images(name):
        probs, _, p = _prompts(t, b, meta)
        h, w = probs.shape[-2:]
        info = meta["images"][b]
        sam_hw = sam_input_size(h, w)
        assert list(sam_hw) == info["sam_input_hw"]
        assert list(preprocess_shape(h, w, 256)) == info["mask_input_valid_hw"]
        assert list(preprocess_shape(h // 2, w // 2, 1024)) == info["coord_transform_preprocess_shape"]
        coords, labels, boxes = prompt_coordinates(p, sam_hw)
        assert torch.equal(coords, t[f"b{b}_sam_point_coords"])
        assert torch.equal(labels, t[f"b{b}_sam_point_labels"])
        assert torch.equal(boxes, t[f"b{b}_sam_boxes"])
        classes = p.prompted_classes()
        assert classes == t[f"b{b}_sam_mask_input_class"].tolist()
        s = meta["settings"]
        masks = mask_prompts(p.probs_down, classes, (h, w), sam_hw, s["coarse_thresh"], s["sam_mask_coff"])
        assert sha256(masks) == meta["digests"][f"b{b}_sam_mask_inputs"]["sha256"]
        if f"b{b}_sam_mask_input_crop_k0" in t:
            mh, mw = info["mask_input_valid_hw"]
            assert torch.equal(masks[0, :, :mh, :mw], t[f"b{b}_sam_mask_input_crop_k0"])


def test_label_downsample_uses_legacy_nearest_indices_at_odd_sizes():
    labels = torch.arange(75 * 113).reshape(1, 75, 113) % 7
    down = downsample_labels(labels, (37, 56))
    ys = torch.clamp((torch.arange(37) * torch.tensor(75 / 37, dtype=torch.float32)).floor().long(), max=74)
    xs = torch.clamp((torch.arange(56) * torch.tensor(113 / 56, dtype=torch.float32)).floor().long(), max=112)
    assert torch.equal(down[0], labels[0][ys][:, xs])


def test_regions_are_8_connected_in_raster_order_of_first_pixel_with_area_at_half_resolution():
    # 3 classes on a 2x-upsampled 8 x 8 grid; class 1 has a diagonal pair (one 8-connected region) and a
    # later blob whose first pixel comes first in raster order of the x1/2 map.
    small = torch.zeros(8, 8, dtype=torch.long)
    small[5, 0] = small[6, 1] = 1  # diagonal: one region of 2 pixels
    small[1, 4:7] = 1  # a 3-pixel region, earlier in raster order
    small[3:5, 3:5] = 2
    probs = torch.nn.functional.one_hot(small, 3).permute(2, 0, 1).float() * 0.9 + 0.05
    probs = probs.repeat_interleave(2, 1).repeat_interleave(2, 2)
    labels = probs.argmax(0)
    p = build_prompts(probs, labels, coarse_thresh=0.5, minimal_area=2)
    assert p.classes.tolist() == [0, 1, 1, 2]  # class 0 (the rest) is one 8-connected region
    assert p.boxes_xyxy[1:].tolist() == [[4, 1, 6, 1], [0, 5, 1, 6], [3, 3, 4, 4]]
    assert p.points_xy[1:].tolist() == [[4, 1], [0, 5], [3, 3]]  # first maximum in raster order
    assert build_prompts(probs, labels, coarse_thresh=0.5, minimal_area=3).classes.tolist() == [0, 1, 2]


def test_uncertain_pixels_and_weak_classes_are_not_prompted():
    probs = torch.full((2, 20, 20), 0.5)
    probs[0, :, :10] = 0.7
    probs[1, :, :10] = 0.3
    labels = probs.argmax(0)
    p = build_prompts(probs, labels, coarse_thresh=0.6, minimal_area=1)
    assert p.classes.tolist() == [0]
    assert int(p.seg_down.eq(2).sum()) == 50  # right half uncertain -> label C


def test_corrected_frames_use_the_real_sam_input_size():
    meta, t = load_case("sam_smooth_96x200_coarse0")  # frames differ: coords 492x1024, SAM input 480x1024
    probs, _, p = _prompts(t, 0, meta)
    sam_hw = sam_input_size(96, 200)
    assert sam_hw == (480, 1024)
    ref_coords, _, ref_boxes = prompt_coordinates(p, sam_hw)
    coords, _, boxes = prompt_coordinates(p, sam_hw, RefineOptions.corrected())
    assert torch.equal(coords[:, 0, 0], ref_coords[:, 0, 0])  # x scale 1024/100 in both frames
    assert torch.allclose(coords[:, 0, 1], p.points_xy[:, 1].float() * 480 / 48)
    assert not torch.equal(coords, ref_coords) and not torch.equal(boxes, ref_boxes)
    masks = mask_prompts(p.probs_down, p.prompted_classes(), (96, 200), sam_hw, 0.0, 0.005, RefineOptions.corrected())
    assert masks[:, :, 120:].abs().max() == 0 and masks[:, :, 119].abs().max() > 0  # content 120 x 256 = SAM frame / 4


def test_every_case_has_its_expected_prompt_counts_from_the_refiner():
    for name in CASES:
        meta, t = load_case(name)
        res = refined(name)
        assert res.num_regions == sum(i["num_prompts"] for i in meta["images"])
        assert coarse_probs(t).shape[0] == len(res.images)
