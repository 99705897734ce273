"""Named configurations have the published parameter counts; random-weights construction works."""

import pytest
import torch

from radseg_edge.errors import InputError
from radseg_edge.models import radio_from_config
from radseg_edge.models.configs import CONFIGS, get_config
from radseg_edge.models.radio import RadioModel

PUBLISHED_BACKBONE_M = {  # RADIO.md "Variants"
    "c-radio_v3-b": 98.3, "c-radio_v3-l": 319.9, "c-radio_v3-h": 651.6,
    "radio_v2.5-b": 98.2, "radio_v2.5-l": 319.9, "radio_v2.5-h": 651.6,
    "c-radio_v4-so400m": 431.0, "c-radio_v4-h": 652.0,
}


@pytest.mark.parametrize("name", list(PUBLISHED_BACKBONE_M))
def test_backbone_parameter_count_matches_published(name):
    with torch.device("meta"):
        model = RadioModel(CONFIGS[name], {})
    count = sum(p.numel() for p in model.parameters()) / 1e6
    tol = 0.1 if name.startswith(("c-radio_v3", "radio_v2.5")) else 1.0
    assert abs(count - PUBLISHED_BACKBONE_M[name]) <= tol


def test_random_weights_constructor_builds_c_radio_v3_b_exactly():
    model = radio_from_config("c-radio_v3-b", seed=0, adaptors=["siglip2"])
    counts = model.parameter_counts()
    assert abs(counts["backbone"] / 1e6 - 98.3) <= 0.1
    assert model.heads["siglip2"].summary_head.out_dim == 1152
    assert model.num_prefix_tokens == 8 and model.config.layer_scale


def test_random_weights_are_seeded():
    a = radio_from_config("tiny", seed=3)
    b = radio_from_config("tiny", seed=3)
    c = radio_from_config("tiny", seed=4)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(a(x).features, b(x).features)
        assert not torch.allclose(a(x).features, c(x).features)


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(InputError, match="c-radio_v3-b"):
        get_config("radio-v9")
