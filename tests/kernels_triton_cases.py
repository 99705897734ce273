"""Run the Triton kernels through the interpreter (TRITON_INTERPRET=1) on small odd cases.

Run as ``TRITON_INTERPRET=1 python -m tests.kernels_triton_cases`` (the tests do this in a
subprocess, so the interpreter setting never leaks into the test process). Prints one JSON
object: case name -> relative error against the reference (and the fixture where there is one).

``python -m tests.kernels_triton_cases --compile`` (without TRITON_INTERPRET) instead compiles the
kernel to GPU machine code for sm_87 and sm_90 with Triton's bundled ptxas (no GPU needed) and
prints {target: cubin bytes}.
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
    from radseg_edge.kernels.dispatch import get_ops
    from radseg_edge.kernels.triton_ops import SMALL_TILES, TileConfig, scga_triton, scra_triton

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

    half = features.half()
    errors["scga_fp16_vs_fp32_reference"] = relative_error(
        scga_triton(half, 10.0, tiles=SMALL_TILES).float(), scga_reference(half.float(), 10.0)
    )
    return errors


def compile_cubins() -> dict[str, int]:
    """Compile the kernel for Orin (sm_87) and Hopper (sm_90), fp16 and fp32; cubin sizes by target."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from radseg_edge.kernels.triton_ops import TileConfig, _thresholded_attention_kernel

    tiles = TileConfig()
    sizes = {}
    for dtype, precision in (("fp16", "tf32"), ("fp32", "ieee")):
        signature = {"q_ptr": f"*{dtype}", "v_ptr": f"*{dtype}", "thr_ptr": "*fp32", "out_ptr": f"*{dtype}"}
        signature |= {name: "i32" for name in ("n", "d", "dv", "heads")} | {"tau": "fp32"}
        signature |= {f"stride_{t}{s}": "i32" for t in "qvo" for s in "bhn"}
        constexprs = {"BLOCK_M": tiles.block_m, "BLOCK_N": tiles.block_n, "BLOCK_D": tiles.block_d,
                      "BLOCK_DV": tiles.block_dv, "PRECISION": precision}  # fmt: skip
        signature |= {name: "constexpr" for name in constexprs}
        for arch in (87, 90):
            source = ASTSource(fn=_thresholded_attention_kernel, signature=signature, constexprs=constexprs)
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                      options={"num_warps": tiles.num_warps, "num_stages": tiles.num_stages})  # fmt: skip
            sizes[f"sm_{arch}_{dtype}"] = len(compiled.asm["cubin"])
    return sizes


if __name__ == "__main__":
    import sys

    print(json.dumps(compile_cubins() if "--compile" in sys.argv else run_cases()))
