"""The RADIO backbone and adaptor heads match the official code (fixture radio_plain) at every resolution."""

import pytest
import torch

from tests.conftest import load_case


@pytest.mark.parametrize("r", [0, 1])
def test_tokens_summary_features_and_heads_match_reference(tiny_radio, r):
    meta, t = load_case("radio_plain")
    image = t[f"r{r}_image"]
    with torch.no_grad():
        tokens = tiny_radio.forward_tokens(image)
        out = tiny_radio(image)
    scale = t[f"r{r}_all_tokens"].abs().max()
    assert (tokens - t[f"r{r}_all_tokens"]).abs().max() <= 1e-5 * scale
    assert (out.summary - t[f"r{r}_backbone_summary"]).abs().max() <= 1e-5 * scale
    assert (out.features - t[f"r{r}_backbone_features"]).abs().max() <= 1e-5 * scale
    for name in ("siglip2", "sam"):
        s = tiny_radio.adaptor_summary(name, tokens)
        f = tiny_radio.heads[name].feature_head(out.features)
        ref_s, ref_f = t[f"r{r}_{name}_summary"], t[f"r{r}_{name}_features"]
        assert (s - ref_s).abs().max() <= 1e-5 * ref_s.abs().max()
        assert (f - ref_f).abs().max() <= 1e-5 * ref_f.abs().max()


def test_config_read_from_checkpoint_matches_fixture_description(tiny_radio):
    meta, _ = load_case("radio_plain")
    c = tiny_radio.config
    assert (c.num_cls_tokens, c.num_registers) == (meta["num_cls_tokens"], meta["num_registers"])
    assert tiny_radio.summary_idxs == meta["summary_idxs"]
    assert {n: c.cls_slot(n) for n in ("siglip2", "sam")} == meta["adaptor_head_idx"]
    assert [c.cpe_grid] * 2 == meta["cpe_grid"]
    assert c.layer_scale and c.align_corners is False
    assert tiny_radio.language_adaptor == "siglip2"


def test_forward_spatial_is_features_as_a_map(tiny_radio):
    _, t = load_case("radio_plain")
    image = t["r0_image"]
    with torch.no_grad():
        fmap = tiny_radio.forward_spatial(image)
        feats = tiny_radio(image).features
    assert fmap.shape == (1, 192, 4, 6)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), feats)


def test_model_stays_in_eval_semantics(tiny_radio):
    tiny_radio.train()
    assert not tiny_radio.training
