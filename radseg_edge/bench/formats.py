"""Candidates for the exported formats (ONNX Runtime fp32/INT8, TensorRT engines, Torch-TensorRT).

For each format that can be produced on this machine, the bench exports the same pipeline (same weights,
windows and class embeddings, fixed to the case's image size) into a temporary folder with
``radseg_edge.export.build.export_model`` and runs it through ``radseg_edge.backends.make_backend``.
Anything that cannot run here is skipped with one line saying why. INT8 is calibrated on a few
synthetic images (a real deployment calibrates on real ones: ``radseg-edge export --calib DIR``).
"""

from __future__ import annotations

import shutil
import tempfile
import time

from torch import Tensor

from radseg_edge.bench.runner import Candidate
from radseg_edge.errors import RadsegError

#: backend -> formats it runs, on CPU-only machines and with a CUDA GPU.
FORMATS_CPU = {"onnxruntime": ("onnx", "onnx-int8")}
FORMATS_GPU = {
    "tensorrt": ("engine-fp16", "engine-int8"),
    "torch-tensorrt": ("torch-tensorrt",),
    "onnxruntime": ("onnx", "onnx-fp16", "onnx-int8"),
}

#: synthetic calibration images for INT8 (few: the bench measures speed, the gate reports agreement).
CALIB_IMAGES = 4


def _api():
    """(available_backends, make_backend, export_model, ExportOptions, FORMAT_PRECISION, check_feasible) or a reason."""
    try:
        from radseg_edge.backends import available_backends, make_backend
        from radseg_edge.export.build import FORMAT_PRECISION, ExportOptions, check_feasible, export_model
    except ImportError as exc:
        return None, f"the export/backends modules are not in this build yet ({exc})"
    return (available_backends, make_backend, export_model, ExportOptions, FORMAT_PRECISION, check_feasible), ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def format_candidates(radio, case, image: Tensor, text: Tensor, options) -> tuple[list[Candidate], list[str]]:
    """(candidates, skipped lines) for every exported backend/format usable here."""
    api, why = _api()
    if api is None:
        return [], [f"ONNX Runtime / TensorRT formats: {why}"]
    available_backends, make_backend, export_model, ExportOptions, FORMAT_PRECISION, check_feasible = api
    from radseg_edge.models.text import Vocabulary
    from radseg_edge.pipeline import RADSeg

    gpu = options.device.startswith("cuda")
    table = FORMATS_GPU if gpu else FORMATS_CPU
    wanted = [b for b in (options.backends or list(table)) if b not in ("torch", "pytorch")]
    here = set(available_backends())
    vocab = Vocabulary.from_embeddings([f"class{i}" for i in range(text.shape[0])], text.cpu())
    cands: list[Candidate] = []
    skipped: list[str] = []
    for backend_name in wanted:
        formats = table.get(backend_name, ())
        if backend_name not in here or not formats:
            skipped.append(f"{backend_name}: not usable on this machine"
                           + ("" if formats else " (no formats for this device)"))
            continue
        for fmt in formats:
            try:
                check_feasible(fmt)
            except (RadsegError, ImportError) as exc:
                skipped.append(f"{backend_name} {fmt}: {_first_line(exc)}")
                continue
            folder = tempfile.mkdtemp(prefix=f"radseg-bench-{fmt}-")
            seg = RADSeg(radio, crop=case.crop, stride=case.stride)
            export_opts = ExportOptions(
                imgsz=tuple(case.image_hw), split=False, calib_limit=CALIB_IMAGES, gate_limit=1, force=True,
                progress=False, max_windows=max(32, case.workload().windows),
            )
            t0 = time.perf_counter()
            try:
                manifest = export_model(seg, fmt, folder, vocabulary=vocab, options=export_opts)
                kwargs = {"providers": "cuda" if gpu else "cpu"} if backend_name == "onnxruntime" else {}
                backend = make_backend(backend_name, export_dir=folder, **kwargs)
            except (RadsegError, ImportError, RuntimeError, ValueError, NotImplementedError) as exc:
                shutil.rmtree(folder, ignore_errors=True)
                skipped.append(f"{backend_name} {fmt}: export failed: {_first_line(exc)}")
                continue
            precision = FORMAT_PRECISION[fmt]
            notes = [f"exported in {time.perf_counter() - t0:.0f} s", *[str(n) for n in getattr(manifest, "notes", [])]]
            if precision == "int8":
                notes.append(f"INT8 calibrated on {CALIB_IMAGES} synthetic images")

            def run(backend=backend) -> Tensor:
                return backend(image).labels  # no text: the fixed-size pipeline graph with the built-in classes

            cands.append(Candidate(
                name=f"{backend_name} {precision}" + (f" ({fmt})" if fmt == "onnx-fp16" else ""),
                backend=backend_name, precision=precision, run=run, device=options.device, notes=notes,
                cleanup=lambda folder=folder: shutil.rmtree(folder, ignore_errors=True),
            ))
    return cands, skipped
