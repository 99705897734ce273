"""``radseg-edge doctor``: what this machine can run, and what to install for the rest.

Each check reports a status (ok / missing / warn / n/a), what was found, and for anything missing
what it disables and how to install it. ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

#: L4T release -> JetPack release (NVIDIA's release notes). Tools disagree on names, so L4T is the key.
L4T_TO_JETPACK = {
    "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.0": "6.1", "36.3.0": "6.0", "36.2.0": "6.0 DP",
    "35.6.1": "5.1.5", "35.6.0": "5.1.4", "35.5.0": "5.1.3", "35.4.1": "5.1.2", "35.3.1": "5.1.1",
    "35.2.1": "5.1", "35.1.0": "5.0.2",
}


@dataclass
class Check:
    """One line of the report. ``disables``/``install`` are set when something is missing or degraded."""

    name: str
    status: str  # "ok", "missing", "warn" or "n/a"
    found: str
    disables: str = ""
    install: str = ""


def parse_nv_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, ...' -> '36.4.3' (None if unrecognised)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    parts = [m.group(1)] + m.group(2).split(".")
    parts += ["0"] * (3 - len(parts))
    return ".".join(parts[:3])


def jetpack_for_l4t(l4t: str) -> str | None:
    """JetPack release for an L4T version ('36.4.3' -> '6.2'); an unlisted one -> the nearest older listed
    release of the same L4T major.minor with '+' ('36.4.9' -> '6.2.1+'); None if nothing is close."""
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    same_line = [k for k in L4T_TO_JETPACK if k.split(".")[:2] == l4t.split(".")[:2] and key(k) <= key(l4t)]
    return f"{L4T_TO_JETPACK[max(same_line, key=key)]}+" if same_line else None


def _import(name: str):
    try:
        mod = importlib.import_module(name)
    except Exception:  # ImportError, or a broken install raising anything at import
        return None
    # an empty namespace (e.g. the tensorrt-stubs type stubs) is not the package
    return None if getattr(mod, "__file__", None) is None and getattr(mod.__spec__, "origin", None) is None else mod


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 10)
    return Check("python", "ok" if ok else "warn", f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "radseg-edge needs Python >= 3.10", "" if ok else "use Python 3.10+ (JetPack 6: 3.10)")


def check_torch(jetson: bool) -> list[Check]:
    torch = _import("torch")
    if torch is None:
        return [Check("torch", "missing", "not importable", "everything (torch is required)",
                      "Jetson: NVIDIA's JetPack torch wheel; elsewhere: pip install torch")]
    cuda_build = torch.version.cuda or "none (CPU build)"
    checks = [Check("torch", "ok", f"{torch.__version__}, CUDA build {cuda_build}")]
    if not torch.cuda.is_available():
        hint = ("install NVIDIA's torch wheel for your JetPack (pip's aarch64 torch is CPU-only)" if jetson
                else "pip install torch --index-url https://download.pytorch.org/whl/cu126 (needs an NVIDIA driver)")
        checks.append(Check("cuda", "missing", "torch.cuda.is_available() is False",
                            "GPU inference: torch CUDA, TensorRT and Triton kernels (CPU reference path only)", hint))
        return checks
    n = torch.cuda.device_count()
    checks.append(Check("cuda", "ok", f"{n} device(s), runtime {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"))
    for i in range(n):
        p = torch.cuda.get_device_properties(i)
        checks.append(Check(f"gpu{i}", "ok", f"{p.name}, SM {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
                                            f"{p.total_memory / 2**30:.1f} GiB"))
    return checks


def _module_check(name: str, module: str, disables: str, install: str) -> tuple[Check, object | None]:
    """'ok' with the module's version, or 'missing' with what it disables and how to install it."""
    mod = _import(module)
    if mod is None:
        return Check(name, "missing", "not importable", disables, install), None
    return Check(name, "ok", str(getattr(mod, "__version__", "?"))), mod


def check_tensorrt(jetson: bool) -> list[Check]:
    trt_check, trt = _module_check(
        "tensorrt", "tensorrt", "--backend tensorrt and engine building",
        "JetPack ships it: sudo apt install python3-libnvinfer (use the system Python)" if jetson
        else "pip install tensorrt (or pip install 'radseg-edge[trt]')")
    if trt is not None:
        major_minor = tuple(int(x) for x in re.findall(r"\d+", trt_check.found)[:2]) or (0, 0)
        note = "Python plugins (QDP) available" if major_minor >= (10, 7) else "no Python plugins (QDP needs >= 10.7)"
        if major_minor >= (11, 0):
            note = "strongly typed only: FP16 via AutoCast/converted ONNX, INT8 via Q/DQ ONNX"
        trt_check.found += f" ({note})"
    tt_check, _ = _module_check(
        "torch-tensorrt", "torch_tensorrt", "--backend torch-tensorrt",
        "Jetson: NVIDIA's torch-tensorrt wheel for your JetPack" if jetson
        else "pip install torch-tensorrt (the build matching your torch)")
    return [trt_check, tt_check]


