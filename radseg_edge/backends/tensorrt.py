"""TensorRT backend: runs the engines of an export folder (``radseg-edge export --format engine-fp16``).

Every engine is checked against this machine before it is deserialized (GPU, SM, SM count, TensorRT,
CUDA, L4T, precision, shape profile, ONNX and plugin hashes; :mod:`radseg_edge.export.cache`): an engine
built elsewhere is refused with the list of differences, never loaded with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from radseg_edge.backends.base import (
    BackendResult,
    WindowSettings,
    frame_tensor,
    frame_uint8,
    resolve_text,
    run_split,
)
from radseg_edge.backends.onnxruntime import load_export_vocabulary
from radseg_edge.errors import EngineError, InputError, require
from radseg_edge.export.cache import EngineKey, describe_device, verify_engine
from radseg_edge.export.manifest import Manifest


def torch_dtype(trt, dtype) -> torch.dtype:
    """TensorRT DataType -> torch dtype."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    for name, tdt in (("int64", torch.int64), ("uint8", torch.uint8), ("bf16", torch.bfloat16)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    return table[dtype]


class EngineRunner:
    """One deserialized engine with an execution context; ``runner(name=tensor, ...)`` -> {output: tensor}.

    Inputs are CUDA tensors (copied to the engine's dtype); outputs are allocated per call.
    """

    def __init__(self, engine_bytes: bytes, trt=None) -> None:
        self.trt = trt or require("tensorrt", "trt", "the TensorRT backend")
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EngineError("TensorRT could not deserialize the engine (built with another TensorRT?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        keep = []
        for name in self.inputs:
            if name not in inputs:
                raise InputError(f"engine input {name!r} missing (expects {', '.join(self.inputs)})")
            t = inputs[name].to("cuda", torch_dtype(self.trt, self.engine.get_tensor_dtype(name))).contiguous()
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            t = torch.empty(shape, dtype=torch_dtype(self.trt, self.engine.get_tensor_dtype(name)), device="cuda")
            self.context.set_tensor_address(name, t.data_ptr())
            out[name] = t
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError("TensorRT engine execution failed")
        stream.synchronize()
        return out


def load_verified_engine(folder: Path, manifest: Manifest, role: str, trt=None) -> EngineRunner:
    """Check the engine of ``role`` against this machine (refusing mismatches) and deserialize it."""
    art = manifest.artefacts.get(role)
    if art is None:
        raise EngineError(f"{folder} has no '{role}' engine")
    engine_path = folder / art["file"]
    plugins = [folder / p for p in art.get("plugins", [])]
    expected = EngineKey.create(describe_device(), art["precision"], folder / art["onnx"],
                                art.get("shape_profile", "static"), plugins)
    verify_engine(engine_path, expected)
    return EngineRunner(engine_path.read_bytes(), trt)


class TensorRTBackend:
    """RADSeg from the TensorRT engines of an export folder (``pipeline_engine`` or ``backbone_engine`` + ``head_engine``)."""

    name = "tensorrt"

    def __init__(self, export_dir: str | os.PathLike, vocabulary=None) -> None:
        self.trt = require("tensorrt", "trt", "the TensorRT backend")
        if not torch.cuda.is_available():
            raise EngineError("the TensorRT backend needs a CUDA GPU and a CUDA build of torch")
        self.folder = Path(export_dir)
        self.manifest = Manifest.read(self.folder)
        self.manifest.verify(self.folder)  # SHA-256 of every artefact, paths inside the folder
        self.settings = WindowSettings.from_manifest(self.manifest.windows)
        self.vocabulary = vocabulary if vocabulary is not None else load_export_vocabulary(self.folder, self.manifest)
        roles = [r for r in ("pipeline_engine", "backbone_engine", "head_engine") if r in self.manifest.artefacts]
        if not roles:
            raise EngineError(f"{self.folder} holds no TensorRT engines; run `radseg-edge export --format engine-fp16`")
        self.runners = {r: load_verified_engine(self.folder, self.manifest, r, self.trt) for r in roles}

    def __call__(self, image, text=None, channel_order: str = "rgb") -> BackendResult:
        names = list(self.vocabulary.names) if self.vocabulary is not None else None
        if "pipeline_engine" in self.runners and text is None:
            size = tuple(self.manifest.artefacts["pipeline_engine"]["imgsz"])
            frame = frame_uint8(image, channel_order)
            if tuple(frame.shape[1:3]) == size:
                out = self.runners["pipeline_engine"](frame=torch.from_numpy(frame))
                return BackendResult(out["probs"].float(), out["labels"].long(), class_names=names, backend=self.describe())
        if "backbone_engine" not in self.runners:
            raise InputError("this export holds only the fixed-resolution engine: give frames of its size and no text")
        emb, given_names = resolve_text(text, self.vocabulary, names)
        out = run_split(
            frame_tensor(image, channel_order).cuda(), emb.cuda(), self.settings,
            lambda w: self.runners["backbone_engine"](windows=w)["features"].float(),
            lambda f, t: self.runners["head_engine"](features=f, text_embeddings=t)["probs"].float(),
        )
        return BackendResult(**out, class_names=given_names if text is not None else names, backend=self.describe())

    def describe(self) -> str:
        return f"tensorrt[{self.trt.__version__}, {self.manifest.precision}]"
