"""RADSeg+ refinement, host side: prompts from the coarse prediction, and the merge of SAM masks back.

Reference operators (plain PyTorch / OpenCV, no model loading); :class:`radseg_edge.models.sam_refiner.SamRefiner`
runs the SAM decoder between :func:`build_prompts` and :func:`merge_refinement`. RADSEG.md "RADSeg+" and
tests/fixtures/sam/README.md ("Exact semantics observed") describe every step; the reference's quirks are
reproduced by default (:meth:`RefineOptions.reference`) and can be corrected one by one.

Sizes: C classes, H x W the image, (dh, dw) = (H // 2, W // 2), P prompts (connected regions),
K prompted classes, (sam_h, sam_w) the SAM input size (long side 1024, see :func:`sam_input_size`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: the paper's coarse_thresh per benchmark (RADSEG.md "RADSeg+").
PAPER_COARSE_THRESH = {"voc20": 0.2, "context59": 0.15, "coco-stuff171": 0.05, "cityscapes": 0.10, "ade20k": 0.05}

#: the reference's downsampling factor of the coarse prediction before region splitting.
DOWN_RATIO = 2
SAM_LONG_SIDE = 1024
MASK_PROMPT_SIDE = 256


@dataclass(frozen=True)
class RefineOptions:
    """Which reference behaviours to reproduce (True = as the official release, the default).

    unbatched_mask_prompt: the mask prompt reaches SAM as a 3-D tensor, so its mask-downscaling
        LayerNorm2d normalises over rows instead of channels.
    half_frame_prompts: points and boxes are scaled with the preprocess shape of the half-size image
        (long side 1024) and the mask prompt is resized with that of the full image (long side 256),
        instead of the real SAM input frame (sam_h x sam_w, mask prompt sam_h/4 x sam_w/4).
    failed_label_noop: the label update for rejected regions is a no-op (only probabilities are
        raised); corrected, a rejected-region pixel takes the coarse label where the coarse
        probability beats every refined one.
    coarse_ignore: the ignore label (prediction_thresh) uses the coarse maximum probability;
        corrected, the final (refined) maximum.

    Always kept (they are definitions, not defects): strict IoU test (>), a region's point is its
    first maximum in raster order, boxes have inclusive maxima, the x2 label downsample uses
    nearest indices floor(dst * float32(in/out)).
    """

    unbatched_mask_prompt: bool = True
    half_frame_prompts: bool = True
    failed_label_noop: bool = True
    coarse_ignore: bool = True

    @classmethod
    def reference(cls) -> RefineOptions:
        return cls()

    @classmethod
    def corrected(cls) -> RefineOptions:
        return cls(False, False, False, False)


@dataclass
class Prompts:
    """Prompts of one image, in prompt order (class ascending, then region in raster order of its first pixel).

    classes: P int64; regions: P x dh x dw bool; points_xy: P x 2 int64 and boxes_xyxy: P x 4 float32
    (inclusive maxima) in the dh x dw frame; scores: P float32 mean probability of each region (unused by
    the algorithm, kept for parity); seg_down: dh x dw int64 labels after the uncertain -> C assignment;
    probs_down: C x dh x dw bilinear x1/2 probabilities.
    """

    classes: Tensor
    regions: Tensor
    points_xy: Tensor
    boxes_xyxy: Tensor
    scores: Tensor
    seg_down: Tensor
    probs_down: Tensor

    @property
    def num_prompts(self) -> int:
        return int(self.classes.numel())

    def prompted_classes(self) -> list[int]:
        """Classes with at least one prompt, ascending (one mask prompt each)."""
        return sorted(set(self.classes.tolist()))


# ----------------------------------------------------------------------------------------- geometry
def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """SAM's ResizeLongestSide shape: scale so the long side is ``long_side``, round half up."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_input_size(h: int, w: int, long_side: int = SAM_LONG_SIDE) -> tuple[int, int]:
    """RADSeg's SAM input size: long side 1024, short side int(short * 64 / long) * 16 (floored to 16)."""
    g = long_side // 16
    if h >= w:
        return long_side, int(w * g / h) * 16
    return int(h * g / w) * 16, long_side


