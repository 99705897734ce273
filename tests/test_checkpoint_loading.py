"""Checkpoint loading: safe unpickling, strict key accounting, HF layout, clear errors for bad files."""

import argparse
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from radseg_edge.errors import CheckpointError
from radseg_edge.models import load_radio
from tests.conftest import TINY_CKPT


def _save(path, args, state, key="state_dict"):
    torch.save({"args": argparse.Namespace(**args), key: dict(state)}, path)
    return path


def _outputs(model):
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).features


def test_official_file_loads_with_no_missing_or_unexpected_keys(tiny_radio):
    ours = tiny_radio.state_dict()
    assert "heads.siglip2.summary_head.fc1.weight" in ours and "heads.sam.feature_head.final.2.bias" in ours
    assert sum(1 for k in ours if k.startswith("blocks.")) == 4 * 14


def test_selected_adaptors_only():
    m = load_radio(TINY_CKPT, adaptors=["siglip2", "sam"])
    assert sorted(m.heads) == ["sam", "siglip2"]
    with pytest.raises(CheckpointError, match="not in this checkpoint"):
        load_radio(TINY_CKPT, adaptors=["siglip"])


def test_state_dict_ema_wins_and_module_prefix_is_stripped(tmp_path, tiny_state, tiny_radio):
    args, state = tiny_state
    bad = {k: torch.zeros_like(v) for k, v in state.items()}
    path = tmp_path / "ema.pth.tar"
    torch.save({"args": argparse.Namespace(**args), "state_dict": bad,
                "state_dict_ema": {"module." + k: v for k, v in state.items()}}, path)
    torch.testing.assert_close(_outputs(load_radio(path)), _outputs(tiny_radio))


def test_heads_stored_by_name_and_index_ten_does_not_catch_index_one(tmp_path, tiny_state, tiny_radio):
    args, state = tiny_state
    renamed = {}
    for k, v in state.items():
        for i, name in enumerate(["clip", "siglip2", "dino_v2", "sam"]):
            for group in ("_heads", "_feature_projections"):
                if k.startswith(f"{group}.{i}."):
                    k = k.replace(f"{group}.{i}.", f"{group}.{name}.", 1)
        renamed[k] = v
    m = load_radio(_save(tmp_path / "named.pth.tar", args, renamed))
    x = torch.rand(2, 192)
    torch.testing.assert_close(m.heads["sam"].summary_head(x), tiny_radio.heads["sam"].summary_head(x))


def test_hugging_face_layout_loads_to_the_same_model(tmp_path, tiny_state, tiny_radio):
    args, state = tiny_state
    hf = {}
    for k, v in state.items():
        if k.startswith("base_model."):
            hf["radio_model.model." + k.removeprefix("base_model.")] = v
        elif k.startswith("input_conditioner."):
            hf["radio_model." + k] = v
        elif k.startswith("_heads.1.") or k.startswith("_feature_projections.1."):
            which = "head_mlp" if k.startswith("_heads") else "feat_mlp"
            hf[f"radio_model.adaptors.siglip2.{which}." + k.split(".", 2)[2]] = v
    save_file(hf, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"args": {**args, "dtype": "float32"}}))
    m = load_radio(tmp_path, adaptors=["siglip2"])
    torch.testing.assert_close(_outputs(m), _outputs(tiny_radio))
    assert m.align_corners is False


def test_identity_parametrizations_are_realized_and_spectral_ones_refused(tmp_path, tiny_state, tiny_radio):
    args, state = tiny_state
    damp = {k.replace("attn.qkv.weight", "attn.qkv.parametrizations.weight.original"): v for k, v in state.items()}
    torch.testing.assert_close(_outputs(load_radio(_save(tmp_path / "damp.pth.tar", args, damp))), _outputs(tiny_radio))
    spectral = dict(damp)
    spectral["base_model.blocks.0.attn.qkv.parametrizations.weight.0._u"] = torch.ones(576)
    with pytest.raises(CheckpointError, match="spectral"):
        load_radio(_save(tmp_path / "sn.pth.tar", args, spectral))


def test_unexpected_key_is_an_error_but_documented_ones_are_ignored(tmp_path, tiny_state):
    args, state = tiny_state
    assert "base_model.reg_token" in state  # documented as unused: loading the official file worked
    extra = dict(state, **{"base_model.blocks.0.attn.q_norm.weight": torch.ones(64)})
    with pytest.raises(CheckpointError, match="unexpected key.*q_norm"):
        load_radio(_save(tmp_path / "extra.pth.tar", args, extra))


def test_missing_key_is_an_error(tmp_path, tiny_state):
    args, state = tiny_state
    partial = {k: v for k, v in state.items() if k != "base_model.blocks.2.mlp.fc2.bias"}
    with pytest.raises(CheckpointError, match="lacks 1 tensor.*blocks.2.mlp.fc2.bias"):
        load_radio(_save(tmp_path / "missing.pth.tar", args, partial))


def test_wrong_tensor_shape_is_an_error(tmp_path, tiny_state):
    args, state = tiny_state
    bad = dict(state, **{"base_model.blocks.1.norm2.weight": torch.ones(191)})
    with pytest.raises(CheckpointError, match=r"blocks.1.norm2.weight has shape \(191,\), expected \(192,\)"):
        load_radio(_save(tmp_path / "shape.pth.tar", args, bad))


def test_truncated_file_is_reported_as_corrupt(tmp_path):
    data = TINY_CKPT.read_bytes()
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_radio(path)


def test_non_radio_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="not a RADIO checkpoint"):
        load_radio(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_radio(text)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_disallowed_global_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"args": _Evil(), "state_dict": {}}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="disallowed object"):
        load_radio(path)


def test_missing_file_and_unknown_name():
    with pytest.raises(CheckpointError, match="not found.*c-radio_v3-b"):
        load_radio("/nonexistent/radio.pth.tar")


def test_align_corners_override_changes_the_position_embedding(tiny_radio):
    m = load_radio(TINY_CKPT, align_corners=True)
    assert m.align_corners is True
    assert not torch.allclose(m.position_embedding(4, 6), tiny_radio.position_embedding(4, 6))
    torch.testing.assert_close(m.position_embedding(32, 32), tiny_radio.position_embedding(32, 32))


def test_model_name_in_offline_mode_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="could not fetch nvidia/C-RADIOv3-B.*pass the file path"):
        load_radio("c-radio_v3-b")
