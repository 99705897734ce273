"""SAM weights load from the official layout (.pth, safely) and from safetensors with the official names; the
trunk is ignored; sizes come from tensor shapes; truncated, unsafe or mismatched checkpoints give clear errors."""

import argparse
import dataclasses
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from radseg_edge.errors import CheckpointError
from radseg_edge.export.sam_onnx import example_inputs
from radseg_edge.models.sam import (
    SAM_VIT_H,
    SamConfig,
    SamPromptDecoder,
    load_sam,
    random_sam,
    read_sam_state_dict,
    to_official_state_dict,
)
from radseg_edge.models.sam_refiner import SamRefiner
from tests.sam_cases import SAM_WEIGHTS, TINY_SAM_HEADS, load_case, tiny_radio


@pytest.fixture(scope="module")
def official_sd():
    return load_file(str(SAM_WEIGHTS))


def _outputs(sam):
    x = example_inputs(sam, 3, 2)
    with torch.no_grad():
        return sam(*x)


def test_official_pth_with_trunk_loads_like_the_safetensors_and_ignores_the_trunk(tmp_path, official_sd):
    sd = dict(official_sd)
    sd.pop("pixel_mean"), sd.pop("pixel_std")  # non-persistent in SAM: absent from the released .pth
    sd["image_encoder.patch_embed.proj.weight"] = torch.randn(24, 3, 16, 16)
    sd["image_encoder.pos_embed"] = torch.randn(1, 64, 64, 24)
    sd["image_encoder.blocks.0.attn.qkv.weight"] = torch.randn(72, 24)
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(sd, path)
    assert not any(k.startswith("image_encoder.blocks") for k in read_sam_state_dict(path))
    a = load_sam(path, num_heads=TINY_SAM_HEADS)
    b = load_sam(SAM_WEIGHTS, num_heads=TINY_SAM_HEADS)
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        assert torch.equal(x, y)
    assert not hasattr(a, "image_encoder")


def test_sizes_are_read_from_tensor_shapes_and_heads_from_the_config():
    cfg = load_sam(SAM_WEIGHTS, num_heads=TINY_SAM_HEADS).config
    meta = __import__("json").loads((SAM_WEIGHTS.parent / "tiny_sam_public_config.json").read_text())["config"]
    assert (cfg.encoder_dim, cfg.embed_dim, cfg.mask_in_chans) == (
        meta["encoder_embed_dim"], meta["prompt_embed_dim"], meta["mask_in_chans"])
    assert (cfg.transformer_depth, cfg.mlp_dim, cfg.num_mask_tokens) == (
        meta["transformer_depth"], meta["transformer_mlp_dim"], meta["num_multimask_outputs"] + 1)
    assert cfg.attention_internal_dim == meta["prompt_embed_dim"] // meta["attention_downsample_rate"]
    assert cfg.iou_head_dims == (32, 64, 64, 4) and cfg.num_heads == TINY_SAM_HEADS
    assert load_sam(SAM_WEIGHTS).config.num_heads == 8  # the default: every released SAM
    with pytest.raises(CheckpointError, match="num_heads=3"):
        load_sam(SAM_WEIGHTS, num_heads=3)


def test_vit_h_shaped_parts_have_the_released_parameter_counts():
    cfg = SAM_VIT_H
    sam = SamPromptDecoder(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(sam.mask_decoder) == 4_058_340  # SAM's published mask-decoder size
    assert count(sam.prompt_encoder) == 6_220
    assert count(sam.neck) == 1280 * 256 + 256 * 256 * 9 + 4 * 256
    assert SamConfig.from_state_dict(sam.state_dict()) == cfg
    counts = SamRefiner(sam).parameter_counts(tiny_radio())
    assert counts["sam:mask_decoder"] == 4_058_340 and sum(counts.values()) - counts["head:sam:feature"] == sam.num_parameters()


def test_official_names_round_trip_through_a_released_style_pth(tmp_path):
    small = dataclasses.replace(SAM_VIT_H, encoder_dim=40, embed_dim=32, mlp_dim=64, attention_internal_dim=16,
                                iou_head_dims=(32, 16, 16, 4), hyper_dims=(32, 32, 32, 4), upscale_dims=(8, 4))
    sam = random_sam(small, seed=1)
    sd = to_official_state_dict(sam)
    assert all(k.startswith(("image_encoder.neck.", "prompt_encoder.", "mask_decoder.")) for k in sd)
    torch.save(sd, tmp_path / "sam.pth")
    loaded = load_sam(tmp_path / "sam.pth")
    assert loaded.config == small
    for x, y in zip(_outputs(loaded), _outputs(sam), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, official_sd, suffix):
    path = tmp_path / f"sam{suffix}"
    if suffix == ".pth":
        torch.save(dict(official_sd), path)
    else:
        save_file(dict(official_sd), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_sam(path)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"args": argparse.Namespace(x=1), "w": torch.zeros(1)}, f)
    with pytest.raises(CheckpointError, match="SAM checkpoint"):
        load_sam(path)


def test_missing_file_and_missing_tensors_are_clear_errors(tmp_path, official_sd):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sam(tmp_path / "nope.pth")
    sd = {k: v for k, v in official_sd.items() if "iou_prediction_head" not in k}
    path = tmp_path / "partial.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match="iou_prediction_head"):
        load_sam(path)
    save_file({"model.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="neck"):
        load_sam(tmp_path / "other.safetensors")


def test_neck_that_does_not_fit_the_radio_sam_head_is_a_clear_error(tmp_path, official_sd):
    sd = dict(official_sd)
    sd["image_encoder.neck.0.weight"] = torch.randn(32, 768, 1, 1)  # a ViT-B-width neck
    path = tmp_path / "sam_vit_b_like.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=r"768-d .*SAM ViT-B.* 24-d"):
        SamRefiner.from_checkpoint(path, num_heads=TINY_SAM_HEADS, radio=tiny_radio())

    class FakeHead(torch.nn.Module):
        out_dim = 1280

    class FakeRadio(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = torch.nn.ModuleDict({"sam": torch.nn.Module()})
            self.heads["sam"].feature_head = FakeHead()

    refiner = SamRefiner.from_checkpoint(path, num_heads=TINY_SAM_HEADS)
    with pytest.raises(CheckpointError, match=r"SAM ViT-B.*made for SAM ViT-H.*sam_vit_h_4b8939"):
        refiner.check_compatible(FakeRadio())
    _, t = load_case("sam_smooth_64x80_allfail")
    with pytest.raises(CheckpointError, match="768-d"):
        refiner.refine(tiny_radio(), t["image"], t["b0_coarse_probs"][None])
