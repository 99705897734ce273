"""RADSeg: the whole zero-shot segmentation pipeline on a RADIO model (RADSEG.md).

Data flow, one image at a time (images of a batch are independent):

    image -> pre-resize -> windows -> backbone with SCRA -> stitch -> SCGA -> language head
          -> 100*cos softmax -> upsample -> prompt denoising -> labels

    seg = RADSeg(load_radio("c-radio_v3-b_half.pth.tar"))
    result = seg(image, Vocabulary.load("voc.safetensors"))   # result.labels: 1 x H x W
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from radseg_edge.core.image import to_image_tensor
from radseg_edge.core.predict import class_probabilities, probabilities_and_labels
from radseg_edge.core.windows import extract_windows, preresize_image, stitch_windows, window_boxes
from radseg_edge.errors import InputError, VocabularyError
from radseg_edge.kernels.dispatch import get_ops
from radseg_edge.models.radio import RadioModel
from radseg_edge.models.text import check_finite_embeddings
from radseg_edge.utils.profiling import NULL_PROFILER, StageProfiler

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: default windows per backbone call on the CPU: large enough for efficient matrix multiplies, small enough
#: that the backbone's activations stay far below SCGA's (see benchmarks/RESULTS.md).
CPU_WINDOW_BATCH = 4


def check_settings(
    crop: int,
    stride: int,
    patch: int = 16,
    scra_tau: float = 10.0,
    scga_tau: float = 10.0,
    denoise: float = 0.5,
    prediction_thresh: float = 0.0,
) -> None:
    """Refuse RADSeg settings that would give NaN or all-zero probabilities (one check for every entry point:
    :class:`RADSeg`, the CLI options and an export's manifest).

    * crop (pixels) is 0 (one pass, no windows) or a positive multiple of ``patch``; then stride (pixels) is a
      positive multiple of ``patch`` and at most crop (a larger stride leaves pixels no window covers: NaN).
    * scra_tau / scga_tau are finite and > 0 (a negative temperature masks every attention entry: NaN).
    * denoise is in [0, 1) (1 or more zeroes every class); prediction_thresh is in [0, 1].
    Raises:
        InputError: naming the option (as on the command line), the value and the valid range.
    """
    def number(name: str, value) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InputError(f"--{name} must be a finite number, got {value!r}")
        return float(value)

    crop_f, stride_f = number("crop", crop), number("stride", stride)
    if crop_f != int(crop_f) or stride_f != int(stride_f):
        raise InputError(f"--crop and --stride are whole numbers of pixels, got {crop!r} and {stride!r}")
    if crop_f < 0 or (crop_f and crop_f % patch):
        raise InputError(f"--crop ({crop}) and --stride must be positive multiples of the patch size {patch} (--crop 0: no windows)")
    if crop_f and (stride_f <= 0 or stride_f % patch):
        raise InputError(f"--crop and --stride ({stride}) must be positive multiples of the patch size {patch} (--crop 0: no windows)")
    if crop_f and stride_f > crop_f:
        raise InputError(f"--stride ({stride}) must not exceed --crop ({crop}): windows would leave pixels uncovered; "
                         f"use a stride of at most {crop}")
    for name, value in (("scra-tau", scra_tau), ("scga-tau", scga_tau)):
        if number(name, value) <= 0:
            raise InputError(f"--{name} must be a positive temperature (the paper uses 10), got {value}")
    if not 0.0 <= number("denoise", denoise) < 1.0:
        raise InputError(f"--denoise must be in [0, 1) (0 disables prompt denoising), got {denoise}")
    if not 0.0 <= number("prediction-thresh", prediction_thresh) <= 1.0:
        raise InputError(f"--prediction-thresh must be in [0, 1] (0: off), got {prediction_thresh}")


@dataclass
class SegmentationResult:
    """Output of :class:`RADSeg` for B images (B = 1 for a single image).

    Attributes:
        probs: B x K x H x W class probabilities at the input size, after prompt denoising.
        labels: B x H x W int64 class indices (0-based); IGNORE_INDEX (-1) below ``prediction_thresh``.
        features: B x C x h x w stitched backbone features (h, w = patches of the pre-resized image).
        scga_features: B x C x h x w features after SCGA (what a 3D mapper fuses).
        lowres_probs: B x K x h x w probabilities before upsampling.
        class_names: names of the K classes when a Vocabulary was given.
        kernels: the SCRA/SCGA implementation that ran.
        refined: whether RADSeg+ refinement changed the result; ``refine_message`` says why not.
    """

    probs: Tensor
    labels: Tensor
    features: Tensor
    scga_features: Tensor
    lowres_probs: Tensor
    class_names: list[str] | None = None
    kernels: str = "reference"
    refined: bool = False
    refine_message: str = ""
    extras: dict = field(default_factory=dict)

    def labels_with_ignore(self) -> Tensor:
        """The reference's convention: 0 = ignored, class k -> k + 1 (B x H x W int64)."""
        return torch.where(self.labels < 0, torch.zeros_like(self.labels), self.labels + 1)

    def labels_numpy(self, index: int = 0) -> np.ndarray:
        """H x W int64 labels of image ``index``."""
        return self.labels[index].cpu().numpy()


class RADSeg(nn.Module):
    """Zero-shot open-vocabulary segmentation with a RADIO model.

    Args:
        radio: a :class:`RadioModel` with its language adaptor head loaded.
        scra_tau / scga_tau: temperatures of SCRA and SCGA (paper: 10).
        crop / stride: sliding-window size and stride in pixels (multiples of the patch size);
            crop=0 runs one pass on the whole image (its sides must then be multiples of 16).
        denoise: prompt-denoising threshold (classes whose maximum probability is below it are zeroed).
        prediction_thresh: pixels whose maximum probability is below it get label -1 (0 = off).
        kernels: SCRA/SCGA implementation: "auto", "reference", "blocked", "triton", "cuda".
        precision: "fp32", "bf16" (CPU with AVX-512 BF16/AMX, or GPU) or "fp16" (GPU) for the backbone and
            heads; SCGA, softmax and the cosine stay fp32.
        window_batch: at most this many windows per backbone call; None (default) picks by device: 4 on the CPU
            (bounds activation memory at no cost in speed there), all windows of an image at once on a GPU;
            0 = all at once.
        vocabulary: default class embeddings (K x D tensor or Vocabulary) used when a call gives none.
        profiler: a StageProfiler receiving per-stage timings.
    """

    def __init__(
        self,
        radio: RadioModel,
        scra_tau: float = 10.0,
        scga_tau: float = 10.0,
        crop: int = 336,
        stride: int = 224,
        denoise: float = 0.5,
        prediction_thresh: float = 0.0,
        kernels: str = "auto",
        precision: str = "fp32",
        window_batch: int | None = None,
        vocabulary=None,
        profiler: StageProfiler | None = None,
        refine: str | None = None,
        sam_checkpoint: str | None = None,
        sam_num_heads: int = 8,
        coarse_thresh: float | str = 0.1,
        minimal_area: int = 225,
        sam_iou_thresh: float = 0.9,
        sam_mask_coeff: float = 0.005,
    ) -> None:
        super().__init__()
        if radio.language_adaptor is None:
            raise InputError(
                f"the RADIO model has no language head loaded (teachers: {radio.config.teacher_names}, "
                f"loaded heads: {list(radio.heads)}); load it with adaptors including the language teacher"
            )
        if window_batch is not None and window_batch < 0:
            raise InputError(f"window_batch must be >= 0 (0 = all windows at once), got {window_batch}")
        check_settings(crop, stride, radio.patch_size, scra_tau, scga_tau, denoise, prediction_thresh)
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.radio = radio
        self.scra_tau = float(scra_tau)
        self.scga_tau = float(scga_tau)
        self.crop = int(crop)
        self.stride = int(stride)
        self.denoise = float(denoise)
        self.prediction_thresh = float(prediction_thresh)
        self.precision = precision
        self.window_batch = window_batch
        self.profiler = profiler or NULL_PROFILER
        self.kernels = kernels
        self._ops = get_ops(kernels, self.device)
        if self.profiler.enabled:
            self.profiler.info.update(kernels=self._ops.name, precision=precision, crop=self.crop, stride=self.stride)
        self.vocabulary = vocabulary
        self.refiner = None
        self.refine_options = dict(coarse_thresh=coarse_thresh, minimal_area=minimal_area, iou_thresh=sam_iou_thresh, mask_coeff=sam_mask_coeff)
        if refine not in (None, "none", "sam"):
            raise InputError(f"refine must be None or 'sam', got {refine!r}")
        if refine == "sam":
            self.refiner = self._make_refiner(sam_checkpoint, sam_num_heads)
        self._check_precision()
        # bf16/fp16: a copy of the backbone whose Linear weights are cast once (not on every call by autocast);
        # LayerNorm, the residual stream, SCGA, the language head and the cosine stay fp32.
        self._lowp_backbone = _low_precision_copy(radio, PRECISIONS[precision]) if precision != "fp32" else None

    # -- configuration -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.radio.parameters()).device

    @property
    def windows_per_call(self) -> int:
        """Windows per backbone call (0 = all windows of an image at once)."""
        if self.window_batch is None:
            return CPU_WINDOW_BATCH if self.device.type == "cpu" else 0
        return int(self.window_batch)

    @property
    def kernels_name(self) -> str:
        return self._ops.name

    @property
    def language_head(self) -> nn.Module:
        return self.radio.heads[self.radio.language_adaptor].summary_head

    @property
    def embedding_dim(self) -> int:
        return self.language_head.out_dim

    def to(self, *args, **kwargs):  # keep the kernel choice valid for the new device
        out = super().to(*args, **kwargs)
        self._ops = get_ops(self.kernels, self.device)
        return out

    def _check_precision(self) -> None:
        from radseg_edge.utils.precision import resolve_precision

        if self.precision != "fp32":
            resolve_precision(self.precision, self.device)  # fp16 needs a GPU; bf16 a CPU with AVX-512 BF16/AMX

    def _make_refiner(self, checkpoint, num_heads):
        if checkpoint is None:
            raise InputError("refine='sam' needs sam_checkpoint=PATH (SAM ViT-H weights, sam_vit_h_4b8939.pth)")
        try:
            from radseg_edge.models.sam_refiner import SamRefiner
        except ImportError as exc:  # pragma: no cover - until RADSeg+ is installed
            raise InputError(f"RADSeg+ refinement is not available in this build ({exc})") from None
        return SamRefiner.from_checkpoint(checkpoint, num_heads=num_heads, radio=self.radio)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    # -- text ----------------------------------------------------------------------------------------
    def text_embeddings(self, text) -> tuple[Tensor, list[str] | None]:
        """K x D fp32 class embeddings on the model's device, and the class names when known."""
        text = self.vocabulary if text is None else text
        if text is None:
            raise VocabularyError("no class embeddings: pass a Vocabulary or a K x D tensor (or set RADSeg(vocabulary=...))")
        names = None
        if hasattr(text, "embeddings") and hasattr(text, "names"):
            text.check_compatible(self.radio)
            names, emb = list(text.names), text.embeddings
        elif isinstance(text, Tensor):
            emb = text
        else:
            raise VocabularyError(f"text must be a Vocabulary or a K x D tensor, got {type(text).__name__}")
        if emb.dim() != 2 or emb.shape[0] == 0:
            raise VocabularyError(f"class embeddings must be K x D with K >= 1, got shape {tuple(emb.shape)}")
        if emb.shape[1] != self.embedding_dim:
            raise VocabularyError(
                f"class embeddings are {emb.shape[1]}-d but the language head ({self.radio.language_adaptor}) outputs "
                f"{self.embedding_dim}-d; build the vocabulary with the text model matching this checkpoint"
            )
        check_finite_embeddings(emb, names=names)
        return emb.to(self.device, torch.float32), names

    # -- the data flow -------------------------------------------------------------------------------
    def windows_of(self, image: Tensor) -> tuple[Tensor, Tensor, list]:
        """Pre-resized 1 x 3 x H' x W' image, its windows nW x 3 x h x w, and their pixel boxes."""
        if self.crop == 0:
            _, _, h, w = image.shape
            return image, image, [(0, 0, h, w)]
        resized = preresize_image(image, self.crop, self.stride)
        boxes = window_boxes(resized.shape[-2], resized.shape[-1], self.crop, self.stride)
        return resized, extract_windows(resized, boxes), boxes

    @torch.no_grad()
    def backbone(self, windows: Tensor) -> Tensor:
        """Windows nW x 3 x h x w -> features nW x C x h/16 x w/16 (last block with SCRA)."""
        scra = functools.partial(self._ops.scra, tau=self.scra_tau)
        chunk = self.windows_per_call or windows.shape[0]
        model = self.radio if self._lowp_backbone is None else self._lowp_backbone
        outs = []
        with self._autocast():
            for i in range(0, windows.shape[0], chunk):
                outs.append(model.forward_spatial(windows[i : i + chunk], last_attention=scra).float())
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    @torch.no_grad()
    def scga(self, features: Tensor) -> Tensor:
        """SCGA on a 1 x C x h x w map (fp32)."""
        b, c, h, w = features.shape
        out = self._ops.scga(features.float().flatten(2).transpose(1, 2), self.scga_tau)
        return out.transpose(1, 2).reshape(b, c, h, w)

    @torch.no_grad()
    def language_features(self, features: Tensor) -> Tensor:
        """The language adaptor's summary head per pixel: B x C x h x w -> B x D x h x w (fp32, as RADIO runs heads)."""
        return self.language_head(features.float().permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    @torch.no_grad()
    def forward(
        self, image: Tensor | np.ndarray, text=None, channel_order: str = "rgb", output_size: tuple[int, int] | None = None
    ) -> SegmentationResult:
        """Segment ``image`` into the classes of ``text``.

        Args:
            image: 1 x 3 x H x W float RGB in [0,1] (B > 1: images are processed independently), or an
                H x W x 3 uint8 numpy array in ``channel_order`` ("rgb" or "bgr").
            text: a Vocabulary or K x D class embeddings (default: the vocabulary given at construction).
            output_size: (H, W) of the probabilities and labels (default: the input size). The benchmark
                protocol segments a resized image and predicts at the original size, as the reference does.
        Returns:
            :class:`SegmentationResult` (probs B x K x H x W, labels B x H x W, features, scga_features).
        """
        prof = self.profiler
        with prof.stage("preprocess"):
            x = to_image_tensor(image, channel_order).to(self.device)
            emb, names = self.text_embeddings(text)
        if self.crop == 0 and (x.shape[-2] % self.radio.patch_size or x.shape[-1] % self.radio.patch_size):
            raise InputError(
                f"crop=0 runs one pass on the whole image, whose sides must be multiples of {self.radio.patch_size}; "
                f"got {x.shape[-2]}x{x.shape[-1]} (use sliding windows or resize the image)"
            )
        size = tuple(output_size) if output_size is not None else tuple(x.shape[-2:])
        parts = [self._one(x[i : i + 1], emb, size) for i in range(x.shape[0])]
        fields = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        result = SegmentationResult(**fields, class_names=names, kernels=self._ops.name)
        if self.refiner is not None:
            result = self._refine(x, result)
        prof.end_frame()
        return result

    def _one(self, x: Tensor, emb: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        prof = self.profiler
        with prof.stage("windows"):
            resized, windows, boxes = self.windows_of(x)
        with prof.stage("backbone"):
            window_feats = self.backbone(windows)
        with prof.stage("stitch"):
            if len(boxes) == 1 and self.crop == 0:
                feats = window_feats
            else:
                feats = stitch_windows(window_feats, boxes, tuple(resized.shape[-2:]), self.radio.patch_size)
        with prof.stage("scga"):
            agg = self.scga(feats)
        with prof.stage("head"):
            lowres = class_probabilities(self.language_features(agg), emb)
        with prof.stage("postprocess"):
            probs, labels = probabilities_and_labels(lowres, size, self.denoise, self.prediction_thresh)
        return dict(probs=probs, labels=labels, features=feats, scga_features=agg, lowres_probs=lowres)

    def _refine(self, x: Tensor, result: SegmentationResult) -> SegmentationResult:
        with self.profiler.stage("refine"):
            out = self.refiner(self.radio, x, result, scra=functools.partial(self._ops.scra, tau=self.scra_tau),
                               prediction_thresh=self.prediction_thresh, profiler=self.profiler, **self.refine_options)
        return out

    def extra_repr(self) -> str:
        return (
            f"crop={self.crop}, stride={self.stride}, scra_tau={self.scra_tau}, scga_tau={self.scga_tau}, "
            f"denoise={self.denoise}, kernels={self._ops.name}, precision={self.precision}"
        )


def _low_precision_copy(radio: RadioModel, dtype: torch.dtype) -> RadioModel:
    """A copy of the backbone (no adaptor heads) with its Linear weights in ``dtype``; other tensors stay fp32."""
    heads = radio.heads
    radio.heads = nn.ModuleDict()
    try:
        clone = copy.deepcopy(radio)
    finally:
        radio.heads = heads
    for module in clone.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    return clone
