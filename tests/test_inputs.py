"""Bad images get a clear InputError saying what was expected and how to fix it."""

import numpy as np
import pytest
import torch

from radseg_edge.core.image import to_image_tensor
from radseg_edge.errors import InputError
from radseg_edge.models.radio import round_to_patch
from radseg_edge.pipeline import RADSeg


def test_sides_not_multiple_of_16_are_refused_with_the_nearest_valid_size(tiny_radio):
    with pytest.raises(InputError, match=r"multiples of the patch size 16, got 50x64.*48x64"):
        tiny_radio(torch.rand(1, 3, 50, 64))
    assert round_to_patch(torch.rand(1, 3, 50, 70)).shape[-2:] == (48, 64)


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "float image"),
        (torch.rand(1, 4, 32, 32), "B x 3 x H x W"),
        (torch.rand(32, 32), "B x 3 x H x W"),
        (np.zeros((32, 32), np.uint8), "grayscale"),
        (np.zeros((32, 32, 4), np.uint8), "drop the alpha channel"),
        (np.zeros((32, 32, 3), np.uint16), "16-bit"),
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        ("image.png", "torch.Tensor or numpy array"),
    ],
)
def test_wrong_dtype_shape_or_channels(image, message):
    with pytest.raises(InputError, match=message):
        to_image_tensor(image)


def test_channel_order_is_checked():
    with pytest.raises(InputError, match="'rgb' or 'bgr'"):
        to_image_tensor(np.zeros((4, 4, 3), np.uint8), channel_order="rgba")


def test_uint8_is_scaled_to_unit_range():
    x = to_image_tensor(np.full((2, 2, 3), 255, np.uint8))
    assert x.shape == (1, 3, 2, 2) and x.max() == 1.0


def test_radseg_settings_are_validated(tiny_radio):
    with pytest.raises(InputError, match="multiples of the patch size"):
        RADSeg(tiny_radio, crop=100, stride=50)
    with pytest.raises(InputError, match="fp16 is for GPUs"):
        RADSeg(tiny_radio, precision="fp16")
    with pytest.raises(InputError, match="unknown kernels"):
        RADSeg(tiny_radio, kernels="magic")
    seg = RADSeg(tiny_radio, crop=0)
    with pytest.raises(InputError, match="crop=0"):
        seg(torch.rand(1, 3, 40, 48), torch.randn(3, 64))


def test_model_without_language_head_is_refused():
    from radseg_edge.models import load_radio
    from tests.conftest import TINY_CKPT

    with pytest.raises(InputError, match="no language head"):
        RADSeg(load_radio(TINY_CKPT, adaptors=["sam"]))