def check_onnxruntime(cuda: bool, jetson: bool) -> Check:
    ort = _import("onnxruntime")
    if ort is None:
        return Check("onnxruntime", "missing", "not importable", "--backend onnxruntime",
                     "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA); Jetson: a wheel from the Jetson Zoo")
    providers = ort.get_available_providers()
    found = f"{ort.__version__}, providers: {', '.join(providers)}"
    if cuda and not any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")):
        return Check("onnxruntime", "warn", found, "GPU execution in the onnxruntime backend (CPU only)",
                     "Jetson: onnxruntime-gpu from the Jetson Zoo (PyPI has no aarch64 GPU wheel)" if jetson
                     else "pip uninstall onnxruntime && pip install onnxruntime-gpu")
    return Check("onnxruntime", "ok", found)


def check_triton(cuda: bool) -> Check:
    triton = _import("triton")
    if triton is None:
        return Check("triton", "missing", "not importable", "Triton fused SCRA/SCGA kernels (reference ops used)",
                     "pip install 'radseg-edge[kernels]' (Linux x86_64 desktop GPUs)")
    if not cuda:
        return Check("triton", "warn", f"{triton.__version__} (no CUDA GPU: kernels unused)",
                     "Triton kernels (they need a CUDA GPU)", "")
    return Check("triton", "ok", triton.__version__)


def check_opencv() -> list[Check]:
    cv2 = _import("cv2")
    if cv2 is None:
        return [Check("opencv", "missing", "not importable", "all video input/output",
                      "pip install opencv-python-headless")]
    from radseg_edge.runtime.sources import opencv_build_info

    b = opencv_build_info()
    found = f"{cv2.__version__}: GStreamer {b.get('GStreamer', '?')}, FFmpeg {b.get('FFMPEG', '?')}, " \
            f"V4L2 {b.get('V4L/V4L2', '?')}, GUI {b.get('GUI', '?')}"
    checks = [Check("opencv", "ok", found)]
    if b.get("GStreamer", "NO").upper() != "YES":
        checks.append(Check("gstreamer", "missing", "OpenCV built without GStreamer",
                            "csi:// cameras and GStreamer pipeline sources",
                            "Jetson: pip uninstall opencv-python opencv-python-headless; sudo apt install python3-opencv "
                            "(or build OpenCV with -D WITH_GSTREAMER=ON)"))
    if b.get("GUI", "NONE").upper() == "NONE":
        checks.append(Check("display", "warn", "OpenCV has no GUI backend (headless build)",
                            "display:// sink (use --sink http://127.0.0.1:8080)",
                            "pip install opencv-python (instead of -headless) on machines with a screen"))
    return checks


def check_jetson() -> list[Check]:
    if not NV_TEGRA_RELEASE.exists():
        return [Check("l4t", "n/a", "not a Jetson (no /etc/nv_tegra_release)"),
                Check("jtop", "n/a", "not a Jetson: power telemetry off")]
    text = NV_TEGRA_RELEASE.read_text(errors="replace")
    l4t = parse_nv_tegra_release(text)
    model = DEVICE_TREE_MODEL.read_text(errors="replace").strip("\x00\n ") if DEVICE_TREE_MODEL.exists() else "?"
    jp = jetpack_for_l4t(l4t) if l4t else None
    checks = [Check("l4t", "ok" if l4t else "warn",
                    f"L4T {l4t or '?'} (JetPack {jp or '?'}), {model}")]
    checks.append(check_jtop())
    nvp = shutil.which("nvpmodel")
    if nvp:
        try:
            q = subprocess.run([nvp, "-q"], capture_output=True, text=True, timeout=5)
            mode = " ".join(q.stdout.split())[:80] or q.stderr.strip()[:80]
            checks.append(Check("nvpmodel", "ok", mode))
        except (OSError, subprocess.SubprocessError) as exc:
            checks.append(Check("nvpmodel", "warn", f"nvpmodel -q failed: {exc}"))
    return checks


def check_jtop() -> Check:
    jtop = _import("jtop")
    if jtop is None:
        return Check("jtop", "missing", "jetson-stats not installed", "power/temperature telemetry and energy per frame",
                     "sudo pip3 install -U jetson-stats, then reboot (or sudo systemctl restart jtop.service)")
    state = "unknown"
    if shutil.which("systemctl"):
        try:
            state = subprocess.run(["systemctl", "is-active", "jtop.service"], capture_output=True, text=True,
                                   timeout=5).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            pass
    version = getattr(jtop, "__version__", "?")
    if state != "active":
        return Check("jtop", "warn", f"jetson-stats {version}, jtop.service {state}",
                     "power/temperature telemetry", "sudo systemctl restart jtop.service")
    return Check("jtop", "ok", f"jetson-stats {version}, jtop.service active")


