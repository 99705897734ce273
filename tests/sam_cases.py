"""Shared loaders for the RADSeg+ fixtures in tests/fixtures/sam (see its README: official RADSeg+ run on a
tiny random RADIO and a tiny random SAM). Each case is refined once and cached."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch

SAM_DIR = Path(__file__).parent / "fixtures" / "sam"
RADIO_CKPT = SAM_DIR / "tiny_radio_sam_public.pth.tar"
SAM_WEIGHTS = SAM_DIR / "tiny_sam_public.safetensors"
#: the tiny SAM's two-way transformer head count (tiny_sam_public_config.json: transformer_num_heads)
TINY_SAM_HEADS = json.loads((SAM_DIR / "tiny_sam_public_config.json").read_text())["config"]["transformer_num_heads"]
CASES = sorted(p.stem for p in SAM_DIR.glob("sam_*.json"))
FULL_CASES = [c for c in CASES if json.loads((SAM_DIR / f"{c}.json").read_text())["storage"] == "full"]


@functools.cache
def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return json.loads((SAM_DIR / f"{name}.json").read_text()), load_file(str(SAM_DIR / f"{name}.safetensors"))


@functools.cache
def tiny_radio():
    from radseg_edge.models import load_radio

    return load_radio(RADIO_CKPT)


@functools.cache
def tiny_refiner():
    from radseg_edge.models.sam_refiner import SamRefiner

    return SamRefiner.from_checkpoint(SAM_WEIGHTS, num_heads=TINY_SAM_HEADS, radio=tiny_radio())


def coarse_probs(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """B x C x H x W: the probabilities the reference passed to sam_refinement (after prompt denoising)."""
    b = t["image"].shape[0]
    return torch.stack([t[f"b{i}_coarse_probs"] for i in range(b)])


def refine_kwargs(meta: dict) -> dict:
    s = meta["settings"]
    return dict(
        scra_tau=s["scra_scaling"], coarse_thresh=s["coarse_thresh"], minimal_area=s["minimal_area"],
        iou_thresh=s["sam_iou_thresh"], mask_coeff=s["sam_mask_coff"], prediction_thresh=s["prediction_thresh"],
    )


@functools.cache
def refined(name: str):
    """SamRefiner's RefineResult for a case, from the reference's coarse probabilities."""
    meta, t = load_case(name)
    return tiny_refiner().refine(tiny_radio(), t["image"], coarse_probs(t), **refine_kwargs(meta))


def sha256(t: torch.Tensor) -> str:
    """Digest rule of the fixtures: sha256 of the raw little-endian C-contiguous bytes."""
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def near0_pixels(t: dict[str, torch.Tensor], b: int, hw: tuple[int, int]) -> torch.Tensor:
    """H x W bool: pixels where some prompt's full-res mask logit has |.| < 1e-3 (README section 7)."""
    out = torch.zeros(hw, dtype=torch.bool)
    idx = t[f"b{b}_sam_mask_logit_near0_idx"]
    out[idx[:, 1], idx[:, 2]] = True
    return out


def assert_digest_close(x: torch.Tensor, digest: dict, rtol: float = 1e-5) -> None:
    """Compare a tensor the fixture keeps only as a digest: shape, and sum/abs-sum/min/max within rtol of abs-sum."""
    assert list(x.shape) == digest["shape"]
    x = x.double()
    scale = max(digest["abs_sum"], 1e-12)
    assert abs(float(x.sum()) - digest["sum"]) <= rtol * scale
    assert abs(float(x.abs().sum()) - digest["abs_sum"]) <= rtol * scale
    span = max(abs(digest["max"]), abs(digest["min"]), 1e-12)
    assert abs(float(x.min()) - digest["min"]) <= 1e-4 * span
    assert abs(float(x.max()) - digest["max"]) <= 1e-4 * span