def resize_for_sam(image: Tensor, long_side: int = SAM_LONG_SIDE) -> Tensor:
    """B x 3 x H x W RGB [0,1] -> B x 3 x sam_h x sam_w (bilinear, align_corners=False, no antialias)."""
    size = sam_input_size(image.shape[-2], image.shape[-1], long_side)
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def pad_to_sam_grid(features: Tensor, grid: int = SAM_LONG_SIDE // 16) -> Tensor:
    """B x S x h x w -> B x S x 64 x 64, zeros at the bottom and right."""
    h, w = features.shape[-2:]
    return F.pad(features, (0, grid - w, 0, grid - h))


# ----------------------------------------------------------------------------------------- prompts
def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """1 x H x W int64 labels -> 1 x dh x dw by legacy nearest (src = min(floor(dst * f32(in/out)), in-1)).

    The reference goes through fp16, exact for ids < 2048; larger label sets use fp32 (same indices).
    """
    x = labels.unsqueeze(0)
    x = x.half() if int(labels.max()) < 2048 else x.float()
    return F.interpolate(x, size=list(size), mode="nearest").squeeze(0).long()


def _components(mask: np.ndarray) -> tuple[np.ndarray, list[int], np.ndarray]:
    """8-connected components of a uint8 mask: label map, labels in raster order of their first
    pixel (scikit-image's order), and the stats table (x, y, w, h, area) per label."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return lab, [], stats
    ids, first = np.unique(lab.ravel(), return_index=True)
    order = [int(i) for i in ids[np.argsort(first, kind="stable")] if i != 0]
    return lab, order, stats


def build_prompts(
    coarse_probs: Tensor, coarse_labels: Tensor, coarse_thresh: float, minimal_area: int
) -> Prompts:
    """Connected-region prompts from one image's coarse prediction (reference ``sam_refinement`` steps 1-5).

    Args:
        coarse_probs: C x H x W probabilities (after prompt denoising).
        coarse_labels: 1 x H x W (or H x W) int64 argmax of ``coarse_probs`` (first maximum).
        coarse_thresh: pixels of the x1/2 map whose max probability is below it are uncertain (label C);
            a class whose x1/2 maximum is below it is not prompted.
        minimal_area: regions with fewer pixels AT HALF RESOLUTION are dropped.
    """
    c, h, w = coarse_probs.shape
    dh, dw = h // DOWN_RATIO, w // DOWN_RATIO
    labels = coarse_labels.reshape(1, h, w)
    seg_down = downsample_labels(labels, (dh, dw))[0]
    # channels-last: the reference's probabilities arrive in that layout, and CPU bilinear rounds differently
    # per layout (1 ulp); ties between region maxima make the point prompt sensitive to that ulp.
    x = coarse_probs.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    probs_down = F.interpolate(x, [dh, dw], mode="bilinear", align_corners=False)[0].contiguous()
    if coarse_thresh > 0:
        seg_down = torch.where(probs_down.max(0).values < coarse_thresh, torch.full_like(seg_down, c), seg_down)
    seg_np = seg_down.numpy()
    class_max = probs_down.flatten(1).max(1).values
    classes, regions, points, boxes, scores = [], [], [], [], []
    for cls in range(c):
        if class_max[cls] < coarse_thresh:
            continue
        lab, order, stats = _components((seg_np == cls).astype(np.uint8))
        prob = probs_down[cls]
        for i in order:
            if stats[i, cv2.CC_STAT_AREA] < minimal_area:
                continue
            region = torch.from_numpy(lab == i)
            idx = int(torch.argmax(prob * region))  # first maximum in raster order
            x0, y0 = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
            x1 = x0 + int(stats[i, cv2.CC_STAT_WIDTH]) - 1
            y1 = y0 + int(stats[i, cv2.CC_STAT_HEIGHT]) - 1
            classes.append(cls)
            regions.append(region)
            points.append((idx % dw, idx // dw))
            boxes.append((x0, y0, x1, y1))
            scores.append(prob[region].mean())
    p = len(classes)
    return Prompts(
        classes=torch.tensor(classes, dtype=torch.int64),
        regions=torch.stack(regions) if p else torch.zeros(0, dh, dw, dtype=torch.bool),
        points_xy=torch.tensor(points, dtype=torch.int64).reshape(p, 2),
        boxes_xyxy=torch.tensor(boxes, dtype=torch.float32).reshape(p, 4),
        scores=torch.stack(scores) if p else torch.zeros(0),
        seg_down=seg_down,
        probs_down=probs_down,
    )


def mask_prompts(
    probs_down: Tensor,
    classes: list[int],
    image_hw: tuple[int, int],
    sam_hw: tuple[int, int],
    coarse_thresh: float,
    mask_coeff: float = 0.005,
    options: RefineOptions = RefineOptions(),
) -> Tensor:
    """One SAM mask prompt per prompted class: K x 1 x 256 x 256.

    The class's x1/2 probability map is bilinearly resized to the long-side-256 shape of the ORIGINAL
    image (reference) or to sam_h/4 x sam_w/4 (corrected), zero-padded to 256 x 256, then
    ``mask_coeff * p`` where p > coarse_thresh, else 0.
    """
    if options.half_frame_prompts:
        mh, mw = preprocess_shape(image_hw[0], image_hw[1], MASK_PROMPT_SIDE)
    else:
        mh, mw = sam_hw[0] // 4, sam_hw[1] // 4
    if not classes:
        return torch.zeros(0, 1, MASK_PROMPT_SIDE, MASK_PROMPT_SIDE)
    x = probs_down[classes].unsqueeze(0)
    x = F.interpolate(x, [mh, mw], mode="bilinear", align_corners=False)[0]
    x = F.pad(x, (0, MASK_PROMPT_SIDE - mw, 0, MASK_PROMPT_SIDE - mh), mode="constant", value=0)
    x = torch.where(x > coarse_thresh, mask_coeff * x, torch.zeros((), dtype=x.dtype)).float()
    return x.unsqueeze(1)


def prompt_coordinates(
    prompts: Prompts, sam_hw: tuple[int, int], options: RefineOptions = RefineOptions()
) -> tuple[Tensor, Tensor, Tensor]:
    """Points P x 1 x 2, point labels P x 1 (all positive) and boxes P x 4, in SAM's 1024 frame.

    Reference: scale factors (nw/dw, nh/dh) with (nh, nw) = preprocess_shape(dh, dw, 1024), applied
    in float32 to the integer (x, y); corrected: the real SAM input size (sam_h, sam_w).
    """
    dh, dw = prompts.seg_down.shape
    nh, nw = preprocess_shape(dh, dw, SAM_LONG_SIDE) if options.half_frame_prompts else sam_hw

    def scale(coords: Tensor) -> Tensor:
        coords = coords.to(torch.float).clone()
        coords[..., 0] = coords[..., 0] * (nw / dw)
        coords[..., 1] = coords[..., 1] * (nh / dh)
        return coords

    points = scale(prompts.points_xy).unsqueeze(1)
    boxes = scale(prompts.boxes_xyxy.long().reshape(-1, 2, 2)).reshape(-1, 4)
    labels = torch.ones(prompts.num_prompts, 1)
    return points, labels, boxes


# ----------------------------------------------------------------------------------------- masks
def postprocess_logits(low_res: Tensor, sam_hw: tuple[int, int], image_hw: tuple[int, int]) -> Tensor:
    """SAM's postprocess: P x 1 x 256 x 256 -> bilinear 1024 x 1024 -> crop sam_h x sam_w -> bilinear H x W."""
    x = F.interpolate(low_res, (SAM_LONG_SIDE, SAM_LONG_SIDE), mode="bilinear", align_corners=False)
    x = x[..., : sam_hw[0], : sam_hw[1]]
    return F.interpolate(x, image_hw, mode="bilinear", align_corners=False)


def upsample_regions(regions: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Union of P x dh x dw region masks, nearest-upsampled to H x W bool (legacy nearest indices)."""
    up = F.interpolate(regions.unsqueeze(0).float(), list(image_hw), mode="nearest")[0]
    return (up != 0).any(0)


@dataclass
class MergeResult:
    """labels: H x W int64 (0-based); probs: C x H x W; refined_probs: C x H x W before the failed-region merge."""

    labels: Tensor
    probs: Tensor
    labels_before_failed_merge: Tensor
    failed_area: Tensor | None


def merge_refinement(
    coarse_probs: Tensor,
    coarse_labels: Tensor,
    valid_classes: Tensor,
    valid_logits: Tensor,
    failed_regions: Tensor | None,
    options: RefineOptions = RefineOptions(),
) -> MergeResult:
    """Merge valid SAM masks and rejected regions into labels and probabilities (reference steps 8-10).

    Args:
        coarse_probs: C x H x W; coarse_labels: H x W int64.
        valid_classes: V int64, class of each valid mask, ascending.
        valid_logits: V x H x W full-resolution SAM mask logits of the valid prompts.
        failed_regions: F x dh x dw bool regions of rejected prompts, or None.
    For each class with valid masks: refined[c] = max_p(sigmoid(logit_p) * p_c) * OR_p(logit_p > 0); other
    classes are 0. labels = argmax (first max), the coarse label where refined is 0 everywhere. Rejected
    regions: refined = max(refined, coarse) there; labels unchanged (reference) or the coarse label where
    the coarse probability wins (corrected).
    """
    c, h, w = coarse_probs.shape
    refined = torch.zeros(c, h, w, dtype=coarse_probs.dtype)
    sig = valid_logits.sigmoid()
    masks = valid_logits > 0
    for cls in torch.unique(valid_classes).tolist():
        sel = valid_classes == cls
        refined[cls] = (sig[sel] * coarse_probs[cls]).max(dim=0).values * masks[sel].any(0)
    labels = refined.argmax(0)
    labels = torch.where(refined.sum(0) == 0, coarse_labels, labels)
    before = labels
    failed_area = None
    if failed_regions is not None and failed_regions.shape[0]:
        failed_area = upsample_regions(failed_regions, (h, w))
        failed = failed_area * coarse_probs
        merged = torch.where(failed > refined, failed, refined)
        if not options.failed_label_noop:
            labels = torch.where(failed.max(0).values > refined.max(0).values, coarse_labels, labels)
        refined = merged
    return MergeResult(labels=labels, probs=refined, labels_before_failed_merge=before, failed_area=failed_area)
