"""The paper's 2D benchmark protocol (RADSEG.md, "Benchmark protocol"; the official configs' values).

Each image is resized keeping its aspect ratio by the factor min(L / long side, S / short side) for the
setting's scale (L, S) -- upscaling small images too -- with bilinear interpolation on uint8 (OpenCV,
as mmcv's ``imrescale``); RADSeg runs with the setting's crop/stride and predicts at the ORIGINAL size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from radseg_edge.errors import InputError

SETTINGS: tuple[str, ...] = ("low", "mid", "high")


@dataclass(frozen=True)
class Setting:
    """Resize scale (long, short) in pixels and sliding-window crop/stride in pixels."""

    scale: tuple[int, int]
    crop: int
    stride: int

    def as_dict(self) -> dict:
        return asdict(self)


_LOW = Setting((2048, 336), 224, 112)

#: dataset -> setting name -> Setting. "mid" is the paper's main table.
PROTOCOL: dict[str, dict[str, Setting]] = {
    "voc20": {"low": _LOW, "mid": Setting((2048, 336), 336, 112), "high": Setting((2016, 672), 336, 224)},
    "context59": {"low": _LOW, "mid": Setting((4096, 576), 336, 224), "high": Setting((2016, 672), 336, 224)},
    "coco-stuff171": {"low": _LOW, "mid": Setting((2048, 448), 336, 224), "high": Setting((1334, 896), 336, 224)},
    "cityscapes": {
        "low": Setting((2048, 560), 224, 112),
        "mid": Setting((2048, 688), 336, 224),
        "high": Setting((2688, 1344), 336, 224),
    },
    "ade20k": {"low": _LOW, "mid": Setting((2048, 576), 336, 224), "high": Setting((2016, 672), 336, 224)},
}

def get_setting(dataset: str, setting: str = "mid") -> Setting:
    try:
        per_dataset = PROTOCOL[dataset]
    except KeyError:
        raise InputError(f"no protocol for dataset '{dataset}': expected one of {', '.join(PROTOCOL)}") from None
    try:
        return per_dataset[setting]
    except KeyError:
        raise InputError(f"unknown setting '{setting}': expected one of {', '.join(SETTINGS)}") from None


def rescaled_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(new_h, new_w) for a keep-ratio resize to ``scale`` = (long, short) bounds, rounded half up."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_keep_ratio(image: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """H x W x 3 uint8 RGB -> h x w x 3 uint8, bilinear (OpenCV INTER_LINEAR), size from :func:`rescaled_size`."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 image, got shape {image.shape}")
    new_h, new_w = rescaled_size(image.shape[0], image.shape[1], scale)
    if (new_h, new_w) == image.shape[:2]:
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
