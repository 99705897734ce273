"""Backends by name: ``make_backend("auto" | "torch" | "onnxruntime" | "tensorrt" | "torch-tensorrt", ...)``.

Every backend is called as ``backend(image, text=None)`` with an H x W x 3 uint8 RGB array (or a
1 x 3 x H x W float tensor in [0,1]) and returns an object with ``probs`` (1 x K x H x W) and ``labels``
(1 x H x W int64). The torch backend wraps :class:`radseg_edge.pipeline.RADSeg`; the others run the
artefacts of a folder written by ``radseg-edge export`` (see docs/export.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from radseg_edge.errors import InputError, importable

#: all backend names, best first (what "auto" tries in order).
BACKENDS = ("tensorrt", "torch-tensorrt", "onnxruntime", "torch")

#: backends that send frames to a server instead of running a model here (never chosen by "auto").
REMOTE_BACKENDS = ("triton",)

#: the served model's name when --model names a RADIO architecture (its default).
DEFAULT_SERVED_MODEL = "radseg"

#: manifest artefact roles each exported backend runs from.
_ROLES = {
    "tensorrt": ("pipeline_engine", "backbone_engine"),
    "torch-tensorrt": ("pipeline_trt", "backbone_trt"),
    "onnxruntime": ("pipeline", "backbone"),
}


def _has(module: str) -> bool:
    return importable(module)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def available_backends() -> list[str]:
    """Backends whose dependencies are installed and usable on this machine, best first."""
    out = []
    if _has("tensorrt") and _cuda():
        out.append("tensorrt")
    if _has("torch_tensorrt") and _cuda():
        out.append("torch-tensorrt")
    if _has("onnxruntime"):
        out.append("onnxruntime")
    out.append("torch")
    return out


def why_unavailable(name: str) -> str:
    """One sentence saying why a backend cannot run here ("" when it can)."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; choose auto or one of: {', '.join(BACKENDS)}"
    if name in available_backends():
        return ""
    module = {"tensorrt": "tensorrt", "torch-tensorrt": "torch_tensorrt", "onnxruntime": "onnxruntime"}[name]
    extra = {"tensorrt": "trt", "torch-tensorrt": "trt", "onnxruntime": "onnx"}[name]
    if not _has(module):
        return f"the {name} backend needs the Python package '{module}': pip install 'radseg-edge[{extra}]'"
    return f"the {name} backend needs a CUDA GPU, and torch sees none"


def _export_roles(export_dir) -> set[str]:
    from radseg_edge.export.manifest import Manifest

    return set(Manifest.read(export_dir).artefacts)


def make_backend(name: str = "auto", radseg=None, export_dir: str | os.PathLike | None = None, **options):
    """Build a backend.

    Args:
        name: "auto" (the best available backend that has what it needs: an export folder's artefacts
            or a RADSeg), "torch", "onnxruntime", "tensorrt" or "torch-tensorrt".
        radseg: a :class:`radseg_edge.pipeline.RADSeg` (the torch backend).
        export_dir: a folder written by ``radseg-edge export`` (the other backends).
        options: passed to the backend (onnxruntime: providers="auto"|"cpu"|"cuda"|"tensorrt", threads;
            all exported backends: vocabulary).
    Raises:
        InputError: unknown name, missing dependency or GPU, or neither a RADSeg nor export folder fitting it.
    """
    if name == "triton":  # a client of a Triton server: options url, model, protocol, timeout, token, ...
        from radseg_edge.backends.triton import TritonBackend

        return TritonBackend(**options)
    if name == "auto":
        roles = _export_roles(export_dir) if export_dir is not None else set()
        for candidate in available_backends():
            if candidate == "torch":
                if radseg is not None:
                    return make_backend("torch", radseg=radseg)
            elif roles & set(_ROLES[candidate]):
                return make_backend(candidate, export_dir=export_dir, **options)
        if export_dir is not None:
            raise InputError(f"no available backend can run {export_dir} (artefacts: {', '.join(sorted(roles)) or 'none'}; "
                             f"available backends: {', '.join(available_backends())})")
        raise InputError("make_backend('auto') needs a RADSeg pipeline or an export folder")
    reason = why_unavailable(name)
    if reason:
        raise InputError(reason)
    if name == "torch":
        if radseg is None:
            raise InputError("the torch backend needs a RADSeg pipeline (radseg=...)")
        from radseg_edge.backends.torch import TorchBackend

        return TorchBackend(radseg)
    if export_dir is None or not Path(export_dir).is_dir():
        raise InputError(f"the {name} backend runs an export folder: give export_dir (got {export_dir!r}); "
                         "make one with `radseg-edge export`")
    if name == "onnxruntime":
        from radseg_edge.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(export_dir, **options)
    if name == "tensorrt":
        from radseg_edge.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(export_dir, **{k: v for k, v in options.items() if k == "vocabulary"})
    from radseg_edge.backends.torch_tensorrt import TorchTensorRTBackend

    return TorchTensorRTBackend(export_dir, **{k: v for k, v in options.items() if k == "vocabulary"})


