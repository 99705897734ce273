"""Inputs shared by the kernel tests: fixture cases (official-code outputs) and synthetic odd sizes."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"

#: seg fixtures: (name, batch_mean) - the batch-2 case ran the official batch threshold
SEG_SCGA_FIXTURES = (
    ("seg_single_80x112", False),
    ("seg_slide112s48_70x110", False),
    ("seg_slide112s48_96x96_noresize", False),
    ("seg_slide64s32_100x150", False),
    ("seg_photo_coffee_slide64s32_90x135", False),
    ("seg_slide64s32_batch2_48x72_QUIRK", True),
)


def to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """B x C x h x w -> B x (h*w) x C."""
    return feature_map.flatten(2).transpose(1, 2).contiguous()


def scga_fixture(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(stitched features, official SCGA output), both B x N x C, from a seg fixture."""
    t = load_file(FIXTURES / f"{name}.safetensors")
    return to_tokens(t["stitched_features"]), to_tokens(t["scga_features"])


def scga_batch_fixture() -> dict[str, torch.Tensor]:
    """scga_batch2: input, output with the batch-wide threshold, output with per-image thresholds (B x N x C)."""
    t = load_file(FIXTURES / "scga_batch2.safetensors")
    return {
        "input": to_tokens(t["scga_input"]),
        "batch_mean": to_tokens(t["scga_output"]),
        "per_image": to_tokens(t["scga_output_per_image"]),
    }


def scra_fixture() -> tuple[tuple, dict[float, torch.Tensor]]:
    """(x, qkv_w, qkv_b, proj_w, proj_b, num_heads) of the tiny model's last block, and outputs by tau."""
    t = load_file(FIXTURES / "scra_attention_last_block.safetensors")
    state = torch.load(FIXTURES / "tiny_radio.pth.tar", map_location="cpu", weights_only=False)["state_dict"]
    p = "base_model.blocks.3.attn."
    w = {k: state[p + k].float() for k in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")}
    args = (t["attn_input"], w["qkv.weight"], w["qkv.bias"], w["proj.weight"], w["proj.bias"], 3)
    return args, {10.0: t["scra_attn_output_s10"], 7.0: t["scra_attn_output_s7"]}


def diagonal_rows_features(n: int = 40, c: int = 48, one_hot: int = 12, seed: int = 0) -> torch.Tensor:
    """1 x n x c features whose first ``one_hot`` rows are orthogonal one-hot vectors on channels no
    other row uses, so that only the diagonal survives the SCGA threshold in those rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, c, generator=g)
    x[:, :, :one_hot] = 0.0
    x[0, :one_hot] = 0.0
    x[0, torch.arange(one_hot), torch.arange(one_hot)] = 3.0
    return x


def scra_random_args(b: int = 2, n: int = 21, c: int = 48, heads: int = 3, seed: int = 0) -> tuple:
    """Random SCRA inputs: (x, qkv_w, qkv_b, proj_w, proj_b, num_heads)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, c, generator=g), torch.randn(3 * c, c, generator=g) * c**-0.5,
            torch.randn(3 * c, generator=g) * 0.1, torch.randn(c, c, generator=g) * c**-0.5,
            torch.randn(c, generator=g) * 0.1, heads)  # fmt: skip


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def clustered_features(b: int, n: int, c: int, clusters: int = 6, seed: int = 0) -> torch.Tensor:
    """B x n x c features around ``clusters`` orthogonal centres (scaled randomly per row).

    Similarities are ~1 within a cluster and ~0 across, far from the SCGA threshold (~1/clusters), so
    no entry sits within round-off of the mask boundary: implementations whose dot products round
    differently (GPU vs CPU) must still agree to fp32 round-off.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.linalg.qr(torch.randn(c, clusters, generator=g))[0].T  # clusters x c, orthonormal
    labels = torch.randint(0, clusters, (b, n), generator=g)
    scale = 0.5 + torch.rand(b, n, 1, generator=g)
    return scale * (centres[labels] + 0.02 * torch.randn(b, n, c, generator=g))


def threshold_margin(features: torch.Tensor) -> float:
    """min over entries of |cos_ij - m| (m: the per-image SCGA threshold)."""
    from radseg_edge.core.scga import scga_threshold

    t = torch.nn.functional.normalize(features.double(), dim=-1)
    return ((t @ t.transpose(-2, -1)) - scga_threshold(features).double()).abs().min().item()
