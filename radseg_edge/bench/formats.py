"""Candidates for the exported formats (ONNX Runtime, TensorRT, ...), through :mod:`radseg_edge.backends`.

Every backend/precision that is available on this machine becomes one row of ``radseg-edge bench
--formats``; anything that cannot run here is skipped with one line saying why.
"""

from __future__ import annotations

import inspect

from torch import Tensor

from radseg_edge.bench.runner import Candidate
from radseg_edge.errors import RadsegError
from radseg_edge.utils.profiling import StageProfiler

#: precisions tried per backend when the backend does not list its own.
DEFAULT_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "tensorrt": ("fp16", "int8"), "torch_tensorrt": ("fp16",)}

_PYTORCH_NAMES = ("torch", "pytorch")


def _backend_api():
    try:
        from radseg_edge.backends import available_backends, make_backend
    except ImportError as exc:
        return None, None, f"radseg_edge.backends has no available_backends/make_backend in this build ({exc})"
    return available_backends, make_backend, ""


def _precisions_of(name: str, backend_module_hint) -> tuple[str, ...]:
    return tuple(getattr(backend_module_hint, "precisions", None) or DEFAULT_PRECISIONS.get(name, ("fp32",)))


def _call_kwargs(fn, **wanted) -> dict:
    """The keyword arguments of ``wanted`` that ``fn`` accepts (all of them if it takes **kwargs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


def format_candidates(radio, case, image: Tensor, text: Tensor, options) -> tuple[list[Candidate], list[str]]:
    """(candidates, skipped lines) for every non-PyTorch backend and precision usable here."""
    available_backends, make_backend, why = _backend_api()
    if available_backends is None:
        return [], [f"exported formats (onnxruntime, tensorrt): {why}"]
    names = [n for n in (options.backends or available_backends()) if n not in _PYTORCH_NAMES]
    cands: list[Candidate] = []
    skipped: list[str] = []
    for name in names:
        for precision in DEFAULT_PRECISIONS.get(name, ("fp32",)):
            prof = StageProfiler(device=options.device)
            kwargs = _call_kwargs(
                make_backend, radio=radio, precision=precision, crop=case.crop, stride=case.stride,
                image_hw=tuple(case.image_hw), device=options.device, profiler=prof, text=text, num_classes=text.shape[0],
            )
            try:
                backend = make_backend(name, **kwargs)
            except (RadsegError, ImportError, RuntimeError, ValueError, NotImplementedError) as exc:
                skipped.append(f"{name} {precision}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue

            def run(backend=backend) -> Tensor:
                return backend(image, text).labels

            cands.append(Candidate(
                name=f"{name} {precision}", backend=name, precision=precision, run=run,
                profiler=prof, device=options.device,
                parameters=getattr(backend, "parameters", None),
                notes=[str(n) for n in getattr(backend, "notes", [])],
            ))
    return cands, skipped
