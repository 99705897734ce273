"""GPU acceptance of the fused kernels and the pipeline, in ONE command (issue 13, items 4 and 5).

    timeout -k 20 540 python3 benchmarks/gpu_acceptance.py --out benchmarks/results/gpu_h200 --budget 450
    python3 benchmarks/gpu_acceptance.py --dry-run --out /tmp/gpu_acceptance_dry   # CPU, tiny sizes, < 60 s
    python3 benchmarks/gpu_acceptance.py --report-only --out DIR [--results-md benchmarks/RESULTS.md]

(docs/kernels.md "GPU acceptance" has the device command with the copy to $OUT, and the rerun command.)

Steps (each in its own process, time-boxed and failure-isolated: a step that fails, crashes or runs out of
time is recorded and the next one runs; an overall budget, default 450 s, skips what no longer fits):

=================  ==========================================================================================
build              CMake + ninja: libradseg_kernels.so for this GPU's architecture, then the PyTorch
                   extension (torch.utils.cpp_extension, ninja) into the output folder
kernel_parity      SCGA and SCRA of the Triton and CUDA kernels (extension and CMake library) against the
                   plain-PyTorch references, odd N and C, fp32 / fp16 / bf16
fixtures           RADSeg on the device against the official fixtures (tests/fixtures), every kernel; fp16 /
                   bf16 label agreement with the fp32 labels
scga_bench         SCGA time and peak GPU memory at N = 588 ... 16384, C = 768: materialized PyTorch (the
                   reference), Triton, CUDA, in fp32 / fp16 / bf16
pipeline_eager     C-RADIOv3-B (random weights, exact architecture) at voc20-mid and cityscapes-mid: the naive
                   official-semantics baseline (eager fp32) and RADSeg eager fp32 / fp16 / bf16
gpu_tests          pytest on the kernel test files (CUDA, Triton, library, pipeline, native compile)
pipeline_compile   the same cases with the backbone under torch.compile, fp32 / fp16 / bf16 (+ baseline)
aoti_cpp           the C++ runtime (cpp/, CMake) running an AOTInductor CUDA package of the tiny model,
                   compared with the Python pipeline on the same frame
pipeline_aoti      the fixed-resolution pipeline compiled by AOTInductor for CUDA, per case and precision
=================  ==========================================================================================

Optional steps (:data:`OPTIONAL_STEPS`): a step whose module is not in this checkout is recorded as skipped;
that is the hook for later lines: add ``("name", "module", "function")``, where
``module.function(ctx)`` takes a :class:`StepContext` and returns a dict with a ``status``.

Output: ``gpu_acceptance.json`` and ``gpu_acceptance.md`` in ``--out`` (per-step files under ``steps/``), the
target lines of issue 13 item 5 as MET / NOT MET / NOT MEASURED from the measured numbers, and an AGX Orin
estimate scaled from the measured figures by bandwidth and tensor-throughput ratios (an ESTIMATE, not a
measurement). With ``--out benchmarks/results/gpu_h200`` the report is one of the tables that
``benchmarks/make_results.py`` copies into RESULTS.md; ``--results-md benchmarks/RESULTS.md`` puts it there
at once (between ``gpu_acceptance`` markers) without re-running the CPU suite. ``--only STEP ...`` reruns some
steps and keeps the other steps' records of the earlier run in the same folder.

``--dry-run`` runs the same plumbing on the CPU with the tiny fixture checkpoint, small N and a tiny image;
nothing there is a GPU figure. Needs no network; on the GPU machine it needs torch with CUDA, triton, nvcc,
cmake and ninja (no TensorRT).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCHEMA = "radseg-edge-gpu-acceptance/1"
DEFAULT_BUDGET_S = 450.0  # 7.5 min: the issue allows 8 min on one H200
MIN_STEP_S = 20.0  # a step is not started with less than this left of the overall budget

#: SCGA sizes: 588 = 21 x 28 patches (voc20-mid), 2352, 5488, 14112 = 84 x 168 (cityscapes-high), 16384 = 128^2.
SCGA_NS = (588, 2352, 5488, 14112, 16384)
SCGA_CHANNELS = 768
DTYPE_NAMES = ("fp32", "fp16", "bf16")
PIPELINE_SETTINGS = ("cityscapes-mid", "voc20-mid")  # the target case first
PIPELINE_MODEL = "c-radio_v3-b"

#: parity tolerances (max |out - ref| / max |ref|) against the fp32 reference on the same (rounded) input.
PARITY_TOL = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}

#: issue 13 item 5.
TARGET_SCGA_SPEEDUP = 3.0
TARGET_SCGA_MEMORY_FRACTION = 1 / 20
TARGET_SCGA_N = 14112
TARGET_PIPELINE_SETTING = "cityscapes-mid"
TARGET_PIPELINE_SPEEDUP = 5.0
TARGET_LABEL_AGREEMENT = 0.99

#: Vendor datasheet figures (NOT measured; /work/shared/spec/EDGE.md lists only AGX Orin's 275 sparse INT8 TOPS,
#: which includes the two DLAs). Dense tensor-core rates; the Orin GPU's: 16 SMs x 4 tensor cores x 256 FP16
#: FMA/clk x 2 x 1.3 GHz = 42.6 TFLOPS (a quarter of the GPU's 170 sparse INT8 TOPS).
DEVICE_SPECS = {
    "H200 NVL": {"bandwidth_gbs": 4800.0, "fp16_tflops": 835.5, "fp32_tflops": 60.0,
                 "source": "NVIDIA H200 NVL datasheet (dense FP16/BF16 tensor, FP32 CUDA cores, HBM3e)"},
    "H200": {"bandwidth_gbs": 4800.0, "fp16_tflops": 989.5, "fp32_tflops": 67.0,
             "source": "NVIDIA H200 SXM datasheet (dense FP16/BF16 tensor, FP32 CUDA cores, HBM3e)"},
    "AGX Orin 64GB": {"bandwidth_gbs": 204.8, "fp16_tflops": 42.6, "fp32_tflops": 5.3,
                      "source": "Jetson AGX Orin 64GB datasheet: LPDDR5 204.8 GB/s, 2048 CUDA cores at 1.3 GHz, "
                                "64 tensor cores (GPU 170 sparse INT8 TOPS)"},
}
ORIN = "AGX Orin 64GB"


@dataclass
class StepContext:
    """What a step sees: the mode, the device, the output folder and a sink for partial results."""

    name: str
    out: Path
    dry_run: bool
    device: str
    build_dir: Path
    rows: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def add(self, row: dict) -> None:
        """Record one result row and save the step's file now (a later timeout keeps it)."""
        self.rows.append(row)
        self.save("running")
        print(json.dumps(row, default=str), flush=True)

    def save(self, status: str, **extra) -> Path:
        path = self.out / "steps" / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"step": self.name, "status": status, "rows": self.rows, "info": self.info, **extra}
        path.write_text(json.dumps(doc, indent=1, default=str))
        return path


# --------------------------------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _dtype(name: str):
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _precision_ok(name: str, device: str) -> tuple[bool, str]:
    from radseg_edge.utils.precision import precision_supported

    return precision_supported(name, device)


def time_and_peak(fn: Callable[[], object], device: str, repeats: int) -> tuple[float, int | None]:
    """(median seconds over ``repeats`` synchronised calls after one warm-up, peak bytes above the memory in use
    before the calls: torch.cuda.max_memory_allocated on CUDA, RSS high-water mark on the CPU)."""
    from radseg_edge.bench.runner import PeakMemory

    fn()
    _sync(device)
    times = []
    with PeakMemory(device) as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), mem.extra_bytes


def kernel_names(device: str) -> list[str]:
    """The fused implementations to check on ``device`` (on the CPU, the blocked one stands in)."""
    return ["triton", "cuda"] if device.startswith("cuda") else ["blocked"]


def _ops(name: str, device: str):
    """KernelOps by name; ``cuda-library`` = the CMake-built libradseg_kernels.so through ctypes."""
    from radseg_edge.kernels import get_ops

    if name != "cuda-library":
        return get_ops(name, device)
    from radseg_edge.kernels.cuda_library import KernelLibrary

    lib_path = os.environ.get("RADSEG_ACCEPTANCE_KERNELS_LIB")
    if not lib_path:
        raise RuntimeError("the build step produced no libradseg_kernels.so")
    lib = KernelLibrary(lib_path)

    class LibraryOps:
        name = "cuda-library"

        @staticmethod
        def scga(features, tau=10.0, batch_mean=False):
            return lib.scga(features, tau, batch_mean)

    return LibraryOps()


