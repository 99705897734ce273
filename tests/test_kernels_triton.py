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
    "scga_fp32_registers_b2_n37",
    "scra_chunks_b2_n21_h2_tau10",
    "scga_default_tiles_b2_n37",
    "scga_fp32_chunks_rerun_on_nan_output",
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


@pytest.mark.parametrize("path", ["chunks", "registers"])
def test_triton_fp16_input_stays_close_to_fp32_reference(interpreted_errors, path):
    assert interpreted_errors[f"scga_fp16_{path}_vs_fp32_reference"] <= 2e-3


@pytest.fixture(scope="module")
def compile_reports() -> list[dict]:
    return _run("--compile", interpret=False)


def test_triton_compiles_every_autotune_variant_for_orin_and_hopper(compile_reports):
    from radseg_edge.kernels.triton_ops import FP32_TILES, HALF_TILES

    seen = {(r["arch"], r["dtype"], r["precision"], r["dv"]) for r in compile_reports}
    assert {
        (a, t, "ieee", dv) for a in (87, 90) for t in ("fp16", "bf16", "fp32") for dv in (64, 768)
    } <= seen
    assert len(compile_reports) == 2 * 2 * (2 * len(HALF_TILES) + len(FP32_TILES) + 1)
    assert all(r["registers"] > 0 for r in compile_reports)


def test_triton_kernels_do_not_spill_registers(compile_reports):
    spilling = [r for r in compile_reports if r["spill_stores"] or r["spill_loads"] or r["stack_bytes"]]
    assert not spilling, spilling


def test_triton_half_precision_and_tf32_products_use_tensor_cores(compile_reports):
    for r in compile_reports:
        tensor_cores = r["mma"] or r["wgmma"]
        if r["dtype"] in ("fp16", "bf16") or r["precision"] == "tf32":
            assert tensor_cores, r  # sm_87: mma.sync; sm_90: wgmma (mma.sync for tiles wgmma cannot take)
            if r["arch"] == 87:
                assert r["mma"] and not r["wgmma"], r
        else:
            assert not tensor_cores, r  # the exact fp32 path multiplies on CUDA cores
