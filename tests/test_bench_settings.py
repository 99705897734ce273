"""The paper's benchmark settings: protocol resize, pre-resize quirk and window grid per setting."""

from __future__ import annotations

import pytest

from radseg_edge.bench.settings import SETTINGS, get_setting, parse_imgsz, protocol_resize
from radseg_edge.errors import InputError


def test_protocol_resize_keeps_ratio_and_rounds_like_mmcv():
    # VOC 500x375 to (2048, 336): factor min(2048/500, 336/375) = 0.896
    assert protocol_resize(375, 500, (2048, 336)) == (336, 448)
    # COCO 640x480 to (2048, 448): 640 * 448/480 = 597.33 -> 597
    assert protocol_resize(480, 640, (2048, 448)) == (448, 597)
    # scale tuple order does not matter (long, short taken from it)
    assert protocol_resize(1024, 2048, (560, 2048)) == (560, 1120)


def test_voc20_mid_is_336x448_with_two_windows():
    wl = get_setting("voc20-mid").workload()
    assert wl.image_hw == (336, 448) and wl.slide_hw == (336, 448)
    assert (wl.windows, wl.window_hw, wl.scga_tokens) == (2, (336, 336), 21 * 28)


def test_cityscapes_settings_match_the_measured_scga_sizes():
    low, mid, high = (get_setting(f"cityscapes-{r}").workload() for r in ("low", "mid", "high"))
    assert low.image_hw == (560, 1120) and low.windows == 36 and low.window_hw == (224, 224)
    # 688x1376 is not a multiple of stride 224: pre-resized to 896x1568 -> N = 56 * 98
    assert mid.slide_hw == (896, 1568) and mid.scga_tokens == 5488 and mid.windows == 28
    assert high.image_hw == (1344, 2688) and high.scga_tokens == 14112 and high.windows == 72


def test_every_dataset_has_three_resolutions_and_low_uses_224_112():
    assert len(SETTINGS) == 15
    for name, s in SETTINGS.items():
        assert name == s.name
        if s.resolution == "low":
            assert (s.crop, s.stride) == (224, 112)


def test_unknown_setting_and_bad_sizes_raise_input_errors():
    with pytest.raises(InputError, match="voc20-mid"):
        get_setting("voc20-ultra")
    with pytest.raises(InputError):
        parse_imgsz("big")
    assert parse_imgsz("336x448") == (336, 448)
    assert parse_imgsz("512") == (512, 512)
