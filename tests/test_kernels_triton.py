"""The Triton kernels equal the references (TRITON_INTERPRET=1 on the CPU) and compile for sm_87/sm_90.

Both checks run in a subprocess (``tests/kernels_triton_cases.py``): the interpreter is chosen when
triton kernels are defined, and must not leak into the rest of the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    "scga_random_b2_n37_tau1",
    "scga_random_b2_n37_tau10",
    "scga_random_b2_n37_tau30",
    "scga_diagonal_rows_vs_reference",
    "scga_diagonal_rows_vs_input",
    "scga_batch2_fixture_per_image",
    "scga_batch2_fixture_batch_mean",
    "scga_seg_fixture_n63",
    "scra_random_b2_n21_tau10",
    "scra_random_b2_n21_tau3",
    "scra_fixture_tau10",
    "scra_fixture_tau7",
]


def _run(*args: str, interpret: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run([sys.executable, "-m", "tests.kernels_triton_cases", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreted_errors() -> dict:
    return _run(interpret=True)


@pytest.mark.parametrize("case", CASES)
def test_triton_interpreted_matches_reference(interpreted_errors, case):
    assert interpreted_errors[case] <= 1e-5


def test_triton_fp16_input_stays_close_to_fp32_reference(interpreted_errors):
    assert interpreted_errors["scga_fp16_vs_fp32_reference"] <= 2e-3


def test_triton_kernel_compiles_to_cubin_for_orin_and_hopper():
    sizes = _run("--compile", interpret=False)
    assert set(sizes) == {"sm_87_fp16", "sm_87_fp32", "sm_90_fp16", "sm_90_fp32"}
    assert all(size > 0 for size in sizes.values())
