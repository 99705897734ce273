"""Public constructors: :func:`load_radio` (checkpoint path or model name) and :func:`radio_from_config`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from radseg_edge.errors import CheckpointError
from radseg_edge.models.checkpoint import (
    HF_ALIGN_CORNERS_TRUE,
    config_from_checkpoint,
    convert_state_dict,
    is_hf_folder,
    read_hf_folder,
    read_pth,
)
from radseg_edge.models.configs import CONFIGS, RadioConfig, get_config
from radseg_edge.models.radio import RadioModel


def _default_adaptors(config: RadioConfig) -> list[str]:
    return list(dict.fromkeys(t.name for t in config.teachers if t.summary_dim))


def load_radio(
    path_or_name: str | Path,
    adaptors: Sequence[str] | None = None,
    align_corners: bool | None = None,
    device: str | torch.device = "cpu",
) -> RadioModel:
    """Load a RADIO model: eval mode, fp32.

    Args:
        path_or_name: an official ``.pth.tar`` file, a Hugging Face folder (config.json + safetensors), or a
            model name from :data:`radseg_edge.models.configs.CONFIGS` (downloaded through huggingface_hub on
            the user's machine; HF_HUB_OFFLINE is honoured).
        adaptors: teacher heads to load (e.g. ``("siglip2", "sam")``); None loads every head in the file.
        align_corners: CPE interpolation flag; default False for ``.pth.tar`` files (what RADSeg used), the
            repo's own choice for the Hugging Face layout.
    Raises:
        CheckpointError: missing/corrupt/unsafe file, wrong tensors, unexpected keys.
    """
    path = Path(path_or_name).expanduser()
    name = path.name
    hf_repo = ""
    if not path.exists():
        key = str(path_or_name).lower()
        if key in CONFIGS and CONFIGS[key].hf_repo:
            from radseg_edge.models.hub import download_checkpoint

            path, hf_repo = download_checkpoint(CONFIGS[key])
            name = key
        elif str(path_or_name).count("/") == 1 and not str(path_or_name).startswith((".", "/")):
            from radseg_edge.models.hub import download_hf_folder

            path = download_hf_folder(str(path_or_name))
            hf_repo = str(path_or_name)
        else:
            known = ", ".join(k for k, c in CONFIGS.items() if c.hf_repo)
            raise CheckpointError(f"checkpoint '{path_or_name}' not found; give a file path or one of: {known}")
    try:
        if is_hf_folder(path):
            args, state, hf_config = read_hf_folder(path)
            default_ac = hf_repo in HF_ALIGN_CORNERS_TRUE or bool(hf_config.get("cpe_align_corners", False))
        elif path.is_file():
            args, state = read_pth(path)
            default_ac = False
        else:
            raise CheckpointError(f"{path}: neither a checkpoint file nor a Hugging Face folder with config.json")
        ac = default_ac if align_corners is None else align_corners
        config = config_from_checkpoint(args, state, name=name, align_corners=ac)
        named = CONFIGS.get(str(path_or_name).lower())
        if named is not None:
            config = config.replace(license=named.license, preferred_resolution=named.preferred_resolution, hf_repo=named.hf_repo)
        wanted = list(adaptors) if adaptors is not None else _default_adaptors(config)
        ours, shapes = convert_state_dict(state, config, wanted)
    except CheckpointError as exc:  # every message names the file
        if str(path) in str(exc):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # tensors or args of odd shapes/types
        raise CheckpointError(f"{path}: not a usable RADIO checkpoint ({type(exc).__name__} while reading its "
                              "args and tensors); use an official RADIO file") from None
    model = RadioModel(config, shapes)
    if "feature_normalizer.mean" in ours:
        from radseg_edge.models.radio import FeatureNormalizer

        model.feature_normalizer = FeatureNormalizer(config.embed_dim)
    _load_strict(model, ours, path)
    return model.to(device).eval()


def _load_strict(model: RadioModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    # the conditioner may legitimately be absent from old files: keep CLIP mean/std then
    missing = [k for k in missing if not k.startswith("conditioner.")]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {len(missing)} tensor(s): {', '.join(missing[:5])}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path}: checkpoint has {len(unexpected)} unexpected key(s) the model would silently drop: "
            f"{', '.join(unexpected[:5])}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)


def radio_from_config(
    name: str | RadioConfig, seed: int | None = None, adaptors: Sequence[str] | None = None, device: str | torch.device = "cpu"
) -> RadioModel:
    """The exact architecture of a named RADIO model with random weights (for benchmarks and tests).

    Heads are built for ``adaptors`` (default: every teacher with a summary head). Weights: Linear
    N(0, 1/fan_in), biases N(0, 0.05^2), LayerNorm 1 + N(0, 0.1^2), tokens N(0, 0.5^2), LayerScale U(0.1, 0.5).
    """
    config = get_config(name) if isinstance(name, str) else name
    wanted = list(adaptors) if adaptors is not None else _default_adaptors(config)
    shapes = {}
    for t in config.teachers:
        if t.name in wanted and t.name not in shapes:
            fshape = (config.embed_dim, t.hidden_dim, t.feature_dim, t.feature_inner) if t.feature_dim else None
            shapes[t.name] = ((config.embed_dim, t.hidden_dim, t.summary_dim, t.summary_inner), fshape)
    unknown = [a for a in wanted if a not in shapes]
    if unknown:
        raise CheckpointError(f"adaptor(s) {unknown} are not teachers of {config.name}: {config.teacher_names}")
    model = RadioModel(config, shapes)
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.4 + 0.1)
            elif pname in ("pos_embed", "prefix_tokens"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif "norm" in pname or ".0.weight" in pname and "blocks" in pname or pname.endswith("final.0.weight"):
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.to(device).eval()
