"""The paper's benchmark settings (RADSEG.md "Benchmark protocol"), as data.

Each setting is a dataset at one resolution (low / mid / high) of the official evaluation configs: the
protocol resizes an image keeping its ratio to the scale (L, S) (factor min(L/long, S/short), sizes rounded
like mmcv: ``int(x * factor + 0.5)``), then RADSeg slides ``crop`` x ``crop`` windows with ``stride``.
A benchmark needs one concrete image, so every dataset has a *typical* image size (the most common size
of its validation images); :meth:`Setting.image_hw` is that image after the protocol's resize, i.e. what
the pipeline receives. The pipeline's own pre-resize quirk and window grid are derived with the
reference functions of :mod:`radseg_edge.core.windows`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from radseg_edge.core.windows import preresize_size, window_boxes
from radseg_edge.errors import InputError

PATCH = 16


@dataclass(frozen=True)
class Dataset:
    """One evaluation set: a typical image (H x W pixels) and its number of classes."""

    name: str
    title: str
    typical_hw: tuple[int, int]
    num_classes: int


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("voc20", "VOC20", (375, 500), 20),
        Dataset("context59", "Context59", (375, 500), 59),
        Dataset("cocostuff", "COCO-Stuff", (480, 640), 171),
        Dataset("cityscapes", "Cityscapes", (1024, 2048), 19),
        Dataset("ade20k", "ADE20K", (512, 683), 150),
    )
}

#: (dataset, resolution) -> (scale (L, S), crop, stride), from the official configs.
_PROTOCOL: dict[tuple[str, str], tuple[tuple[int, int], int, int]] = {
    ("voc20", "low"): ((2048, 336), 224, 112),
    ("context59", "low"): ((2048, 336), 224, 112),
    ("cocostuff", "low"): ((2048, 336), 224, 112),
    ("cityscapes", "low"): ((2048, 560), 224, 112),
    ("ade20k", "low"): ((2048, 336), 224, 112),
    ("voc20", "mid"): ((2048, 336), 336, 112),
    ("context59", "mid"): ((4096, 576), 336, 224),
    ("cocostuff", "mid"): ((2048, 448), 336, 224),
    ("cityscapes", "mid"): ((2048, 688), 336, 224),
    ("ade20k", "mid"): ((2048, 576), 336, 224),
    ("voc20", "high"): ((2016, 672), 336, 224),
    ("context59", "high"): ((2016, 672), 336, 224),
    ("cocostuff", "high"): ((1334, 896), 336, 224),
    ("cityscapes", "high"): ((2688, 1344), 336, 224),
    ("ade20k", "high"): ((2016, 672), 336, 224),
}

RESOLUTIONS = ("low", "mid", "high")


def protocol_resize(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio resize of the evaluation protocol: H x W -> H' x W' (pixels).

    factor = min(max(scale) / long side, min(scale) / short side); each side ``int(side * factor + 0.5)``.
    """
    longer, shorter = max(scale), min(scale)
    factor = min(longer / max(height, width), shorter / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


@dataclass(frozen=True)
class Workload:
    """What the pipeline does for one image: sizes in pixels, counts in patches/tokens."""

    image_hw: tuple[int, int]  # input of the pipeline (after the protocol's resize)
    slide_hw: tuple[int, int]  # after the pipeline's pre-resize quirk (what is cut into windows)
    crop: int
    stride: int
    windows: int
    window_hw: tuple[int, int]  # pixels of one window
    grid_hw: tuple[int, int]  # stitched patch map h x w

    @property
    def window_patches(self) -> int:
        return (self.window_hw[0] // PATCH) * (self.window_hw[1] // PATCH)

    @property
    def scga_tokens(self) -> int:
        """N of SCGA: every patch of the stitched map."""
        return self.grid_hw[0] * self.grid_hw[1]


def workload(image_hw: tuple[int, int], crop: int, stride: int) -> Workload:
    """The window grid RADSeg uses for an image of ``image_hw`` (``crop`` = 0: one pass on the whole image)."""
    h, w = image_hw
    if crop <= 0:
        if h % PATCH or w % PATCH:
            raise InputError(f"with crop 0 the image must be a multiple of {PATCH} pixels, got {h}x{w}")
        return Workload((h, w), (h, w), 0, 0, 1, (h, w), (h // PATCH, w // PATCH))
    sh, sw = preresize_size(h, w, crop, stride)
    boxes = window_boxes(sh, sw, crop, stride)
    y1, x1, y2, x2 = boxes[0]
    return Workload(
        (h, w), (sh, sw), crop, stride, len(boxes), (y2 - y1, x2 - x1), (math.ceil(sh / PATCH), math.ceil(sw / PATCH))
    )


@dataclass(frozen=True)
class Setting:
    """One benchmark setting of the paper: ``<dataset>-<resolution>``, e.g. ``voc20-mid``."""

    dataset: Dataset
    resolution: str
    scale: tuple[int, int]
    crop: int
    stride: int

    @property
    def name(self) -> str:
        return f"{self.dataset.name}-{self.resolution}"

    @property
    def image_hw(self) -> tuple[int, int]:
        """The typical image of the dataset after the protocol's resize (H x W pixels)."""
        return protocol_resize(*self.dataset.typical_hw, self.scale)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def workload(self) -> Workload:
        return workload(self.image_hw, self.crop, self.stride)

    def describe(self) -> str:
        wl = self.workload()
        return (
            f"{self.dataset.title} {self.resolution}-res: {wl.image_hw[0]}x{wl.image_hw[1]}"
            f" (from {self.dataset.typical_hw[0]}x{self.dataset.typical_hw[1]}), crop {self.crop}/{self.stride},"
            f" {wl.windows} windows, SCGA N={wl.scga_tokens}"
        )


SETTINGS: dict[str, Setting] = {
    f"{ds}-{res}": Setting(DATASETS[ds], res, *_PROTOCOL[(ds, res)]) for ds in DATASETS for res in RESOLUTIONS
}


def get_setting(name: str) -> Setting:
    """The setting called ``name`` (``voc20-mid``, ``cityscapes-low``, ...)."""
    key = name.strip().lower().replace("_", "-")
    if key not in SETTINGS:
        raise InputError(f"unknown benchmark setting '{name}'; choose one of: {', '.join(SETTINGS)}")
    return SETTINGS[key]


def parse_imgsz(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (or one number for a square) into (H, W) pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not match:
        raise InputError(f"image size must look like HxW (e.g. 336x448), got '{text}'")
    h = int(match.group(1))
    w = int(match.group(2) or h)
    if h < PATCH or w < PATCH:
        raise InputError(f"image size must be at least {PATCH}x{PATCH} pixels, got {h}x{w}")
    return h, w