# --------------------------------------------------------------------------------------------------- steps
def step_build(ctx: StepContext) -> dict:
    """CMake + ninja: the CUDA kernels library for this GPU; then the PyTorch extension (ninja)."""
    cmake, ninja, nvcc = shutil.which("cmake"), shutil.which("ninja"), shutil.which("nvcc")
    if nvcc is None and Path("/usr/local/cuda/bin/nvcc").exists():
        nvcc = "/usr/local/cuda/bin/nvcc"
    ctx.info.update(cmake=cmake, ninja=ninja, nvcc=nvcc)
    if cmake is None:
        return {"status": "skipped", "reason": "cmake is not installed"}
    build = ctx.build_dir / "cmake"
    arch = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        arch = f"{major}{minor}"
    configure = ["cmake", "-S", str(REPO), "-B", str(build), "-DRADSEG_BUILD_RUNTIME=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    if ninja:
        configure += ["-G", "Ninja"]
    if ctx.dry_run:  # the plumbing only: CUDA language detection alone takes ~10 s of nvcc runs
        configure += ["-DRADSEG_BUILD_KERNELS=OFF", "-DCMAKE_CUDA_COMPILER="]
    elif nvcc:
        configure += [f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    if arch:
        configure += [f"-DCMAKE_CUDA_ARCHITECTURES={arch}"]
    t0 = time.perf_counter()
    done = subprocess.run(configure, capture_output=True, text=True)
    ctx.add({"what": "cmake configure", "ok": done.returncode == 0, "seconds": round(time.perf_counter() - t0, 1),
             "log_tail": (done.stdout + done.stderr)[-1500:]})
    if done.returncode != 0:
        return {"status": "failed", "reason": "cmake configure failed (see rows)"}
    if ctx.dry_run:
        return {"status": "skipped", "reason": "dry run: configured without the kernels (the CUDA build takes minutes)"}
    if nvcc is None:
        return {"status": "skipped", "reason": "nvcc not found: configured without the CUDA kernels (nothing to build)"}
    t0 = time.perf_counter()
    log = ctx.build_dir / "cmake_build.log"
    # the CMake build runs in the background while torch's ninja builds the extension (both use a few cores),
    # and a third process compiles and autotunes the Triton kernels for the later steps' shapes (disk cache)
    warm = None
    if torch.cuda.is_available():
        warm = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--warm-triton", "--out", str(ctx.out)],
                                stdout=open(ctx.build_dir / "triton_warmup.log", "w"), stderr=subprocess.STDOUT)
        # (in this step's process group: a time-out of the step takes it down too)
    with open(log, "w") as log_file:
        cmake_build = subprocess.Popen(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 4)],
                                       stdout=log_file, stderr=subprocess.STDOUT)
        ext_ok, ext_where = True, None
        t_ext = time.perf_counter()
        if torch.cuda.is_available():  # the PyTorch extension: torch.utils.cpp_extension + ninja of kernels/torch
            from radseg_edge.kernels.cuda_ops import load_extension

            try:
                module = load_extension()
                ext_where = getattr(module, "__file__", type(module).__name__)
            except Exception as exc:  # noqa: BLE001 - recorded
                ext_ok, ext_where = False, _first_line(exc)
        ext_s = round(time.perf_counter() - t_ext, 1)
        code = cmake_build.wait()
        cmake_s = round(time.perf_counter() - t0, 1)
    if warm is not None:  # a head start only: what it has not compiled by now, the steps compile themselves
        try:
            warm.wait(timeout=max(1.0, WARMUP_UNTIL_S - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            pass
        if warm.poll() is None:
            warm.kill()
            warm.wait()
        ctx.info["triton_warmup"] = {"returncode": warm.returncode, "log": str(ctx.build_dir / "triton_warmup.log")}
    libs = sorted(str(p) for p in build.rglob("libradseg_kernels.so"))
    ctx.add({"what": f"cmake --build ({f'sm_{arch}' if arch else 'default architectures'})", "ok": code == 0 and bool(libs),
             "seconds": cmake_s, "libraries": libs, "log_tail": log.read_text(errors="replace")[-1500:]})
    if ext_where is not None:
        ctx.add({"what": "torch extension (torch.utils.cpp_extension + ninja, built alongside)", "ok": ext_ok,
                 "path": ext_where, "seconds": ext_s})
    if code != 0 or not libs:
        return {"status": "failed", "reason": "the CMake build of libradseg_kernels failed"}
    ctx.info["kernels_library"] = libs[0]
    if not ext_ok:
        return {"status": "failed", "reason": f"the PyTorch extension did not build: {ext_where}"}
    return {"status": "ok"}


WARMUP_UNTIL_S = 80.0  # the build step waits for the Triton warm-up until this many seconds after its start


def warm_triton() -> None:
    """Compile and autotune the Triton kernels (disk cache: $TRITON_CACHE_DIR) for the channel counts, head widths
    and dtypes of kernel_parity, fixtures, scga_bench and the pipeline, while the build step compiles the CUDA
    code. Only a head start: each shape is tried on its own and failures are printed, not raised."""
    from radseg_edge.kernels import get_ops

    ops = get_ops("triton", "cuda")
    for dname in ("fp16", "bf16", "fp32"):
        for c in (SCGA_CHANNELS, 200, 769, 77, 192):  # 192: the tiny fixture model of the fixtures step
            try:
                ops.scga(torch.randn(1, 1037, c, device="cuda").to(_dtype(dname)), 10.0)
                torch.cuda.synchronize()
                print(f"scga C={c} {dname}: ready", flush=True)
            except Exception as exc:  # noqa: BLE001 - a head start only
                print(f"scga C={c} {dname}: {_first_line(exc)}", flush=True)
        for heads, d in ((12, 64), (4, 33)):
            c = heads * d
            args = [torch.randn(1, 197, c), torch.randn(3 * c, c) / c**0.5, torch.randn(3 * c) * 0.1,
                    torch.randn(c, c) / c**0.5, torch.randn(c) * 0.1]
            try:
                ops.scra(*[a.to("cuda", _dtype(dname)) for a in args], heads, tau=10.0)
                torch.cuda.synchronize()
                print(f"scra head width {d} {dname}: ready", flush=True)
            except Exception as exc:  # noqa: BLE001 - a head start only
                print(f"scra head width {d} {dname}: {_first_line(exc)}", flush=True)


def step_kernel_parity(ctx: StepContext) -> dict:
    """Fused SCGA / SCRA vs the references, odd N and C, fp32 / fp16 / bf16."""
    from radseg_edge.core.scga import scga_reference
    from radseg_edge.core.scra import scra_attention_reference
    from tests.kernels_cases import clustered_features, relative_error, threshold_margin

    dev = ctx.device
    sizes = [(1, 67, 23), (2, 131, 45)] if ctx.dry_run else [(1, 1037, 200), (2, 2049, 769), (1, 333, 77)]
    library = dev.startswith("cuda") and os.environ.get("RADSEG_ACCEPTANCE_KERNELS_LIB")
    # the CUDA kernels first (built by the build step), Triton last: a step cut by its time box loses Triton rows
    impls = sorted(kernel_names(dev) + (["cuda-library"] if library else []), key=lambda name: name == "triton")
    failures = 0
    for impl in impls:
        try:
            ops = _ops(impl, dev)
        except Exception as exc:  # noqa: BLE001 - recorded
            ctx.add({"impl": impl, "op": "scga", "status": "unavailable", "reason": _first_line(exc)})
            failures += 1
            continue
        for b, n, c in sizes:
            x32 = clustered_features(b, n, c, seed=n)
            margin = threshold_margin(x32)
            for dname in DTYPE_NAMES:
                ok_prec, why = _precision_ok(dname, dev) if dname != "fp32" else (True, "")
                if not ok_prec and not dev.startswith("cuda"):
                    ctx.add({"impl": impl, "op": "scga", "n": n, "c": c, "dtype": dname, "status": "skipped",
                             "reason": why})
                    continue
                x = x32.to(_dtype(dname))
                try:
                    out = ops.scga(x.to(dev), 10.0).float().cpu()
                    err = relative_error(out, scga_reference(x.float(), 10.0))
                    ok = err <= PARITY_TOL[dname]
                    row = {"impl": impl, "op": "scga", "b": b, "n": n, "c": c, "dtype": dname, "rel_error": err,
                           "tolerance": PARITY_TOL[dname], "threshold_margin": margin,
                           "status": "ok" if ok else "failed"}
                except Exception as exc:  # noqa: BLE001 - recorded
                    row = {"impl": impl, "op": "scga", "n": n, "c": c, "dtype": dname, "status": "failed",
                           "reason": _first_line(exc)}
                failures += row["status"] == "failed"
                ctx.add(row)
        if impl == "cuda-library":
            continue
        # SCRA (last block): odd token count, head width 64 (C = 3 heads x 64) and an odd head width
        for n, heads, d in ([(37, 2, 8)] if ctx.dry_run else [(197, 3, 64), (443, 12, 64), (101, 4, 33)]):
            g = torch.Generator().manual_seed(n)
            c = heads * d
            args = (torch.randn(1, n, c, generator=g), torch.randn(3 * c, c, generator=g) / c**0.5,
                    torch.randn(3 * c, generator=g) * 0.1, torch.randn(c, c, generator=g) / c**0.5,
                    torch.randn(c, generator=g) * 0.1)
            for dname in DTYPE_NAMES:
                if dname != "fp32" and not dev.startswith("cuda"):
                    continue
                try:
                    rounded = [a.to(_dtype(dname)) for a in args]  # the reference sees the same rounded inputs
                    ref = scra_attention_reference(*[a.float() for a in rounded], heads, tau=10.0)
                    out = ops.scra(*[a.to(dev) for a in rounded], heads, tau=10.0).float().cpu()
                    err = relative_error(out, ref)
                    row = {"impl": impl, "op": "scra", "n": n, "heads": heads, "head_dim": d, "dtype": dname,
                           "rel_error": err, "tolerance": PARITY_TOL[dname],
                           "status": "ok" if err <= PARITY_TOL[dname] else "failed"}
                except Exception as exc:  # noqa: BLE001 - recorded
                    row = {"impl": impl, "op": "scra", "n": n, "dtype": dname, "status": "failed",
                           "reason": _first_line(exc)}
                failures += row["status"] == "failed"
                ctx.add(row)
    return {"status": "ok" if failures == 0 else "failed", "failures": failures}


FIXTURE_CASES = ("seg_slide64s32_100x150", "seg_slide112s48_70x110", "seg_single_80x112",
                 "seg_photo_coffee_slide64s32_90x135")


def step_fixtures(ctx: StepContext) -> dict:
    """RADSeg on the device against the official fixtures (every kernel), and fp16/bf16 label agreement."""
    from radseg_edge.models import load_radio
    from radseg_edge.pipeline import RADSeg
    from tests.conftest import load_case
    from tests.kernels_cases import relative_error

    dev = ctx.device
    radio = load_radio(REPO / "tests" / "fixtures" / "tiny_radio.pth.tar", device=dev)
    failures = 0
    cases = FIXTURE_CASES[:1] if ctx.dry_run else FIXTURE_CASES
    for case in cases:
        meta, t = load_case(case)
        s = meta["settings"]
        image, text = t["image"].to(dev), t["text_embeds"].to(dev)
        fp32_labels = None
        for impl in ["reference", *kernel_names(dev)]:
            for dname in DTYPE_NAMES:
                ok_prec, why = _precision_ok(dname, dev)
                if not ok_prec:
                    ctx.add({"case": case, "kernels": impl, "precision": dname, "status": "skipped", "reason": why})
                    continue
                try:
                    seg = RADSeg(radio, scra_tau=s["scra_scaling"], scga_tau=s["scga_scaling"], crop=s["slide_crop"],
                                 stride=s["slide_stride"], denoise=s["prompt_denoising_thresh"],
                                 prediction_thresh=s["prediction_thresh"], kernels=impl, precision=dname)
                    with torch.inference_mode():
                        res = seg(image, text)
                    labels = res.labels_with_ignore()[:, None].cpu()
                    row = {"case": case, "kernels": seg.kernels_name, "precision": dname}
                    if dname == "fp32":
                        row["probs_max_abs_diff"] = float((res.probs.cpu() - t["seg_probs"][:, 1:]).abs().max())
                        row["scga_rel_error"] = relative_error(res.scga_features.cpu(), t["scga_features"])
                        row["labels_identical"] = bool(torch.equal(labels, t["seg_pred"]))
                        ok = row["probs_max_abs_diff"] <= 1e-4 and row["labels_identical"]
                        if impl == "reference":
                            fp32_labels = labels
                    else:
                        row["label_agreement_vs_fp32_official"] = float((labels == t["seg_pred"]).float().mean())
                        if fp32_labels is not None:
                            row["label_agreement_vs_fp32_here"] = float((labels == fp32_labels).float().mean())
                        ok = row["label_agreement_vs_fp32_official"] >= 0.95  # tiny model, few pixels: a loose bar
                    row["status"] = "ok" if ok else "failed"
                except Exception as exc:  # noqa: BLE001 - recorded
                    row = {"case": case, "kernels": impl, "precision": dname, "status": "failed",
                           "reason": _first_line(exc)}
                failures += row["status"] == "failed"
                ctx.add(row)
    return {"status": "ok" if failures == 0 else "failed", "failures": failures}


def step_scga_bench(ctx: StepContext) -> dict:
    """SCGA time and peak memory: materialized PyTorch (reference) vs the fused kernels."""
    from radseg_edge.core.scga import scga_reference

    dev = ctx.device
    ns, channels = ((64, 144, 300), 32) if ctx.dry_run else (SCGA_NS, SCGA_CHANNELS)
    repeats = 2 if ctx.dry_run else 5
    ctx.info.update(channels=channels, repeats=repeats, ns=list(ns))
    impls = ["materialized", *kernel_names(dev)]
    for n in ns:
        x32 = torch.randn(1, n, channels, generator=torch.Generator().manual_seed(n)).to(dev)
        for dname in DTYPE_NAMES:
            if dname != "fp32" and not dev.startswith("cuda"):
                continue
            x = x32.to(_dtype(dname))
            base = None
            for impl in impls:
                row = {"n": n, "c": channels, "dtype": dname, "impl": impl}
                try:
                    fn = scga_reference if impl == "materialized" else _ops(impl, dev).scga
                    with torch.inference_mode():
                        seconds, peak = time_and_peak(lambda fn=fn, x=x: fn(x, 10.0), dev, repeats)
                    row.update(time_ms=seconds * 1e3, peak_bytes=peak, status="ok")
                    if impl == "materialized":
                        base = row
                    elif base is not None:
                        row["speedup_vs_materialized"] = base["time_ms"] / row["time_ms"]
                        if peak is not None and base["peak_bytes"]:
                            row["memory_fraction_of_materialized"] = peak / base["peak_bytes"]
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory: recorded, the sweep goes on
                    row.update(status="failed", reason=_first_line(exc))
                ctx.add(row)
                if dev.startswith("cuda"):
                    torch.cuda.empty_cache()
    return {"status": "ok" if all(r["status"] == "ok" for r in ctx.rows) else "failed"}


# -- the whole pipeline -------------------------------------------------------------------------------------
def _pipeline_setup(ctx: StepContext):
    """(radio, [BenchCase], runs, warmup) for the pipeline steps (tiny checkpoint and image in a dry run)."""
    from radseg_edge.bench.suite import BenchOptions, build_radio, case_from_imgsz, case_from_setting

    if ctx.dry_run:
        opts = BenchOptions(cases=[], checkpoint=str(REPO / "tests" / "fixtures" / "tiny_radio.pth.tar"),
                            device=ctx.device)
        cases = [case_from_imgsz((70, 110), crop=64, stride=32, num_classes=5)]
        runs, warmup = 1, 0
    else:
        opts = BenchOptions(cases=[], model=PIPELINE_MODEL, device=ctx.device)
        cases = [case_from_setting(s) for s in PIPELINE_SETTINGS]
        runs, warmup = 5, 1
    radio, weights = build_radio(opts)
    ctx.info.update(model=radio.config.name, weights=weights, runs=runs, warmup=warmup)
    return radio.eval(), opts, cases, runs, warmup


def _record_rows(ctx: StepContext, mode: str, case, measured: list, refs: list) -> None:
    """Ratios of ``measured`` against ``refs`` = [baseline, eager fp32] rows, then one saved row each."""
    from radseg_edge.bench.runner import compare_to_baseline

    compare_to_baseline(measured, refs[0], refs[1])
    wl = case.workload()
    for r in measured:
        d = r.as_dict()
        ctx.add({"case": case.label, "setting": case.setting, "image_hw": list(case.image_hw), "windows": wl.windows,
                 "scga_tokens": wl.scga_tokens, "mode": mode, "name": d["name"], "precision": d["precision"],
                 "p50_ms": d["latency_ms"]["p50_ms"], "p90_ms": d["latency_ms"]["p90_ms"],
                 "peak_bytes": d["memory"].get("extra_bytes"), "memory_kind": d["memory"].get("kind"),
                 "speedup_vs_baseline": d["speedup_vs_baseline"], "label_agreement_vs_eager_fp32": d["label_agreement"],
                 "stages_p50_ms": {k: v.get("p50_ms") for k, v in d["stages_ms"].items()}, "notes": d["notes"],
                 "status": "ok"})


def _run_pipeline_step(ctx: StepContext, mode: str) -> dict:
    """One pipeline step. Per case: the naive baseline and RADSeg eager fp32 (the references of the ratios), then
    the candidates of ``mode`` ("eager", "compile", "aoti"). Eager candidates are timed interleaved with the
    references; compiled ones one at a time as soon as each is built (each row is saved at once, so a step that
    runs out of time keeps what it measured). The target case and fp16 come first."""
    from radseg_edge.bench.runner import measure_all
    from radseg_edge.bench.suite import _baseline_candidate, _pytorch_candidate, make_inputs

    radio, opts, cases, runs, warmup = _pipeline_setup(ctx)
    failures = 0
    order = ("fp16", "fp32", "bf16")
    for case in cases:
        image, text = make_inputs(radio, case, opts)
        record = functools.partial(_record_rows, ctx, mode, case)
        refs = [_baseline_candidate(radio, case, image, text, opts),
                _pytorch_candidate(radio, case, image, text, opts, "fp32")]
        refs[1].name = "eager fp32"
        wanted = []
        for dname in order:
            if (mode == "eager" and dname == "fp32") or (ctx.dry_run and mode == "compile" and dname != "fp32"):
                continue
            ok_prec, why = _precision_ok(dname, ctx.device)
            if not ok_prec:
                ctx.add({"case": case.label, "mode": mode, "precision": dname, "status": "skipped", "reason": why})
                continue
            wanted.append(dname)
        try:
            if mode == "eager":  # cheap to build: all of them timed interleaved with the references
                cands = refs + [_mode_candidate(ctx, mode, radio, case, image, text, opts, d) for d in wanted]
                measured = measure_all(cands, runs=runs, warmup=warmup)
                record(measured, measured[:2])
                continue
            ref_rows = measure_all(refs, runs=runs, warmup=warmup)
            record(ref_rows, ref_rows)
        except Exception as exc:  # noqa: BLE001 - recorded, the next case still runs
            failures += 1
            ctx.add({"case": case.label, "mode": mode, "status": "failed", "reason": _first_line(exc),
                     "trace": traceback.format_exc()[-1500:]})
            continue
        for dname in wanted:
            cand = None
            try:
                t0 = time.perf_counter()
                cand = _mode_candidate(ctx, mode, radio, case, image, text, opts, dname)
                row = measure_all([cand], runs=runs, warmup=max(1, warmup))
                row[0].notes.append(f"built and warmed up in {time.perf_counter() - t0:.0f} s; timed after the "
                                    "references (not interleaved)")
                record(row, ref_rows)
            except Exception as exc:  # noqa: BLE001 - recorded, the other precisions still run
                failures += 1
                ctx.add({"case": case.label, "mode": mode, "precision": dname, "status": "failed",
                         "reason": _first_line(exc), "trace": traceback.format_exc()[-1500:]})
            finally:
                if cand is not None and cand.cleanup is not None:
                    cand.cleanup()
                del cand
                if ctx.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return {"status": "ok" if failures == 0 else "failed", "failures": failures}


def _mode_candidate(ctx, mode, radio, case, image, text, opts, dname):
    from radseg_edge.bench.suite import _pytorch_candidate

    if mode == "eager":
        cand = _pytorch_candidate(radio, case, image, text, opts, dname)
        cand.name = f"eager {dname}"
        return cand
    if mode == "compile":
        return _compile_candidate(ctx, radio, case, image, text, opts, dname)
    return _aoti_candidate(ctx, radio, case, image, text, dname)


def _compile_candidate(ctx, radio, case, image, text, opts, dname):
    """RADSeg with its backbone (windows -> features, the bulk of the work) under torch.compile."""
    from radseg_edge.bench.runner import Candidate
    from radseg_edge.pipeline import RADSeg
    from radseg_edge.utils.profiling import StageProfiler

    prof = StageProfiler(device=ctx.device)
    seg = RADSeg(radio, crop=case.crop, stride=case.stride, kernels=opts.kernels, precision=dname, profiler=prof)
    backend = "eager" if ctx.dry_run else "inductor"  # dry run: dynamo's plumbing without a C++ compile
    seg.backbone = torch.compile(seg.backbone, backend=backend, dynamic=False)
    return Candidate(name=f"compile {dname}", backend="torch.compile", precision=dname,
                     run=lambda: seg(image, text).labels, profiler=prof, device=ctx.device,
                     notes=[f"torch.compile(backend={backend}) of RADSeg.backbone; kernels={seg.kernels_name}; "
                            "compile time is in the warm-up"])


def _aoti_candidate(ctx, radio, case, image, text, dname):
    """The fixed-resolution pipeline (frame -> labels, probs) compiled by AOTInductor for the device."""
    from radseg_edge.bench.runner import Candidate
    from radseg_edge.export.aoti import export_aoti, fixed_resolution_module
    from radseg_edge.pipeline import RADSeg

    seg = RADSeg(radio, crop=case.crop, stride=case.stride)
    h, w = case.image_hw
    module = fixed_resolution_module(seg, text.cpu(), h, w).to(ctx.device).eval()
    if dname != "fp32":
        module = _Autocast(module, ctx.device, _dtype(dname))
    frame = (image[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8)[None].contiguous()
    if ctx.dry_run:  # the module AOTInductor would compile, run eagerly (a CPU compile takes minutes)
        run_module = module
        notes = ["dry run: the fixed-resolution module eager, NOT compiled"]
    else:
        folder = ctx.build_dir / f"aoti_{case.label}_{dname}"
        t0 = time.perf_counter()
        export_aoti(module, frame.cpu(), folder, {"precision": dname}, device=ctx.device)
        run_module = torch._inductor.aoti_load_package(str(folder / "model.pt2"))
        notes = [f"AOTInductor package compiled in {time.perf_counter() - t0:.0f} s (standard-op SCGA of export.ops)"]

    def run():
        with torch.inference_mode():
            return run_module(frame)[0]

    return Candidate(name=f"aoti {dname}", backend="aoti", precision=dname, run=run, device=ctx.device, notes=notes)


class _Autocast(torch.nn.Module):
    """Runs ``inner`` under torch.autocast(dtype) (how the fp16 / bf16 AOTI packages are made)."""

    def __init__(self, inner, device: str, dtype) -> None:
        super().__init__()
        self.inner, self.device_type, self.dtype = inner, torch.device(device).type, dtype

    def forward(self, frame):
        with torch.autocast(self.device_type, dtype=self.dtype):
            labels, probs = self.inner(frame)
        return labels, probs.float()


def step_pipeline_eager(ctx: StepContext) -> dict:
    return _run_pipeline_step(ctx, "eager")


def step_pipeline_compile(ctx: StepContext) -> dict:
    return _run_pipeline_step(ctx, "compile")


def step_pipeline_aoti(ctx: StepContext) -> dict:
    return _run_pipeline_step(ctx, "aoti")


#: the kernel test files (the compile-only tests/test_native_compile.py is left out: the build step compiles).
GPU_TEST_FILES = ("tests/test_kernels_cuda.py", "tests/test_kernels_library.py", "tests/test_kernels_pipeline.py",
                  "tests/test_kernels_triton.py", "tests/test_kernels_triton_gpu.py")


def step_mapping(ctx: StepContext) -> dict:
    """3D mapping fusion cost per frame vs segmentation (benchmarks/bench_mapping.py, quick run) on the device.
    The dry run only checks that the benchmark imports: its C-RADIOv3-B segmentation takes minutes on a CPU."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    bench_mapping = importlib.import_module("bench_mapping")
    if ctx.dry_run:
        return {"status": "skipped", "reason": "dry run: bench_mapping imported, not run (C-RADIOv3-B on a CPU)"}
    doc = bench_mapping.run(ctx.device, quick=True)
    ctx.info["segmentation"] = doc["segmentation"]
    for row in doc["rows"]:
        ctx.add(row)
    return {"status": "ok"}


def step_gpu_tests(ctx: StepContext) -> dict:
    """pytest on the kernel test files (the dry run only collects them)."""
    files = [f for f in GPU_TEST_FILES if (REPO / f).exists()]
    xml = ctx.out / "steps" / "gpu_tests.junit.xml"
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    if ctx.dry_run:
        cmd.append("--collect-only")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    counts = _junit_counts(xml)
    ctx.add({"command": " ".join(cmd[1:]), "returncode": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
             **counts, "output_tail": (done.stdout + done.stderr)[-3000:]})
    if done.returncode != 0:
        return {"status": "failed", "reason": f"pytest exited with {done.returncode}", **counts}
    return {"status": "ok", **counts}


def _junit_counts(xml: Path) -> dict:
    if not xml.exists():
        return {}
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def step_aoti_cpp(ctx: StepContext) -> dict:
    """The C++ runtime with an AOTInductor CUDA package of the tiny model vs the Python pipeline."""
    from tests import cpp_runtime_support as support

    if ctx.dry_run:
        return {"status": "skipped", "reason": "dry run: building the C++ runtime and an AOTInductor package takes "
                                               "minutes on a CPU (tests/test_cpp_runtime.py covers the CPU package)"}
    missing = support.toolchain_missing()
    if missing:
        return {"status": "skipped", "reason": missing}
    from radseg_edge.export.aoti import export_aoti_package

    t0 = time.perf_counter()
    try:
        binaries = support.build_runtime(ctx.build_dir / "cpp", jobs=os.cpu_count() or 4)
    except subprocess.CalledProcessError as exc:  # CMake's own words are what a first run needs to see
        ctx.add({"what": "cmake build of cpp/ (libtorch from the torch wheel)", "ok": False,
                 "seconds": round(time.perf_counter() - t0, 1), "command": " ".join(map(str, exc.cmd)),
                 "log_tail": ((exc.stdout or "") + (exc.stderr or ""))[-2500:]})
        return {"status": "failed", "reason": f"the C++ runtime did not build ({exc.cmd[1]} exited {exc.returncode})"}
    ctx.add({"what": "cmake build of cpp/", "seconds": round(time.perf_counter() - t0, 1), "ok": True})
    seg, vocab = support.tiny_radseg()
    module = support.frame_module(seg, vocab)
    export = ctx.build_dir / "aoti_tiny_cuda"
    t0 = time.perf_counter()
    # force: the package's own gate figures go to its manifest; this step's verdict is the C++ comparison below
    export_aoti_package(seg, vocab, support.HEIGHT, support.WIDTH, export, device=ctx.device, module=module,
                        force=True)
    ctx.add({"what": "AOTInductor CUDA package (tiny model)", "seconds": round(time.perf_counter() - t0, 1), "ok": True})
    rgb = support.photo_frame()
    ppm = support.write_ppm(ctx.build_dir / "photo.ppm", rgb)
    labels, probs, stdout = support.run_segment_image(binaries["radseg_segment_image"], export, ppm, ctx.build_dir)
    ref_labels, ref_probs = support.python_reference(module.cpu(), rgb)
    parity = support.compare(labels, probs, ref_labels, ref_probs)
    ok = parity["label_mismatches"] <= max(1, parity["pixels"] // 1000) and (parity["max_prob_diff"] or 0) <= 1e-3
    ctx.add({"what": "C++ runtime (CUDA package) vs Python (CPU eager)", **parity, "stdout_tail": stdout[-800:],
             "status": "ok" if ok else "failed"})
    return {"status": "ok" if ok else "failed"}


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[[StepContext], dict] | None
    budget_s: float
    title: str
    module: str | None = None  # optional steps: "module:function"


#: Time boxes (s). The first six (build ... gpu_tests, 415 s) fit the default 450 s budget; the compile-heavy steps
#: after them get what is left (a step that runs out of time keeps the rows it saved, fp16 of the target case
#: first) and the end of the run prints the ``--only`` command that reruns what did not finish.
STEPS = (
    Step("build", step_build, 120, "CMake build of the CUDA library and the PyTorch extension"),
    Step("kernel_parity", step_kernel_parity, 55, "Triton / CUDA kernels vs references (odd N, C; fp32/fp16/bf16)"),
    Step("fixtures", step_fixtures, 40, "RADSeg on the device vs the official fixtures; fp16/bf16 labels"),
    Step("scga_bench", step_scga_bench, 60, "SCGA time and peak memory: materialized vs fused"),
    Step("pipeline_eager", step_pipeline_eager, 60, "Pipeline eager fp32/fp16/bf16 vs the naive baseline"),
    Step("gpu_tests", step_gpu_tests, 80, "pytest on the kernel test files"),
    Step("pipeline_compile", step_pipeline_compile, 90, "Pipeline with torch.compile"),
    Step("aoti_cpp", step_aoti_cpp, 90, "C++ runtime with an AOTInductor CUDA package"),
    Step("pipeline_aoti", step_pipeline_aoti, 120, "Pipeline as AOTInductor packages"),
    Step("mapping_fusion", step_mapping, 60, "3D mapping: fusion cost per frame vs segmentation (quick)"),
)

#: the hook for later lines: (name, module, function); a missing module makes the step "skipped".
OPTIONAL_STEPS: tuple[tuple[str, str, str], ...] = ()


def all_steps() -> list[Step]:
    extra = [Step(name, None, 60, f"optional: {module}.{fn}", module=f"{module}:{fn}") for name, module, fn in
             OPTIONAL_STEPS]
    return [*STEPS, *extra]


def _module_available(spec: str) -> bool:
    module = spec.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------- runner
def run_step_here(name: str, out: Path, dry_run: bool) -> int:
    """Child process: run one step and write steps/<name>.json (status ok / failed / skipped / error)."""
    step = next(s for s in all_steps() if s.name == name)
    device = "cuda" if (torch.cuda.is_available() and not dry_run) else "cpu"
    ctx = StepContext(name=name, out=out, dry_run=dry_run, device=device, build_dir=out / "build")
    ctx.build_dir.mkdir(parents=True, exist_ok=True)
    ctx.save("running")
    try:
        if step.fn is None:
            module, fn = step.module.split(":")
            result = getattr(importlib.import_module(module), fn)(ctx)
        else:
            result = step.fn(ctx)
    except Exception as exc:  # noqa: BLE001 - the parent records it
        ctx.save("error", reason=_first_line(exc), trace=traceback.format_exc()[-3000:])
        return 1
    result = dict(result)
    status = result.pop("status", "ok")
    ctx.save(status, **result)
    return 0


def _child_env(out: Path, dry_run: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.setdefault("TORCH_EXTENSIONS_DIR", str(out / "build" / "torch_extensions"))
    env.setdefault("TRITON_CACHE_DIR", str(out / "build" / "triton_cache"))
    # nothing may be downloaded on the device machine: a hub lookup fails at once instead of hanging on the network
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("TRITON_INTERPRET", None)  # the GPU steps compile real kernels (tests that want the interpreter set it)
    if shutil.which("nvcc") is None and Path("/usr/local/cuda/bin/nvcc").exists():  # libtorch's CMake and
        env["PATH"] = os.pathsep.join(["/usr/local/cuda/bin", env.get("PATH", "")])  # cpp_extension look here
        env.setdefault("CUDA_HOME", "/usr/local/cuda")
    if not dry_run and torch.cuda.is_available():  # one architecture: the extension and libtorch's CMake skip probing
        env.setdefault("TORCH_CUDA_ARCH_LIST", "{}.{}".format(*torch.cuda.get_device_capability()))
    build = out / "steps" / "build.json"
    if build.exists():
        info = json.loads(build.read_text()).get("info", {})
        if info.get("kernels_library") and Path(info["kernels_library"]).is_file():  # gone on a fresh machine
            env["RADSEG_ACCEPTANCE_KERNELS_LIB"] = info["kernels_library"]
        if str(info.get("torch_extension", "")).endswith(".so"):  # a CMake-built extension: importable from there
            env["PYTHONPATH"] = os.pathsep.join([str(Path(info["torch_extension"]).parent), env["PYTHONPATH"]])
    return env


def run_all(out: Path, dry_run: bool, budget_s: float, only: list[str] | None = None,
            log: Callable[[str], None] = print, after_step: Callable[[dict], None] | None = None) -> dict:
    """Parent: every step in its own process, within its time box and the overall budget; returns the document
    (``after_step`` gets the document so far after each step)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "steps").mkdir(exist_ok=True)
    start = time.perf_counter()
    machine = _machine()
    log(f"GPU acceptance: {machine.get('gpu', 'no GPU')}, torch {machine.get('torch')} (CUDA {machine.get('cuda')}), "
        f"triton {machine.get('triton', '-')}; budget {budget_s:.0f} s; output {out}")
    results = []
    stopped = False
    # a rerun of a few steps (--only) shares the whole budget among them in proportion to their boxes
    chosen = [s.budget_s for s in all_steps() if only and s.name in only]
    stretch = max(1.0, budget_s / sum(chosen)) if chosen else 1.0
    for step in all_steps():
        if only and step.name not in only:
            continue
        if stopped:
            results.append({"name": step.name, "title": step.title, "budget_s": step.budget_s, "status": "skipped",
                            "reason": "the run was stopped (SIGTERM or Ctrl-C) before this step"})
            continue
        elapsed = time.perf_counter() - start
        left = budget_s - elapsed
        record = {"name": step.name, "title": step.title, "budget_s": step.budget_s}
        step_file = out / "steps" / f"{step.name}.json"
        step_file.unlink(missing_ok=True)
        if step.module and not _module_available(step.module):
            record.update(status="skipped", reason=f"module {step.module.split(':')[0]} is not in this checkout")
        elif left < MIN_STEP_S:
            record.update(status="skipped", reason=f"overall budget: {left:.0f} s left of {budget_s:.0f} s")
        else:
            # a dry run's boxes are wide: its timings only show the plumbing, on whatever load the CPU has
            timeout = min(max(step.budget_s, 240.0) if dry_run else step.budget_s * stretch, left)
            log(f"[{elapsed:6.1f}s] {step.name}: {step.title} (up to {timeout:.0f} s)")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--step", step.name, "--out", str(out)]
            if dry_run:
                cmd.append("--dry-run")
            t0 = time.perf_counter()
            try:
                code, output, timed_out = _run_child(cmd, _child_env(out, dry_run), timeout,
                                                     out / "steps" / f"{step.name}.log")
            except (KeyboardInterrupt, SystemExit):  # SIGTERM (an outer `timeout`) or Ctrl-C: report what ran
                stopped = True
                code, output, timed_out = None, "", True
                timeout = time.perf_counter() - t0
            record["seconds"] = round(time.perf_counter() - t0, 1)
            child = json.loads(step_file.read_text()) if step_file.exists() else {}
            record.update({k: v for k, v in child.items() if k not in ("step",)})
            if timed_out:
                record["status"] = "timeout"
                record["reason"] = (f"{'the run was stopped' if stopped else 'out of time'} after {timeout:.0f} s "
                                    f"({len(child.get('rows', []))} rows kept)")
            elif code != 0 and child.get("status") in (None, "running"):
                record["status"] = "error"
                record["reason"] = f"the step's process exited with {code}"
            record.setdefault("status", "error")
            record["output_tail"] = output[-2000:]
        results.append(record)
        log(f"           {step.name}: {record['status']}" + (f" - {record['reason']}" if record.get("reason") else ""))
        if after_step is not None:  # the report so far is on disk: an outer `timeout` loses at most one step
            after_step(_document(out, dry_run, budget_s, only, start, results, machine))
    return _document(out, dry_run, budget_s, only, start, results, machine)


def _document(out: Path, dry_run: bool, budget_s: float, only: list[str] | None, start: float, results: list,
              machine: dict) -> dict:
    doc = {
        "schema": SCHEMA,
        "dry_run": dry_run,
        "command": " ".join(["python3", "benchmarks/gpu_acceptance.py", *(["--dry-run"] if dry_run else []),
                             "--out", str(out), "--budget", f"{budget_s:g}", *(["--only", *only] if only else [])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": round(time.perf_counter() - start, 1),
        "budget_s": budget_s,
        "machine": machine,
        "steps": list(results),
    }
    _evaluate(doc)
    return doc


def _evaluate(doc: dict) -> None:
    """Targets and Orin estimate into ``doc``; a bug there must not stop the run or lose the rows."""
    try:
        doc["targets"] = evaluate_targets(doc)
    except Exception as exc:  # noqa: BLE001 - recorded in the report
        doc["targets"] = [{"target": "issue 13 item 5", "verdict": "NOT MEASURED",
                           "details": [f"evaluation failed: {_first_line(exc)}"]}]
    try:
        doc["orin_estimate"] = orin_estimate(doc)
    except Exception as exc:  # noqa: BLE001 - recorded in the report
        doc["orin_estimate"] = {"status": "not computed", "reason": f"estimate failed: {_first_line(exc)}"}


def _run_child(cmd: list[str], env: dict, timeout: float, log_path: Path) -> tuple[int | None, str, bool]:
    """(exit code or None, output tail, timed out): ``cmd`` in its own process group, output to ``log_path``.
    On time-out the whole group is killed (pytest, ninja, nvcc, inductor's compile workers), so no grandchild
    keeps running into the next step's time."""
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
        except BaseException:  # SIGTERM / Ctrl-C of the parent: take the step down with it
            _kill_group(proc)
            raise
        if timed_out:
            _kill_group(proc)
        elif proc.returncode is not None:
            _kill_group(proc, only_leftovers=True)
    return code, log_path.read_text(errors="replace")[-4000:], timed_out


def _kill_group(proc: subprocess.Popen, only_leftovers: bool = False) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not only_leftovers:
        proc.wait()


def _machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        info.update(torch=torch.__version__, cuda=torch.version.cuda)
        if torch.cuda.is_available():
            info.update(gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability())))
        import triton

        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


# --------------------------------------------------------------------------------------------------- targets
def _step(doc: dict, name: str) -> dict:
    return next((s for s in doc["steps"] if s["name"] == name), {})


def _verdict(ok: bool | None) -> str:
    return "NOT MEASURED" if ok is None else ("MET" if ok else "NOT MET")


def evaluate_targets(doc: dict) -> list[dict]:
    """Issue 13 item 5 from the measured rows: MET / NOT MET, or NOT MEASURED where a figure is missing."""
    out = []
    rows = [r for r in _step(doc, "scga_bench").get("rows", []) if r.get("status") == "ok"]
    base = next((r for r in rows if r["impl"] == "materialized" and r["dtype"] == "fp16" and r["n"] == TARGET_SCGA_N),
                None)
    fused = [r for r in rows if r["impl"] != "materialized" and r["dtype"] == "fp16" and r["n"] == TARGET_SCGA_N]
    details, met = [], None
    for r in fused:
        speed, mem = r.get("speedup_vs_materialized"), r.get("memory_fraction_of_materialized")
        ok = (speed is not None and mem is not None and speed >= TARGET_SCGA_SPEEDUP
              and mem <= TARGET_SCGA_MEMORY_FRACTION)
        met = ok if met is None else (met or ok)
        details.append(f"{r['impl']}: {speed:.2f}x faster, {mem:.4f} of the peak memory" if speed and mem is not None
                       else f"{r['impl']}: incomplete")
    if base is None:
        met = None
    out.append({"target": f"fused SCGA fp16 >= {TARGET_SCGA_SPEEDUP:g}x materialized fp16 at N={TARGET_SCGA_N} "
                          f"with <= 1/{round(1 / TARGET_SCGA_MEMORY_FRACTION)} of its peak memory",
                "verdict": _verdict(met), "details": details or ["no measurement at this N"]})
    prow = [r for s in ("pipeline_eager", "pipeline_compile", "pipeline_aoti") for r in _step(doc, s).get("rows", [])
            if r.get("status") == "ok" and r.get("setting") == TARGET_PIPELINE_SETTING and r.get("precision") == "fp16"
            and r.get("name", "").split()[0] in ("eager", "compile", "aoti")]
    details, met = [], None
    for r in prow:
        speed, agree = r.get("speedup_vs_baseline"), r.get("label_agreement_vs_eager_fp32")
        ok = speed is not None and agree is not None and speed >= TARGET_PIPELINE_SPEEDUP and agree >= TARGET_LABEL_AGREEMENT
        met = ok if met is None else (met or ok)
        details.append(f"{r['name']}: {speed:.2f}x the baseline, labels {agree:.4%} equal to fp32"
                       if speed is not None and agree is not None else f"{r['name']}: incomplete")
    out.append({"target": f"RADSeg-B {TARGET_PIPELINE_SETTING} fp16 >= {TARGET_PIPELINE_SPEEDUP:g}x the eager fp32 "
                          f"baseline, labels >= {TARGET_LABEL_AGREEMENT:.0%} equal to fp32",
                "verdict": _verdict(met), "details": details or ["no fp16 measurement of this setting"]})
    return out


def device_spec(name: str | None) -> tuple[str, dict] | None:
    """The DEVICE_SPECS entry whose key is in the GPU's name (longest key first), else None."""
    if not name:
        return None
    for key in sorted(DEVICE_SPECS, key=len, reverse=True):
        if key.lower() in name.lower() and key != ORIN:
            return key, DEVICE_SPECS[key]
    return None


def scale_to_orin(ms: float, precision: str, measured_on: dict) -> dict:
    """An Orin time from a time measured on ``measured_on``: bandwidth-bound (x bandwidth ratio) and compute-bound
    (x tensor ratio for fp16/bf16, x CUDA-core ratio for fp32) bounds; the estimate is the larger (the slower
    resource decides). Ignores launch overheads and the slower Orin CPU: optimistic for small, latency-bound work."""
    orin = DEVICE_SPECS[ORIN]
    bw = measured_on["bandwidth_gbs"] / orin["bandwidth_gbs"]
    key = "fp32_tflops" if precision == "fp32" else "fp16_tflops"
    compute = measured_on[key] / orin[key]
    return {"bandwidth_bound_ms": ms * bw, "compute_bound_ms": ms * compute, "estimate_ms": ms * max(bw, compute),
            "bandwidth_ratio": bw, "compute_ratio": compute}


def orin_estimate(doc: dict) -> dict:
    gpu = doc.get("machine", {}).get("gpu")
    spec = device_spec(gpu)
    if doc.get("dry_run"):
        return {"status": "not computed", "reason": "dry run: no GPU figures"}
    if spec is None:
        return {"status": "not computed", "reason": f"no datasheet figures for {gpu or 'a run without a GPU'} in "
                                                    "DEVICE_SPECS"}
    key, figures = spec
    rows = []
    for r in _step(doc, "scga_bench").get("rows", []):
        if r.get("status") == "ok" and r["n"] == TARGET_SCGA_N:
            rows.append({"what": f"SCGA N={r['n']} {r['impl']} {r['dtype']}", "measured_ms": r["time_ms"],
                         **scale_to_orin(r["time_ms"], r["dtype"], figures)})
    for s in ("pipeline_eager", "pipeline_compile", "pipeline_aoti"):
        for r in _step(doc, s).get("rows", []):
            if r.get("status") == "ok" and r.get("p50_ms") and not (s != "pipeline_eager" and r["name"] in
                                                                     ("baseline fp32", "eager fp32")):
                rows.append({"what": f"{r['case']} {r['name']}", "measured_ms": r["p50_ms"],
                             **scale_to_orin(r["p50_ms"], r["precision"], figures)})
    return {"status": "estimate", "measured_on": key, "figures": {key: figures, ORIN: DEVICE_SPECS[ORIN]},
            "method": "time x max(bandwidth ratio, compute ratio); ESTIMATE from datasheet ratios, not a measurement",
            "rows": rows}


# --------------------------------------------------------------------------------------------------- report
def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _mib(v) -> str:
    return "-" if v is None else f"{v / 2**20:.1f}"


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def to_markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# GPU acceptance ({'DRY RUN on the CPU, tiny sizes: no GPU figures' if doc['dry_run'] else m.get('gpu', 'no GPU')})",
             "", f"`{doc['command']}` - {doc['date']}, {doc['wall_s']:.0f} s of a {doc['budget_s']:.0f} s budget; "
             f"torch {m.get('torch')}, CUDA {m.get('cuda')}, triton {m.get('triton', '-')}.", "", "## Targets (issue 13)", ""]
    for t in doc["targets"]:
        lines.append(f"- **{t['verdict']}** - {t['target']}: {'; '.join(t['details'])}")
    lines += ["", "## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in doc["steps"]:
        note = s.get("reason", "") or s["title"]
        if "tests" in s:  # pytest's junit counts
            note += (f" ({s['tests']} tests, {s.get('failures', 0)} failed, {s.get('errors', 0)} errors, "
                     f"{s.get('skipped', 0)} skipped)")
        if s.get("from_earlier_run"):
            note += f" (from the run of {s['from_earlier_run']})"
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', '-')} | {note} |")
    scga = [r for r in _step(doc, "scga_bench").get("rows", [])]
    if scga:
        lines += ["", "## SCGA (time = median of synchronised calls; peak = memory above the input)", "",
                  "| N | dtype | impl | ms | peak MiB | speed-up vs materialized | peak fraction |", "|---|---|---|---|---|---|---|"]
        for r in scga:
            if r.get("status") != "ok":
                lines.append(f"| {r['n']} | {r['dtype']} | {r['impl']} | failed: {r.get('reason', '')} | | | |")
                continue
            frac = r.get("memory_fraction_of_materialized")
            lines.append(f"| {r['n']} | {r['dtype']} | {r['impl']} | {_ms(r['time_ms'])} | {_mib(r['peak_bytes'])} | "
                         f"{_x(r.get('speedup_vs_materialized'))} | {'-' if frac is None else f'{frac:.4f}'} |")
    for s in ("pipeline_eager", "pipeline_compile", "pipeline_aoti"):
        rows = _step(doc, s).get("rows", [])
        if not rows:
            continue
        lines += ["", f"## {s} ({_step(doc, s).get('info', {}).get('weights', '')})", "",
                  "| case | candidate | p50 ms | p90 ms | peak MiB | speed-up vs baseline | labels = eager fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.get("status") != "ok":
                lines.append(f"| {r.get('case')} | {r.get('mode')} {r.get('precision', '')} | {r['status']}: "
                             f"{r.get('reason', '')} | | | | |")
                continue
            agree = r.get("label_agreement_vs_eager_fp32")
            lines.append(f"| {r.get('case')} | {r.get('name')} | {_ms(r.get('p50_ms'))} | {_ms(r.get('p90_ms'))} | "
                         f"{_mib(r.get('peak_bytes'))} | "
                         f"{_x(r.get('speedup_vs_baseline'))} | {'-' if agree is None else f'{agree:.4%}'} |")
    for s, cols in (("kernel_parity", ("impl", "op", "n", "c", "dtype", "rel_error", "status")),
                    ("fixtures", ("case", "kernels", "precision", "probs_max_abs_diff", "labels_identical",
                                  "label_agreement_vs_fp32_official", "status"))):
        rows = _step(doc, s).get("rows", [])
        if rows:
            lines += ["", f"## {s}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in rows:
                lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    mapping = _step(doc, "mapping_fusion")
    if mapping.get("rows"):
        seg = mapping.get("info", {}).get("segmentation", {})
        lines += ["", f"## mapping_fusion (segmentation {_ms(seg.get('ms'))} ms per {seg.get('size')} frame)", "",
                  "| fused values | fuse ms/frame | fuse / segmentation | MiB per 1M voxels |", "|---|---|---|---|"]
        for r in mapping["rows"]:
            lines.append(f"| {r['row']} | {_ms(r['fuse_ms'])} | {r['ratio_to_segmentation']:.3f} | "
                         f"{r['mib_per_million_voxels']:.0f} |")
    for s in ("build", "aoti_cpp"):
        rows = _step(doc, s).get("rows", [])
        if rows:
            lines += ["", f"## {s}", ""]
            for r in rows:
                extra = {k: v for k, v in r.items() if k in ("libraries", "path", "label_mismatches", "pixels",
                                                              "max_prob_diff", "status")}
                lines.append(f"- {r.get('what')}: {'ok' if r.get('ok', r.get('status') == 'ok') else 'FAILED'}"
                             + (f" in {r['seconds']} s" if "seconds" in r else "")
                             + (f" {json.dumps(extra, default=str)}" if extra else ""))
    est = doc["orin_estimate"]
    lines += ["", "## AGX Orin: ESTIMATE (not measured)", ""]
    if est.get("status") != "estimate":
        lines.append(f"Not computed: {est.get('reason')}.")
    else:
        f_m, f_o = est["figures"][est["measured_on"]], est["figures"][ORIN]
        lines += [f"Scaled from the {est['measured_on']} figures by datasheet ratios ({f_m['source']}; {f_o['source']}): "
                  f"bandwidth {f_m['bandwidth_gbs']:g} / {f_o['bandwidth_gbs']:g} GB/s, fp16 tensor "
                  f"{f_m['fp16_tflops']:g} / {f_o['fp16_tflops']:g} TFLOPS, fp32 {f_m['fp32_tflops']:g} / "
                  f"{f_o['fp32_tflops']:g} TFLOPS. Estimate = measured x the larger ratio; launch overheads and the "
                  "Orin CPU are not modelled.", "",
                  "| what | measured ms | bandwidth-bound ms | compute-bound ms | estimate ms |", "|---|---|---|---|---|"]
        for r in est["rows"]:
            lines.append(f"| {r['what']} | {_ms(r['measured_ms'])} | {_ms(r['bandwidth_bound_ms'])} | "
                         f"{_ms(r['compute_bound_ms'])} | {_ms(r['estimate_ms'])} |")
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2e}" if abs(v) < 1e-2 and v != 0 else f"{v:.4g}"
    return str(v)


def rerun_steps(doc: dict) -> list[str]:
    """The steps that ran out of time, crashed, or were skipped for the budget or a stop (not those skipped by
    design, e.g. a missing tool): the ``--only`` list of a rerun."""
    return [s["name"] for s in doc["steps"] if s["status"] in ("timeout", "error")
            or (s["status"] == "skipped" and any(w in s.get("reason", "") for w in ("overall budget", "stopped")))]


def merge_earlier(doc: dict, earlier: Path | dict) -> None:
    """With ``--only``: keep the earlier run's records of the steps not rerun (marked with their date), then
    re-evaluate the targets and the estimate over all of them. ``earlier``: its JSON file or document."""
    if isinstance(earlier, Path):
        if not earlier.exists():
            return
        earlier = json.loads(earlier.read_text())
    if earlier.get("dry_run") != doc["dry_run"]:
        return
    rerun = {s["name"] for s in doc["steps"]}
    kept = {s["name"]: {**s, "from_earlier_run": earlier.get("date")} for s in earlier.get("steps", [])
            if s["name"] not in rerun}
    mine = {s["name"]: s for s in doc["steps"]}
    doc["steps"] = [kept.get(s.name) or mine.get(s.name) for s in all_steps() if s.name in kept or s.name in mine]
    _evaluate(doc)


def write_outputs(doc: dict, out: Path) -> tuple[Path, Path]:
    js, md = out / "gpu_acceptance.json", out / "gpu_acceptance.md"
    js.write_text(json.dumps(doc, indent=1, default=str))
    try:
        text = to_markdown(doc)
    except Exception as exc:  # noqa: BLE001 - the JSON has the rows; --report-only redoes this after a fix
        text = (f"# GPU acceptance\n\nThe Markdown report failed ({_first_line(exc)}); the figures are in "
                f"{js.name}. Rebuild it with `--report-only`.\n")
    md.write_text(text)
    return js, md


RESULTS_BEGIN, RESULTS_END = "<!-- gpu_acceptance:begin -->", "<!-- gpu_acceptance:end -->"


def embed_in_results(markdown: str, results_md: Path) -> Path:
    """Put ``markdown`` (the report, headings one level down) between the gpu_acceptance markers of
    ``results_md`` (benchmarks/RESULTS.md), appending the section when the markers are absent."""
    body = "\n".join(("#" + line) if line.startswith("#") else line for line in markdown.strip().splitlines())
    section = f"{RESULTS_BEGIN}\n{body}\n{RESULTS_END}"
    text = results_md.read_text(encoding="utf-8") if results_md.exists() else ""
    if RESULTS_BEGIN in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_BEGIN, 1)
        text = head + section + rest.split(RESULTS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results_md.write_text(text, encoding="utf-8")
    return results_md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="steps: " + ", ".join(s.name for s in all_steps()))
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (JSON, Markdown, build files)")
    parser.add_argument("--dry-run", action="store_true", help="run the plumbing on the CPU with tiny sizes")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                        help=f"overall time budget in seconds (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    parser.add_argument("--results-md", metavar="FILE",
                        help="also put the report into this Markdown file between gpu_acceptance markers "
                             "(e.g. benchmarks/RESULTS.md; refused for a dry run)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild gpu_acceptance.md (targets, estimate) from the JSON in --out, "
                             "e.g. after copying a device run back; with --results-md also embed it")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    parser.add_argument("--warm-triton", action="store_true", help=argparse.SUPPRESS)  # internal: see warm_triton
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if args.warm_triton:
        warm_triton()
        return 0
    if args.results_md and args.dry_run:
        parser.error("--results-md takes real device figures only; drop it for --dry-run")
    if args.step:
        return run_step_here(args.step, out, args.dry_run)
    if args.report_only:
        source = out / "gpu_acceptance.json"
        if not source.is_file():
            parser.error(f"--report-only needs {source} (the JSON of an earlier run)")
        doc = json.loads(source.read_text())
        if args.results_md and doc.get("dry_run"):
            parser.error(f"{source} is a dry run; --results-md takes real device figures only")
        _evaluate(doc)
        js, md = write_outputs(doc, out)
        if args.results_md:
            print(f"report embedded in {embed_in_results(md.read_text(), Path(args.results_md))}")
        print(f"rewrote {md} from {js}")
        return 0
    names = {s.name for s in all_steps()}
    unknown = sorted(set(args.only or []) - names)
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(sorted(names))}")
    import signal

    def _stop(signum, frame):  # an outer `timeout` sends SIGTERM: stop the step, still write the report
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    earlier = out / "gpu_acceptance.json"
    earlier_doc = json.loads(earlier.read_text()) if args.only and earlier.exists() else None

    def save(doc: dict) -> None:
        if earlier_doc is not None:
            merge_earlier(doc, earlier_doc)
        write_outputs(doc, out)

    doc = run_all(out, args.dry_run, args.budget, args.only, after_step=save)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if earlier_doc is not None:
        merge_earlier(doc, earlier_doc)
    js, md = write_outputs(doc, out)
    if args.results_md and not args.dry_run:
        print(f"report embedded in {embed_in_results(md.read_text(), Path(args.results_md))}")
    print()
    print("steps:")
    for st in doc["steps"]:
        extra = f" ({st['reason']})" if st.get("reason") else ""
        print(f"  {st['name']:<17} {st['status']:<8} {st.get('seconds', '-'):>6} s{extra}"[:200])
    rerun = rerun_steps(doc)
    if rerun:
        print(f"RERUN what did not finish: python3 benchmarks/gpu_acceptance.py --out {args.out}"
              f"{' --dry-run' if args.dry_run else ''} --only {' '.join(rerun)}")
    for t in doc["targets"]:
        print(f"TARGET {t['verdict']}: {t['target']} ({'; '.join(t['details'])})")
    est = doc["orin_estimate"]
    if est.get("status") == "estimate":
        print(f"AGX Orin ESTIMATE (from {est['measured_on']} figures, not measured): see {md}")
    else:
        print(f"AGX Orin estimate not computed: {est.get('reason')}")
    print(f"saved {js} and {md} ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
