"""Benchmark protocol: keep-ratio resize sizes and the per-dataset settings of RADSEG.md."""

from __future__ import annotations

import numpy as np
import pytest

from radseg_edge.errors import InputError
from radseg_edge.eval.protocol import PROTOCOL, get_setting, rescaled_size, resize_keep_ratio


@pytest.mark.parametrize(
    ("hw", "dataset", "setting", "expected"),
    [
        ((375, 500), "voc20", "mid", (336, 448)),  # short side bound: 336/375
        ((1024, 2048), "cityscapes", "mid", (688, 1376)),
        ((1024, 2048), "cityscapes", "low", (560, 1120)),
        ((1024, 2048), "cityscapes", "high", (1344, 2688)),
        ((100, 3000), "voc20", "mid", (68, 2048)),  # long side bound: 2048/3000, 100*0.6827 rounds to 68
        ((512, 683), "ade20k", "mid", (576, 768)),  # small images are upscaled; 768.375 rounds to 768
    ],
)
def test_rescaled_size_keeps_ratio_within_both_bounds(hw, dataset, setting, expected):
    assert rescaled_size(*hw, get_setting(dataset, setting).scale) == expected


def test_main_table_settings_match_the_spec():
    mid = {name: (s["mid"].scale, s["mid"].crop, s["mid"].stride) for name, s in PROTOCOL.items()}
    assert mid == {
        "voc20": ((2048, 336), 336, 112),
        "context59": ((4096, 576), 336, 224),
        "coco-stuff171": ((2048, 448), 336, 224),
        "cityscapes": ((2048, 688), 336, 224),
        "ade20k": ((2048, 576), 336, 224),
    }
    for name, settings in PROTOCOL.items():
        low = settings["low"]
        assert (low.crop, low.stride) == (224, 112)
        assert min(low.scale) == (560 if name == "cityscapes" else 336)


def test_resize_returns_uint8_rgb_of_the_protocol_size():
    image = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    out = resize_keep_ratio(image, (2048, 336))
    assert out.shape == (336, 538, 3) and out.dtype == np.uint8


def test_unknown_setting_is_an_input_error():
    with pytest.raises(InputError, match="low, mid, high"):
        get_setting("voc20", "ultra")