#: CPU features worth knowing about, per architecture: (flag in /proc/cpuinfo, label, what it enables here).
CPU_FEATURES = {
    "x86_64": (
        ("avx2", "AVX2", "vectorised fp32 kernels in torch (ATen AVX2), oneDNN and onnxruntime (MLAS)"),
        ("avx512f", "AVX-512", "wider fp32 kernels (oneDNN avx512_core; ATen AVX512 where torch picks it)"),
        ("avx512_vnni", "AVX-512 VNNI", "faster INT8 matrix products (onnxruntime int8 graphs, oneDNN)"),
        ("avx512_bf16", "AVX-512 BF16", "native bf16 matrix products: --precision bf16 on the CPU"),
        ("amx_bf16", "AMX-BF16", "AMX tiles: bf16 matrix products several times faster than fp32"),
        ("amx_int8", "AMX-INT8", "AMX tiles: INT8 matrix products (oneDNN)"),
    ),
    "aarch64": (
        ("asimd", "NEON", "vectorised fp32 kernels in torch, onnxruntime and oneDNN/ACL"),
        ("sve", "SVE", "scalable-vector kernels (oneDNN/ACL, ATen SVE where torch picks it)"),
        ("asimddp", "dot product", "faster INT8 matrix products (onnxruntime int8 graphs)"),
        ("i8mm", "I8MM", "INT8 matrix-multiply instructions (onnxruntime, ACL)"),
        ("bf16", "BF16", "native bf16 matrix products: --precision bf16 on the CPU"),
    ),
}


def cpu_arch(machine: str | None = None) -> str:
    """'x86_64' or 'aarch64' (``platform.machine()`` normalised: AMD64 -> x86_64, arm64 -> aarch64)."""
    m = (machine or platform.machine()).lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def check_cpu_features(flags: frozenset[str] | None = None, machine: str | None = None) -> list[Check]:
    """One line per vector/matrix feature of this CPU (present: what it enables; absent: what is lost),
    then whether bf16 runs on the CPU (the same ``precision_supported`` the pipeline asks)."""
    from radseg_edge.utils.precision import cpu_flags, isa_cap, precision_supported

    flags = cpu_flags() if flags is None else flags
    arch = cpu_arch(machine)
    torch = _import("torch")
    capability = torch.backends.cpu.get_cpu_capability() if torch is not None else "?"
    cap = isa_cap()
    summary = f"{arch}, torch CPU kernels: {capability}" + (f", {cap[0]}={cap[1]}" if cap else "")
    if not flags:
        return [Check("cpu", "warn", f"{summary}; CPU flags unknown (no /proc/cpuinfo)")]
    checks = [Check("cpu", "ok", summary)]
    for flag, label, enables in CPU_FEATURES.get(arch, ()):
        if flag in flags:
            checks.append(Check(f"cpu.{flag}", "ok", f"{label}: {enables}"))
        else:
            checks.append(Check(f"cpu.{flag}", "n/a", f"{label}: absent", disables=enables))
    if torch is not None:
        ok, reason = precision_supported("bf16", "cpu")
        checks.append(Check("bf16 on cpu", "ok" if ok else "n/a", reason,
                            "" if ok else "--precision bf16 on the CPU (fp32 is used; it is exact)"))
    return checks


def check_optional() -> list[Check]:
    return [
        _module_check("transformers", "transformers", "encoding new class names (cached vocabularies still work)",
                      "pip install 'radseg-edge[text]'")[0],
        _module_check("modelopt", "modelopt", "INT8 Q/DQ quantization for TensorRT", "pip install 'radseg-edge[quant]'")[0],
    ]


def collect_checks() -> list[Check]:
    """Run every check (never raises; each failure becomes a line)."""
    jetson = NV_TEGRA_RELEASE.exists()
    checks = [check_python(), Check("platform", "ok", f"{platform.system()} {platform.machine()} ({platform.platform()})")]
    checks += check_cpu_features()
    checks += check_torch(jetson)
    cuda = any(c.name == "cuda" and c.status == "ok" for c in checks)
    checks += check_tensorrt(jetson)
    checks.append(check_onnxruntime(cuda, jetson))
    checks.append(check_triton(cuda))
    checks += check_opencv()
    checks += check_jetson()
    checks += check_optional()
    return checks


def format_checks(checks: list[Check]) -> str:
    marks = {"ok": "ok  ", "missing": "MISS", "warn": "WARN", "n/a": "n/a "}
    lines = []
    for c in checks:
        lines.append(f"[{marks.get(c.status, c.status)}] {c.name:<15} {c.found}")
        if c.disables:
            lines.append(f"{'':22}disables: {c.disables}")
        if c.install:
            lines.append(f"{'':22}install:  {c.install}")
    missing = [c.name for c in checks if c.status == "missing"]
    lines.append("all optional pieces present" if not missing else f"missing: {', '.join(missing)}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="report Python, CPU features, torch/CUDA, GPU, TensorRT, onnxruntime, triton, OpenCV, jtop and L4T/JetPack",
        description="Check what this machine can run; for each missing piece say what it disables and how to install it.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as a JSON list instead of text")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if anything is missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = collect_checks()
    print(json.dumps([asdict(c) for c in checks], indent=2) if args.json else format_checks(checks))
    return 1 if args.strict and any(c.status == "missing" for c in checks) else 0
