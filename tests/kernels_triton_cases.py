"""Run the Triton kernels through the interpreter (TRITON_INTERPRET=1) on small odd cases.

Run as ``TRITON_INTERPRET=1 python -m tests.kernels_triton_cases`` (the tests do this in a
subprocess, so the interpreter setting never leaks into the test process). Prints one JSON
object: case name -> relative error against the reference (and the fixture where there is one).

``python -m tests.kernels_triton_cases --compile`` (without TRITON_INTERPRET) instead compiles every
autotune variant for sm_87 and sm_90 with Triton's bundled ptxas (no GPU needed) and prints the
ptxas reports (:mod:`radseg_edge.kernels.triton_compile`).
"""

from __future__ import annotations

import json
import os

import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference
from tests.kernels_cases import (
    diagonal_rows_features,
    relative_error,
    scga_batch_fixture,
    scga_fixture,
    scra_fixture,
    scra_random_args,
)


def run_cases() -> dict[str, float]:
    """Relative errors of the interpreted Triton SCGA/SCRA, keyed by case."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("set TRITON_INTERPRET=1 before running the Triton cases on the CPU")
    from radseg_edge.core.scga import scga_threshold
    from radseg_edge.kernels.dispatch import get_ops
    from radseg_edge.kernels.triton_ops import (
        SMALL_TILES,
        TileConfig,
        scga_triton,
        scra_triton,
        thresholded_attention_triton,
    )

    assert get_ops("triton", "cpu").name == "triton"
    errors: dict[str, float] = {}
    features = torch.randn(2, 37, 24, generator=torch.Generator().manual_seed(0))  # N, C not multiples of 16
    for tau in (1.0, 10.0, 30.0):
        errors[f"scga_random_b2_n37_tau{tau:g}"] = relative_error(
            scga_triton(features, tau, tiles=SMALL_TILES), scga_reference(features, tau)
        )
    diagonal = diagonal_rows_features()
    out = scga_triton(diagonal, 10.0, tiles=SMALL_TILES)
    errors["scga_diagonal_rows_vs_reference"] = relative_error(out, scga_reference(diagonal, 10.0))
    errors["scga_diagonal_rows_vs_input"] = relative_error(out[0, :12], diagonal[0, :12])

    medium = TileConfig(16, 32, 64, 64, 1, 1)
    batch = scga_batch_fixture()
    errors["scga_batch2_fixture_per_image"] = relative_error(scga_triton(batch["input"], 10.0, tiles=medium),
                                                             batch["per_image"])  # fmt: skip
    errors["scga_batch2_fixture_batch_mean"] = relative_error(
        scga_triton(batch["input"], 10.0, batch_mean=True, tiles=medium), batch["batch_mean"]
    )
    stitched, expected = scga_fixture("seg_slide112s48_70x110")
    errors["scga_seg_fixture_n63"] = relative_error(scga_triton(stitched, 10.0, tiles=medium), expected)

    args = scra_random_args()
    for tau in (10.0, 3.0):
        errors[f"scra_random_b2_n21_tau{tau:g}"] = relative_error(
            scra_triton(*args, tau, tiles=SMALL_TILES), scra_attention_reference(*args, tau)
        )
    args, expected_scra = scra_fixture()
    for tau, expected in expected_scra.items():
        errors[f"scra_fixture_tau{tau:g}"] = relative_error(scra_triton(*args, tau, tiles=medium), expected)

    # both accumulator paths, each dtype: Dv = 24 -> DV_PAD = 32: registers with BLOCK_DV >= 32,
    # channel chunks (fp32: in the output, fp16/bf16: in the fp32 workspace) with BLOCK_DV = 16
    register_tiles = TileConfig(16, 16, 16, 32, 1, 1)
    # (bf16 is not checked here: the interpreter's tl.dot on bf16 returns garbage - numpy has no bf16 -
    # so bf16 parity is a GPU test: tests/test_kernels_gpu_triton.py)
    for dtype, name in ((torch.float16, "fp16"),):
        low = features.to(dtype)
        expected = scga_reference(low.float(), 10.0)
        for path, tiles in (("chunks", SMALL_TILES), ("registers", register_tiles)):
            out = scga_triton(low, 10.0, tiles=tiles)
            assert out.dtype == dtype
            errors[f"scga_{name}_{path}_vs_fp32_reference"] = relative_error(out.float(), expected)
    errors["scga_fp32_registers_b2_n37"] = relative_error(scga_triton(features, 10.0, tiles=register_tiles),
                                                          scga_reference(features, 10.0))  # fmt: skip
    # SCRA with 2 heads of width 24 (B = 2, N = 21): channel-chunk path with heads merged in the output
    args = scra_random_args(heads=2)
    errors["scra_chunks_b2_n21_h2_tau10"] = relative_error(scra_triton(*args, 10.0, tiles=SMALL_TILES),
                                                           scra_attention_reference(*args, 10.0))  # fmt: skip
    # autotune launches the kernel several times on the same buffers, and the fp32 channel-chunk path
    # accumulates in the output itself: it must zero its rows first (NaN-filled output, launched twice)
    q = torch.nn.functional.normalize(features, dim=-1)
    out = torch.full_like(features, float("nan"))
    for _ in range(2):
        thresholded_attention_triton(q.unsqueeze(1), features.unsqueeze(1), scga_threshold(features).reshape(-1), 10.0,
                                     out.unsqueeze(2), 1, SMALL_TILES)  # fmt: skip
    errors["scga_fp32_chunks_rerun_on_nan_output"] = relative_error(out, scga_reference(features, 10.0))
    # no tiles given: the first autotune configuration is used under the interpreter
    errors["scga_default_tiles_b2_n37"] = relative_error(
        scga_triton(features, 10.0), scga_reference(features, 10.0)
    )
    return errors


def compile_reports() -> list[dict]:
    """Every autotune variant compiled for sm_87 and sm_90 (no GPU needed): registers, spills, mma use."""
    from dataclasses import asdict

    from radseg_edge.kernels.triton_compile import compile_all

    return [asdict(r) | {"tiles": asdict(r.tiles)} for r in compile_all()]


if __name__ == "__main__":
    import sys

    print(json.dumps(compile_reports() if "--compile" in sys.argv else run_cases()))
