"""Shared by tests/test_cpp_runtime.py, .ci/build_cpp.sh and benchmarks/bench_cpp_runtime.py.

Builds the C++ runtime (cpp/) with CMake against the installed torch wheel's libtorch, exports the
tiny RADSeg model (tests/fixtures/tiny_radio.pth.tar, the coffee-photo vocabulary of the fixtures) as
an AOTInductor package, and compares the C++ outputs with the Python pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
PHOTO_FIXTURE = FIXTURES / "seg_photo_coffee_slide64s32_90x135"
#: the compiled resolution: small enough for AOTInductor on 2 CPU cores (~30 s), multiple of 16.
HEIGHT, WIDTH = 64, 96
BINARIES = ("radseg_segment_image", "radseg_frame_loop", "radseg_c_api_test")


def toolchain_missing() -> str | None:
    """Why the C++ runtime cannot be built here (None when cmake and a C/C++ compiler exist)."""
    if shutil.which("cmake") is None:
        return "cmake is not installed"
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++ or clang++) is installed"
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        return "no C compiler (cc, gcc or clang) is installed"
    return None


def build_runtime(build_dir: Path, jobs: int = 2) -> dict[str, Path]:
    """Configure (once) and build cpp/ into ``build_dir``; {binary name: path}. Raises on failure."""
    build_dir = Path(build_dir)
    if not (build_dir / "CMakeCache.txt").exists():
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(
            ["cmake", "-S", str(REPO / "cpp"), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
             f"-DPython3_EXECUTABLE={sys.executable}"],
            check=True, capture_output=True, text=True,
        )
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs)], check=True, capture_output=True, text=True)
    return {name: build_dir / name for name in BINARIES}


def tiny_radseg():
    """RADSeg on the tiny fixture checkpoint (one pass, no windows) and the photo fixture's 7 classes."""
    from safetensors.torch import load_file

    from radseg_edge import RADSeg, load_radio
    from radseg_edge.models.text import Vocabulary

    radio = load_radio(str(FIXTURES / "tiny_radio.pth.tar"))
    names = json.loads(PHOTO_FIXTURE.with_suffix(".json").read_text())["classes"]
    vocab = Vocabulary.from_embeddings(names, load_file(str(PHOTO_FIXTURE.with_suffix(".safetensors")))["text_embeds"])
    seg = RADSeg(radio, crop=0, kernels="reference").eval()
    return seg, vocab


def frame_module(seg, vocab, height: int = HEIGHT, width: int = WIDTH) -> nn.Module:
    """The fixed-resolution pipeline (radseg_edge.export.fixed) that the package compiles, eager."""
    from radseg_edge.export.aoti import fixed_resolution_module

    return fixed_resolution_module(seg, vocab.embeddings, height, width).eval()


def photo_frame(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """H x W x 3 uint8 RGB: the fixtures' coffee photo resized to height x width."""
    import cv2
    from safetensors.torch import load_file

    image = load_file(str(PHOTO_FIXTURE.with_suffix(".safetensors")))["image"][0]  # 3 x 90 x 135, [0,1]
    rgb = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def write_ppm(path: Path, rgb: np.ndarray) -> Path:
    """Binary PPM (P6) of an H x W x 3 uint8 RGB array."""
    h, w, _ = rgb.shape
    Path(path).write_bytes(f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return Path(path)


def _module_key(module: nn.Module, height: int, width: int) -> str:
    digest = hashlib.sha256(f"{torch.__version__} {type(module).__qualname__} {height}x{width}".encode())
    for name, t in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    for path in sorted((REPO / "radseg_edge").rglob("*.py")):  # the traced code
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def export_tiny_package(out_dir: Path, height: int = HEIGHT, width: int = WIDTH) -> tuple[Path, nn.Module]:
    """Export (or reuse, when the model, code and torch are unchanged) the tiny package in ``out_dir``.

    Returns (export folder, the eager frame module it was compiled from).
    """
    from radseg_edge.export.aoti import export_aoti_package

    seg, vocab = tiny_radseg()
    module = frame_module(seg, vocab, height, width)
    key = _module_key(module, height, width)
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.json"
    if manifest.exists() and (out_dir / "model.pt2").exists():
        if f"cache key {key}" in json.loads(manifest.read_text()).get("notes", []):
            return out_dir, module
    export_aoti_package(seg, vocab, height, width, out_dir, device="cpu", module=module)
    data = json.loads(manifest.read_text())
    data["notes"] = [*data.get("notes", []), f"cache key {key}"]
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return out_dir, module


def python_reference(module: nn.Module, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels H x W int64 and probs K x H x W fp32 of the eager module on an H x W x 3 uint8 frame."""
    with torch.inference_mode():
        labels, probs = module(torch.from_numpy(np.ascontiguousarray(rgb))[None])
    return labels[0].numpy(), probs[0].numpy()


def compare(labels: np.ndarray, probs: np.ndarray | None, ref_labels: np.ndarray, ref_probs: np.ndarray) -> dict:
    """Parity figures: differing label pixels and the largest absolute probability difference."""
    out = {
        "label_mismatches": int((labels.astype(np.int64) != ref_labels).sum()),
        "pixels": int(ref_labels.size),
        "max_prob_diff": None,
    }
    if probs is not None:
        out["max_prob_diff"] = float(np.abs(probs.astype(np.float64) - ref_probs).max())
    return out


def run_segment_image(binary: Path, export_dir: Path, ppm: Path, work: Path, bgr: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """Runs the C++ example; returns (labels H x W int32, probs K x H x W fp32, stdout)."""
    work = Path(work)
    labels_npy, probs_npy = work / "labels.npy", work / "probs.npy"
    cmd = [str(binary), str(export_dir), str(ppm), str(work / "labels.pgm"), "--probs", str(probs_npy),
           "--labels-npy", str(labels_npy), "--threads", "1"]
    if bgr:
        cmd.append("--bgr")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return np.load(labels_npy), np.load(probs_npy), proc.stdout
