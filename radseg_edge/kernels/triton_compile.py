"""Compile the Triton kernel for a GPU target without a GPU, and read its register use and spills.

``triton.compile`` lowers :func:`radseg_edge.kernels.triton_ops._thresholded_attention_kernel` to PTX
for a chosen target (``GPUTarget("cuda", 87, 32)`` for Orin, 90 for Hopper); the PTX is then assembled
with Triton's bundled ``ptxas -v``, whose report gives registers per thread and spill bytes, and the
PTX shows whether the dot products use tensor cores (``mma.sync`` on sm_80+, ``wgmma`` on sm_90).
Arguments are specialised as at run time on a GPU: pointers, strides and widths divisible by 16.

``python -m radseg_edge.kernels.triton_compile`` prints the table for every autotune configuration
(JSON, then Markdown).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from radseg_edge.kernels.triton_ops import FP32_TILES, HALF_TILES, TileConfig

#: value widths compiled: 64 (SCRA head: the register-accumulator path) and 768 (SCGA at ViT-B width:
#: the channel-chunk path)
VALUE_WIDTHS = (64, 768)


@dataclass(frozen=True)
class CompileReport:
    """ptxas's view of one kernel variant."""

    arch: int
    dtype: str
    precision: str
    tiles: TileConfig
    dv: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    mma: bool  # mma.sync in the PTX
    wgmma: bool  # wgmma.mma_async in the PTX

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


def _signature(dtype: str, constexprs: dict) -> dict[str, str]:
    sig = {
        "q_ptr": f"*{dtype}",
        "v_ptr": f"*{dtype}",
        "thr_ptr": "*fp32",
        "out_ptr": f"*{dtype}",
        "acc_ptr": "*fp32",
    }
    sig |= {name: "i32" for name in ("n", "d", "dv", "heads")} | {"tau": "fp32"}
    sig |= {f"stride_{t}{s}": "i32" for t in "qvoa" for s in "bhn"}
    return sig | {name: "constexpr" for name in constexprs}


def compile_variant(
    arch: int, dtype: str, tiles: TileConfig, dv: int, precision: str = "ieee"
) -> CompileReport:
    """Compile the kernel for sm_<arch> with ``dtype`` inputs ("fp16", "bf16", "fp32") and value width ``dv``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    from radseg_edge.kernels.triton_ops import _thresholded_attention_kernel as kernel

    constexprs = {"DV_PAD": max(16, triton.next_power_of_2(dv)), "PRECISION": precision} | tiles.meta()
    signature = _signature(dtype, constexprs)
    aligned = [n for n in signature if n.endswith("_ptr") or n.startswith("stride_") or n in ("d", "dv")]
    attrs = {(kernel.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": tiles.num_warps, "num_stages": tiles.num_stages})  # fmt: skip
    ptx = compiled.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # as Triton assembles it
        done = subprocess.run([_ptxas(get_ptxas, arch), "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", str(path),
                               "-o", str(path.with_suffix(".o"))], capture_output=True, text=True, check=True)  # fmt: skip
    return parse_ptxas(done.stderr, arch=arch, dtype=dtype, precision=precision, tiles=tiles, dv=dv,
                       mma="mma.sync" in ptx, wgmma="wgmma.mma_async" in ptx)  # fmt: skip


def _ptxas(get_ptxas, arch: int) -> str:
    """Triton's bundled ptxas (``get_ptxas`` takes the architecture since Triton 3.4, nothing before)."""
    try:
        tool = get_ptxas(arch)
    except TypeError:
        tool = get_ptxas()
    return tool.path if hasattr(tool, "path") else tool[0]


def parse_ptxas(log: str, **fields) -> CompileReport:
    """A :class:`CompileReport` from the ``ptxas -v`` log of a single kernel."""
    registers = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if registers is None or spills is None:
        raise ValueError(f"unexpected ptxas -v output: {log[-500:]}")
    stack, stores, loads = (int(g) for g in spills.groups())
    return CompileReport(registers=int(registers.group(1)), spill_stores=stores, spill_loads=loads,
                         stack_bytes=stack, **fields)  # fmt: skip


def variants() -> list[tuple]:
    """(arch, dtype, tiles, dv, precision) for every dtype x autotune configuration x target x path."""
    out = []
    for arch in (87, 90):
        for dv in VALUE_WIDTHS:
            out += [(arch, dtype, t, dv, "ieee") for dtype in ("fp16", "bf16") for t in HALF_TILES]
            out += [(arch, "fp32", t, dv, "ieee") for t in FP32_TILES]
            out += [(arch, "fp32", FP32_TILES[0], dv, "tf32")]
    return out


def _compile(args: tuple) -> CompileReport:
    return compile_variant(*args)


def compile_all(workers: int = 2) -> list[CompileReport]:
    """Compile every variant of :func:`variants` (``workers`` processes)."""
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_compile, variants()))


def markdown(reports: list[CompileReport]) -> str:
    """One table row per variant."""
    rows = ["| target | dtype | products | tiles (M, N, D, Dv, warps, stages) | Dv | registers | spill bytes "
            "(stores/loads) | tensor cores |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in reports:
        t = r.tiles
        tc = "wgmma" if r.wgmma else "mma.sync" if r.mma else "no (FMA)"
        products = "tf32" if r.precision == "tf32" else "fp32 exact" if r.dtype == "fp32" else r.dtype
        rows.append(f"| sm_{r.arch} | {r.dtype} | {products} | {t.block_m}, {t.block_n}, {t.block_d}, {t.block_dv}, "
                    f"{t.num_warps}, {t.num_stages} | {r.dv} | {r.registers} | {r.spill_stores}/{r.spill_loads} | "
                    f"{tc} |")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    reports = compile_all()
    print(json.dumps([asdict(r) for r in reports]))
    print(markdown(reports))