def add_backend_args(parser) -> None:
    """Add --backend, --export-dir and --providers to an argparse parser (segment, stream, bench, ...)."""
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", default="auto", choices=("auto", *BACKENDS, *REMOTE_BACKENDS),
                   help="auto (default): the best available for --export-dir, else torch; triton: a Triton server")
    g.add_argument("--export-dir", metavar="DIR", help="folder written by `radseg-edge export` (non-torch backends)")
    g.add_argument("--providers", default="auto",
                   help="onnxruntime execution providers: auto, cpu, cuda, tensorrt or a comma list (default auto)")
    add_triton_client_args(parser)


def add_triton_client_args(parser) -> None:
    """--server, --protocol, --timeout, --token of the triton backend (its model name is --model)."""
    g = parser.add_argument_group("triton backend (--backend triton; --model NAME is the served model, default radseg)")
    g.add_argument("--server", default="127.0.0.1:8001", metavar="URL",
                   help="Triton server: HOST:PORT (gRPC) or http://HOST:PORT (default 127.0.0.1:8001)")
    g.add_argument("--protocol", choices=("grpc", "http"), help="protocol when --server has no scheme (default grpc)")
    g.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per request (default 10)")
    g.add_argument("--token", default=os.environ.get("RADSEG_SERVE_TOKEN"),
                   help="token of a server started with --token (env RADSEG_SERVE_TOKEN)")


def triton_options_from_args(args) -> dict:
    """make_backend("triton", **options) options from :func:`add_triton_client_args` (and --model)."""
    from radseg_edge.models.configs import CONFIGS

    model = getattr(args, "model", None)
    if not model or model in CONFIGS:  # --model left at its RADIO default
        model = DEFAULT_SERVED_MODEL
    return {"url": args.server, "model": model, "protocol": args.protocol, "timeout": args.timeout,
            "token": args.token}


def backend_from_args(args, radseg=None, vocabulary=None):
    """The backend chosen by :func:`add_backend_args` options (``radseg`` for the torch backend)."""
    options = {}
    name = args.backend
    if name in REMOTE_BACKENDS:
        return make_backend(name, **triton_options_from_args(args))
    export_dir = getattr(args, "export_dir", None)
    if name == "onnxruntime" or (name == "auto" and export_dir):
        providers = getattr(args, "providers", "auto")
        options["providers"] = providers.split(",") if "," in providers else providers
    if vocabulary is not None and name != "torch":
        options["vocabulary"] = vocabulary
    if name == "auto" and not export_dir:
        name = "torch"
    if name == "auto" and "providers" in options and "onnxruntime" not in available_backends():
        options.pop("providers")
    if name == "torch":
        return make_backend("torch", radseg=radseg)
    return make_backend(name, radseg=radseg, export_dir=export_dir, **options)


__all__ = ["BACKENDS", "REMOTE_BACKENDS", "add_backend_args", "add_triton_client_args", "triton_options_from_args", "available_backends", "backend_from_args", "make_backend", "why_unavailable"]
