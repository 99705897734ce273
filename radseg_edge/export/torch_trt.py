"""torch-tensorrt compilation: the PyTorch graphs compiled by torch-tensorrt and saved as ExportedPrograms.

``radseg-edge export --format torch-tensorrt`` compiles the fixed-resolution pipeline (with ``--imgsz``)
or the window backbone and the head, and saves each with ``torch_tensorrt.save(...,
output_format="exported_program", arg_inputs=[torch_tensorrt.Input ranges])`` so that the dynamic
window batch / map size / vocabulary survive the save (example tensors would specialise the program to
their shapes). Every program gets a key record ``<program>.json`` (:mod:`radseg_edge.export.cache`)
that :class:`radseg_edge.backends.torch_tensorrt.TorchTensorRTBackend` checks before loading.

The precision option follows the torch-tensorrt version (:func:`precision_settings`): 2.5-2.8 (JetPack 6)
take ``enabled_precisions`` (weak typing); 2.9 also needs ``use_explicit_typing=False`` for it; from 2.10
explicit typing is the default and ``enabled_precisions`` is ignored, so FP16 comes from rule-based
autocast (``enable_autocast`` with ``low_precision_type``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from radseg_edge.errors import EngineError, MissingDependencyError, require
from radseg_edge.export.engine import parse_version


def ensure_torch_tensorrt(purpose: str):
    """The torch_tensorrt module, or MissingDependencyError with the pip extra."""
    module = require("torch_tensorrt", "trt", purpose)
    if getattr(module, "__version__", None) is None:
        raise MissingDependencyError(f"{purpose} needs the torch-tensorrt package; 'torch_tensorrt' here is only a "
                                     "namespace: pip install 'radseg-edge[trt]'")
    return module


def precision_settings(version: str, precision: str) -> dict:
    """``torch_tensorrt.compile`` keyword arguments that give ``precision`` with torch-tensorrt ``version``.

    Args:
        version: ``torch_tensorrt.__version__`` ("2.5.0", "2.10.0+cu130").
        precision: "fp32" or "fp16".
    """
    if precision not in ("fp32", "fp16"):
        raise EngineError(f"torch-tensorrt programs are fp32 or fp16, not {precision!r}")
    major, minor = parse_version(version.split("+")[0])
    fp16 = precision == "fp16"
    if (major, minor) >= (2, 10):
        if not fp16:
            return {"use_explicit_typing": True}
        return {"use_explicit_typing": True, "enable_autocast": True, "low_precision_type": torch.float16}
    precisions = {torch.float16, torch.float32} if fp16 else {torch.float32}
    if (major, minor) >= (2, 9):
        return {"use_explicit_typing": False, "enabled_precisions": precisions}
    return {"enabled_precisions": precisions}


def input_specs(torch_trt, inputs: Sequence[torch.Tensor],
                ranges: Mapping[int, tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None) -> list:
    """``torch_tensorrt.Input`` of every input: min/opt/max shapes from ``ranges``, else the tensor's shape."""
    specs = []
    for i, t in enumerate(inputs):
        if ranges and i in ranges:
            lo, opt, hi = ranges[i]
            specs.append(torch_trt.Input(min_shape=tuple(lo), opt_shape=tuple(opt), max_shape=tuple(hi), dtype=t.dtype))
        else:
            specs.append(torch_trt.Input(shape=tuple(t.shape), dtype=t.dtype))
    return specs


def compile_module(module: torch.nn.Module, inputs: list, path: str | os.PathLike, precision: str = "fp16",
                   ranges: Mapping[int, tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None) -> Path:
    """Compile ``module`` with torch-tensorrt (dynamo IR) and save it as an ExportedProgram at ``path``.

    Args:
        inputs: example CUDA tensors (their dtypes; the shapes of inputs without a range).
        ranges: {input index: (min shape, opt shape, max shape)} for inputs with dynamic dimensions.
    """
    torch_trt = ensure_torch_tensorrt("the torch-tensorrt export")
    if not torch.cuda.is_available():
        raise EngineError("torch-tensorrt needs a CUDA GPU and a CUDA build of torch")
    specs = input_specs(torch_trt, inputs, ranges)
    options = precision_settings(str(torch_trt.__version__), precision)
    compiled = torch_trt.compile(module.eval().cuda(), ir="dynamo", arg_inputs=specs, **options)
    torch_trt.save(compiled, str(path), output_format="exported_program", arg_inputs=specs)
    return Path(path)


def program_key(precision: str, profile: Mapping | None, device=None):
    """The key of a torch-tensorrt program built on this machine (device, torch-tensorrt version, profile)."""
    from radseg_edge.export.cache import EngineKey, describe_cuda_device, format_profile

    if device is None:
        device = describe_cuda_device(f"torch-tensorrt-{ensure_torch_tensorrt('torch-tensorrt keys').__version__}")
    return EngineKey(device=device, precision=precision, shape_profile=format_profile(profile), onnx_sha256="")


def export_torch_tensorrt(radseg, vocab, imgsz: tuple[int, int] | None, split: bool, profiles: dict,
                          out_dir: Path, artefacts: dict) -> None:
    """Compile the pipeline (``imgsz``) and/or backbone + head into ``out_dir``; add their manifest records.

    Args:
        profiles: :func:`radseg_edge.export.build.shape_profiles` of the export.
        artefacts: the manifest's artefact dict (updated with pipeline_trt / backbone_trt / head_trt).
    """
    from radseg_edge.export.build import artefact_record
    from radseg_edge.export.cache import format_profile, write_key
    from radseg_edge.export.fixed import FixedResolutionPipeline
    from radseg_edge.export.graphs import HeadGraph, WindowBackbone

    seg = radseg.to("cuda")

    def record(role: str, path: Path, precision: str, profile: Mapping | None, **extra) -> None:
        write_key(path, program_key(precision, profile))
        artefacts[role] = artefact_record(path, precision=precision, shape_profile=format_profile(profile), **extra)

    if imgsz is not None:
        if vocab is None:
            raise EngineError("--imgsz compiles the whole pipeline with the classes built in: give --vocab")
        pipe = FixedResolutionPipeline(seg, vocab.embeddings, *imgsz).cuda()
        path = compile_module(pipe, [pipe.example_input().cuda()], out_dir / "pipeline.trt.pt2")
        record("pipeline_trt", path, "fp16", None, imgsz=list(imgsz))
    if split and seg.crop > 0:
        bb = WindowBackbone(seg.radio, (seg.crop, seg.crop), seg.scra_tau).cuda()
        win = profiles["backbone"]["windows"]
        path = compile_module(bb, [torch.rand(*win[1], device="cuda")], out_dir / "backbone.trt.pt2", ranges={0: win})
        record("backbone_trt", path, "fp16", profiles["backbone"], max_windows=int(win[2][0]))
        head = HeadGraph(seg.radio, seg.scga_tau).cuda()
        f, t = profiles["head"]["features"], profiles["head"]["text_embeddings"]
        path = compile_module(head, [torch.randn(*f[1], device="cuda"), torch.randn(*t[1], device="cuda")],
                              out_dir / "head.trt.pt2", precision="fp32", ranges={0: f, 1: t})
        record("head_trt", path, "fp32", profiles["head"], max_features=[int(f[2][2]), int(f[2][3])])
