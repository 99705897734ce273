"""RADSeg+: refine a coarse RADSeg prediction with RADIO-SAM (RADSEG.md "RADSeg+").

    refiner = SamRefiner.from_checkpoint("sam_vit_h_4b8939.pth", num_heads=8, radio=radio)
    result = refiner(radio, image, coarse_probs, scra_tau=10.0, coarse_thresh=0.1)
    result.labels, result.probs, result.refined, result.message

Per image: the SCRA backbone runs once on the image resized to long side 1024, RADIO's ``sam`` feature
head gives SAM-encoder-like features, zero-padded to 64 x 64 and put through SAM's neck; prompts come from
the coarse prediction (:mod:`radseg_edge.core.refine`); all prompts of the image go through SAM's mask
decoder as one batch; masks whose predicted IoU passes the threshold are merged back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from radseg_edge.core.refine import (
    PAPER_COARSE_THRESH,
    Prompts,
    RefineOptions,
    build_prompts,
    mask_prompts,
    merge_refinement,
    pad_to_sam_grid,
    postprocess_logits,
    prompt_coordinates,
    resize_for_sam,
    sam_input_size,
)
from radseg_edge.errors import CheckpointError, InputError
from radseg_edge.models.sam import SAM_ENCODER_WIDTHS, SamPromptDecoder, load_sam

__all__ = [
    "PAPER_COARSE_THRESH",
    "ImageRefinement",
    "RefineOptions",
    "RefineResult",
    "SamRefiner",
    "resolve_coarse_thresh",
    "sam_feature_width",
]

IGNORE_INDEX = -1


@dataclass
class ImageRefinement:
    """What happened to one image. Tensors are kept for inspection and parity tests.

    sam_hw: SAM input size; prompts: the prompts; iou: P IoU predictions; valid: P bool;
    low_res_logits: P x 1 x 256 x 256; image_embeddings: 1 x D x 64 x 64; radio_features: 1 x C x h x w
    (SCRA backbone at sam_hw); sam_features: 1 x S x h x w (RADIO ``sam`` head output, before padding);
    mask_inputs: K x 1 x 256 x 256.
    """

    refined: bool
    num_regions: int
    num_valid_masks: int
    message: str
    sam_hw: tuple[int, int]
    prompts: Prompts | None = None
    iou: Tensor | None = None
    valid: Tensor | None = None
    low_res_logits: Tensor | None = None
    image_embeddings: Tensor | None = None
    radio_features: Tensor | None = None
    sam_features: Tensor | None = None
    mask_inputs: Tensor | None = None
    point_coords: Tensor | None = None
    boxes: Tensor | None = None
    failed_area: Tensor | None = None
    labels_before_failed_merge: Tensor | None = None


@dataclass
class RefineResult:
    """probs: B x C x H x W fp32; labels: B x H x W int64 (0-based, -1 below prediction_thresh).

    refined: True if SAM changed at least one image (False: the coarse result is returned, see message);
    num_regions / num_valid_masks: totals over the batch; images: per-image details.
    """

    probs: Tensor
    labels: Tensor
    refined: bool
    num_regions: int
    num_valid_masks: int
    message: str
    images: list[ImageRefinement] = field(default_factory=list)


def sam_feature_width(radio: nn.Module) -> int:
    """Output width of RADIO's ``sam`` feature head (1280 for heads trained against SAM ViT-H)."""
    heads = getattr(radio, "heads", None)
    if heads is None or "sam" not in heads or getattr(heads["sam"], "feature_head", None) is None:
        raise CheckpointError(
            "RADSeg+ needs the RADIO checkpoint's 'sam' adaptor feature head, which is not loaded: "
            "load the model with the 'sam' adaptor (e.g. load_radio(path, adaptors=[..., 'sam']))"
        )
    head = heads["sam"].feature_head
    if hasattr(head, "out_dim"):
        return int(head.out_dim)
    return int([m for m in head.modules() if isinstance(m, nn.Linear)][-1].out_features)


@contextmanager
def _stage(profiler, name: str) -> Iterator[None]:
    with profiler.stage(name) if profiler is not None else nullcontext():
        yield


