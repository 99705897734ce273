"""Shared test fixtures. Parity data: tests/fixtures (tensors made by the official RADSeg/RADIO code on
tiny random checkpoints; see tests/fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CKPT = FIXTURES / "tiny_radio.pth.tar"

torch.set_num_threads(2)


def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON sidecar, tensors) of a fixture case."""
    from safetensors.torch import load_file

    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


@pytest.fixture(scope="session")
def tiny_radio():
    from radseg_edge.models import load_radio

    return load_radio(TINY_CKPT)


@pytest.fixture(scope="session")
def tiny_state():
    """(args dict, fp32 state dict) of the tiny checkpoint, for tests that write modified copies."""
    from radseg_edge.models.checkpoint import read_pth

    return read_pth(TINY_CKPT)