class SamRefiner:
    """SAM neck + prompt encoder + mask decoder applied to RADIO ``sam`` features (RADSeg+)."""

    def __init__(
        self, sam: SamPromptDecoder, options: RefineOptions | None = None, prompt_batch: int = 32,
        decoder: Callable[[tuple[Tensor, ...]], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        """``prompt_batch``: prompts per decoder call (memory: about prompt_batch x 20 MB for SAM ViT-H); the
        result does not depend on it. ``decoder``: runs neck + prompt encoder + mask decoder of an exported
        graph instead of PyTorch: (padded sam features 1 x S x 64 x 64, point coords P x 1 x 2, point labels
        P x 1, boxes P x 4, mask inputs K x 1 x 256 x 256, prompt mask index P) -> (low-res logits
        P x 1 x 256 x 256, IoU P x 1), e.g. :class:`radseg_edge.backends.sam_onnx.SamDecoderOnnx` (see
        :meth:`with_decoder`)."""
        self.sam = sam.eval()
        self.prompt_batch = max(1, int(prompt_batch))
        self.decoder = decoder
        for p in self.sam.parameters():
            p.requires_grad_(False)
        self.options = options or RefineOptions.reference()
        if decoder is not None and not self.options.unbatched_mask_prompt:
            raise InputError("the exported SAM graph reproduces the reference's un-batched mask prompt only; "
                             "use the PyTorch decoder for RefineOptions(unbatched_mask_prompt=False)")

    def with_decoder(self, decoder: Callable[[tuple[Tensor, ...]], tuple[Tensor, Tensor]]) -> SamRefiner:
        """The same refiner with the decoder run by ``decoder`` (e.g. ``SamDecoderOnnx("sam_decoder.onnx")``)."""
        return SamRefiner(self.sam, self.options, self.prompt_batch, decoder=decoder)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        num_heads: int = 8,
        radio: nn.Module | None = None,
        options: RefineOptions | None = None,
        prompt_batch: int = 32,
    ) -> SamRefiner:
        """Load SAM from ``sam_vit_h_4b8939.pth`` (or a safetensors file with the official names).

        With ``radio``, checks at once that the SAM neck fits RADIO's ``sam`` head width.
        """
        refiner = cls(load_sam(path, num_heads=num_heads), options, prompt_batch)
        if radio is not None:
            refiner.check_compatible(radio)
        return refiner

    @property
    def num_parameters(self) -> int:
        """Parameters of the SAM path kept by RADSeg+ (neck, prompt encoder, mask decoder)."""
        return self.sam.num_parameters()

    def parameter_counts(self, radio: nn.Module | None = None) -> dict[str, int]:
        """Parameters per part of the SAM path (for ``info`` / ``bench``); with ``radio``, also its ``sam``
        feature head (which RADSeg+ runs in addition to the coarse path)."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        out = {
            "sam:neck": count(self.sam.neck),
            "sam:prompt_encoder": count(self.sam.prompt_encoder),
            "sam:mask_decoder": count(self.sam.mask_decoder),
        }
        if radio is not None:
            out["head:sam:feature"] = count(radio.heads["sam"].feature_head)
        return out

    def check_compatible(self, radio: nn.Module) -> None:
        """CheckpointError if the SAM neck's input width differs from RADIO's ``sam`` head width."""
        width = sam_feature_width(radio)
        need = self.sam.config.encoder_dim
        if width != need:
            sam_name = SAM_ENCODER_WIDTHS.get(need, f"a {need}-d SAM")
            head_name = SAM_ENCODER_WIDTHS.get(width, f"a {width}-d SAM")
            raise CheckpointError(
                f"the SAM checkpoint's neck takes {need}-d image-encoder features ({sam_name}), but the RADIO "
                f"'sam' head gives {width}-d features (made for {head_name}): use the matching SAM checkpoint "
                f"(sam_vit_h_4b8939.pth for C-RADIO / RADIO v2.5)"
            )

    # ------------------------------------------------------------------------------------------- stages
    def image_embeddings(self, backbone: Callable[[Tensor], tuple[Tensor, Tensor]], image: Tensor) -> tuple[Tensor, ...]:
        """image: 1 x 3 x H x W -> (RADIO features 1 x C x h x w, RADIO sam features 1 x S x h x w,
        SAM image embeddings 1 x D x 64 x 64).

        ``backbone`` maps the long-side-1024 image to RADIO features and ``sam`` head features (``_Backbone``).
        """
        radio_feats, sam_feats = backbone(resize_for_sam(image))
        if self.decoder is not None:  # the exported graph runs the neck itself
            return radio_feats, sam_feats, None
        return radio_feats, sam_feats, self.sam.embed_image(pad_to_sam_grid(sam_feats))

    def decode(
        self, sam_features: Tensor, embeddings: Tensor | None, prompts: Prompts, image_hw: tuple[int, int],
        sam_hw: tuple[int, int], coarse_thresh: float, mask_coeff: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """All prompts of one image through the decoder, ``prompt_batch`` at a time: (low-res logits
        P x 1 x 256 x 256, IoU P, mask inputs K x 1 x 256 x 256, point coords P x 1 x 2, boxes P x 4).

        sam_features: 1 x S x h x w RADIO sam features (used by the ONNX graph); embeddings: the neck output
        (PyTorch path)."""
        classes = prompts.prompted_classes()
        masks_in = mask_prompts(
            prompts.probs_down, classes, image_hw, sam_hw, coarse_thresh, mask_coeff, self.options
        )
        coords, labels, boxes = prompt_coordinates(prompts, sam_hw, self.options)
        index = torch.tensor([classes.index(c) for c in prompts.classes.tolist()], dtype=torch.int64)
        dev = sam_features.device
        coords, labels, boxes, masks_in, index = (t.to(dev) for t in (coords, labels, boxes, masks_in, index))
        if self.decoder is not None:
            padded = pad_to_sam_grid(sam_features)
            decoder = self.decoder

            def run(sl: slice) -> tuple[Tensor, Tensor]:
                low, iou = decoder((padded, coords[sl], labels[sl], boxes[sl], masks_in, index[sl]))
                return low.to(dev), iou.to(dev)
        else:

            def run(sl: slice) -> tuple[Tensor, Tensor]:
                return self.sam.decode(
                    embeddings, coords[sl], labels[sl], boxes[sl], masks_in, index[sl],
                    unbatched_mask_quirk=self.options.unbatched_mask_prompt,
                )

        n = self.prompt_batch
        outs = [run(slice(i, i + n)) for i in range(0, len(index), n)]
        low = torch.cat([o[0] for o in outs]) if len(outs) > 1 else outs[0][0]
        iou = torch.cat([o[1] for o in outs]) if len(outs) > 1 else outs[0][1]
        return low, iou[:, 0], masks_in, coords, boxes

    def refine_image(
        self,
        backbone: Callable[[Tensor], tuple[Tensor, Tensor]],
        image: Tensor,
        coarse_probs: Tensor,
        coarse_labels: Tensor,
        coarse_thresh: float,
        minimal_area: int,
        iou_thresh: float,
        mask_coeff: float,
        profiler=None,
    ) -> tuple[Tensor, Tensor, ImageRefinement]:
        """One image: image 1 x 3 x H x W (on the model's device), coarse_probs C x H x W and coarse_labels
        H x W (CPU: prompts are made on the host) -> (labels H x W, probs C x H x W, details)."""
        h, w = coarse_probs.shape[-2:]
        sam_hw = sam_input_size(*image.shape[-2:])
        with _stage(profiler, "sam_prompts"):
            prompts = build_prompts(coarse_probs, coarse_labels, coarse_thresh, minimal_area)
        info = ImageRefinement(False, prompts.num_prompts, 0, "", sam_hw, prompts=prompts)
        if prompts.num_prompts == 0:
            info.message = (
                f"no region of at least {minimal_area} pixels (at half resolution) with probability "
                f">= coarse_thresh={coarse_thresh}: coarse result kept"
            )
            return coarse_labels, coarse_probs, info
        with _stage(profiler, "sam_backbone"):
            info.radio_features, info.sam_features, info.image_embeddings = self.image_embeddings(backbone, image)
        with _stage(profiler, "sam_decoder"):
            low, iou, info.mask_inputs, info.point_coords, info.boxes = self.decode(
                info.sam_features, info.image_embeddings, prompts, (h, w), sam_hw, coarse_thresh, mask_coeff
            )
        valid = (iou > iou_thresh).cpu()
        info.iou, info.valid, info.low_res_logits = iou, valid, low
        info.num_valid_masks = int(valid.sum())
        if info.num_valid_masks == 0:
            info.message = (
                f"none of the {prompts.num_prompts} SAM masks has predicted IoU > {iou_thresh}: coarse result kept"
            )
            return coarse_labels, coarse_probs, info
        with _stage(profiler, "sam_merge"):
            dev = low.device
            kept, n = low[valid.to(dev)], self.prompt_batch
            logits = torch.cat([postprocess_logits(kept[i : i + n], sam_hw, (h, w))[:, 0] for i in range(0, len(kept), n)])
            failed = prompts.regions[~valid].to(dev) if info.num_valid_masks < prompts.num_prompts else None
            merged = merge_refinement(
                coarse_probs.to(dev), coarse_labels.to(dev), prompts.classes[valid].to(dev), logits, failed,
                self.options,
            )
        info.refined = True
        info.failed_area = merged.failed_area
        info.labels_before_failed_merge = merged.labels_before_failed_merge
        info.message = f"refined with {info.num_valid_masks} of {prompts.num_prompts} SAM masks"
        return merged.labels, merged.probs, info

    # ------------------------------------------------------------------------------------------- API
    def __call__(
        self,
        radio: nn.Module,
        image: Tensor,
        coarse,
        scra_tau: float | None = 10.0,
        coarse_thresh: float | str = 0.1,
        minimal_area: int = 225,
        iou_thresh: float = 0.9,
        mask_coeff: float = 0.005,
        prediction_thresh: float = 0.0,
        profiler=None,
        scra: Callable | None = None,
    ):
        """Refine a batch of coarse predictions.

        Args:
            radio: the RADIO model (``forward_spatial`` and ``heads['sam'].feature_head`` are used).
            image: B x 3 x H x W RGB in [0,1], the ORIGINAL image (not the sliding-window resize); the SAM
                pass runs on it at long side 1024.
            coarse: B x C x H' x W' coarse probabilities after prompt denoising, or RADSeg's
                SegmentationResult (its ``probs`` are used). H' x W' is the output frame (usually H x W;
                RADSeg's ``output_size``, the reference's ``orig_img_size``): prompts, masks and the merge
                live there.
            scra_tau: SCRA temperature of the backbone pass (the same as the coarse path).
            coarse_thresh: uncertainty threshold of the x1/2 coarse map, or a dataset name of
                :data:`PAPER_COARSE_THRESH` ("voc20", "context59", "coco-stuff171", "cityscapes", "ade20k").
            minimal_area: smallest region, in pixels of the x1/2 map.
            iou_thresh: a SAM mask counts if its predicted IoU is > this.
            mask_coeff: scale of the mask prompt (0.005 in the reference).
            prediction_thresh: pixels whose COARSE max probability is below it get label -1 (reference;
                the final maximum with RefineOptions.corrected()).
            profiler: a StageProfiler; stages sam_prompts, sam_backbone, sam_decoder, sam_merge.
            scra: the last block's attention (e.g. a fused SCRA kernel, signature of
                ``RadioModel.forward_spatial(last_attention=...)``); wins over ``scra_tau``.
        Returns:
            :class:`RefineResult` when ``coarse`` is a tensor; for a SegmentationResult, a copy of it with
            ``probs``, ``labels``, ``refined`` and ``refine_message`` replaced and the RefineResult in
            ``extras["refine"]``. Images where nothing passes keep their coarse labels and probabilities.
        """
        probs_in = coarse if isinstance(coarse, Tensor) else coarse.probs
        result = self.refine(
            radio, image, probs_in, scra_tau, resolve_coarse_thresh(coarse_thresh), minimal_area, iou_thresh,
            mask_coeff, prediction_thresh, profiler, scra,
        )
        if isinstance(coarse, Tensor):
            return result
        extras = {**getattr(coarse, "extras", {}), "refine": result}
        return replace(
            coarse, probs=result.probs, labels=result.labels, refined=result.refined,
            refine_message=result.message, extras=extras,
        )

    @torch.inference_mode()
    def refine(
        self,
        radio: nn.Module,
        image: Tensor,
        coarse_probs: Tensor,
        scra_tau: float | None = 10.0,
        coarse_thresh: float = 0.1,
        minimal_area: int = 225,
        iou_thresh: float = 0.9,
        mask_coeff: float = 0.005,
        prediction_thresh: float = 0.0,
        profiler=None,
        scra: Callable | None = None,
    ) -> RefineResult:
        """Tensor form of :meth:`__call__`: coarse_probs B x C x H x W -> :class:`RefineResult`."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"image must be B x 3 x H x W RGB in [0,1], got shape {tuple(image.shape)}")
        if coarse_probs.ndim != 4 or coarse_probs.shape[0] != image.shape[0] or min(coarse_probs.shape[-2:]) < 2:
            raise InputError(
                f"coarse probabilities must be B x C x H x W with the image's batch size {image.shape[0]}, "
                f"got {tuple(coarse_probs.shape)}"
            )
        self.check_compatible(radio)
        device = coarse_probs.device
        model_device = next(radio.parameters()).device
        self.sam.to(model_device)
        image = image.float().to(model_device)
        coarse_probs = coarse_probs.detach().float().cpu()
        coarse_max, coarse_labels = torch.max(coarse_probs, 1)
        backbone = _Backbone(radio, scra_tau, scra)
        labels, probs, infos = [], [], []
        for b in range(image.shape[0]):
            lab, prob, info = self.refine_image(
                backbone, image[b : b + 1], coarse_probs[b], coarse_labels[b], coarse_thresh,
                minimal_area, iou_thresh, mask_coeff, profiler,
            )
            labels.append(lab.to(device))
            probs.append(prob.to(device))
            infos.append(info)
        labels_t, probs_t = torch.stack(labels), torch.stack(probs)
        coarse_max = coarse_max.to(device)
        if prediction_thresh > 0:
            ref_max = coarse_max if self.options.coarse_ignore else probs_t.max(1).values
            labels_t = labels_t.masked_fill(ref_max < prediction_thresh, IGNORE_INDEX)
        if len(infos) > 1:
            message = "; ".join(f"image {i}: {x.message}" for i, x in enumerate(infos))
        else:
            message = infos[0].message
        return RefineResult(
            probs=probs_t,
            labels=labels_t,
            refined=any(x.refined for x in infos),
            num_regions=sum(x.num_regions for x in infos),
            num_valid_masks=sum(x.num_valid_masks for x in infos),
            message=message,
            images=infos,
        )


class _Backbone:
    """RADIO's SCRA backbone + ``sam`` feature head, bound to one call's SCRA settings."""

    def __init__(self, radio: nn.Module, scra_tau: float | None, scra: Callable | None) -> None:
        self.radio, self.scra_tau, self.scra = radio, scra_tau, scra

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: 1 x 3 x sam_h x sam_w (model device) -> (RADIO features 1 x C x sam_h/16 x sam_w/16,
        sam features 1 x S x sam_h/16 x sam_w/16), fp32."""
        if self.scra is not None:
            feats = self.radio.forward_spatial(x, last_attention=self.scra)
        else:
            feats = self.radio.forward_spatial(x, scra_tau=self.scra_tau)
        head = self.radio.heads["sam"].feature_head
        return feats.float(), head(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).float()


def resolve_coarse_thresh(value: float | str) -> float:
    """A number, or a dataset name of :data:`PAPER_COARSE_THRESH` -> the coarse threshold."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in PAPER_COARSE_THRESH:
            return PAPER_COARSE_THRESH[key]
        try:
            return float(key)
        except ValueError:
            raise InputError(
                f"coarse_thresh must be a number or one of {', '.join(PAPER_COARSE_THRESH)}, got {value!r}"
            ) from None
    return float(value)
