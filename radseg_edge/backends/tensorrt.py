"""TensorRT backend: runs the engines of an export folder (``radseg-edge export --format engine-fp16``).

Every engine is checked against this machine before it is deserialized (GPU, SM, SM count, TensorRT,
CUDA, L4T, precision, shape profile, ONNX and plugin-library hashes; :mod:`radseg_edge.export.cache`):
an engine built elsewhere is refused with the list of differences, never loaded with a warning. The
export's plugin libraries are loaded through TensorRT's plugin registry before deserializing.

Each engine runs on its own CUDA stream (not the legacy default stream). The execution context is
created with user-managed device memory sized for the actual input shapes
(``update_device_memory_size_for_shapes``), not for the profile's largest shapes: the head's N x N
buffers at the profile's maximum map would otherwise hold gigabytes on an 8 GB Orin Nano. Window
batches larger than the backbone profile run in chunks of the profile's maximum
(``get_tensor_profile_shape``); a feature map larger than the head profile is refused with the export
option that raises it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from radseg_edge.backends.base import ExportedBackend
from radseg_edge.errors import EngineError, InputError
from radseg_edge.export.cache import DeviceDescription, EngineKey, describe_device, verify_engine
from radseg_edge.export.engine import ensure_tensorrt, load_plugin_libraries
from radseg_edge.export.manifest import Manifest

if TYPE_CHECKING:
    import tensorrt


def torch_dtype(dtype: tensorrt.DataType) -> torch.dtype:
    """TensorRT DataType -> torch dtype."""
    import tensorrt as trt

    table: dict[Any, torch.dtype] = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                                     trt.int8: torch.int8, trt.bool: torch.bool}
    for name, tdt in (("int64", torch.int64), ("uint8", torch.uint8), ("bfloat16", torch.bfloat16)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    return table[dtype]


def dims_tuple(dims: tensorrt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class EngineRunner:
    """One deserialized engine with an execution context; ``runner(name=tensor, ...)`` -> {output: tensor}.

    Args:
        engine_bytes: the serialized engine (its plugins already loaded through the registry).
        device: where inputs and outputs live ("cuda").
        stream: the CUDA stream to run on (default: a new ``torch.cuda.Stream`` for this engine).
    Inputs are copied to the engine's dtypes on ``device``; outputs are allocated per call.
    """

    def __init__(self, engine_bytes: bytes, device: str = "cuda", stream: Any = None) -> None:
        import tensorrt as trt

        self.device = device
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise EngineError("TensorRT could not deserialize the engine (built with another TensorRT?)")
        self.engine: tensorrt.ICudaEngine = engine
        # memory for the actual shapes (set per call), not the profile's maximum
        self.context: tensorrt.IExecutionContext = engine.create_execution_context(
            trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        self._memory: torch.Tensor | None = None
        self.stream = stream if stream is not None else torch.cuda.Stream(device=torch.device(device))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]

    def profile_shapes(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of input ``name`` in the engine's first optimization profile."""
        lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
        return dims_tuple(lo), dims_tuple(opt), dims_tuple(hi)

    def _device_memory(self) -> None:
        """Give the context device memory for the current input shapes (grown when a larger shape needs more)."""
        size = int(self.context.update_device_memory_size_for_shapes())
        if self._memory is None or self._memory.numel() < size:
            self._memory = torch.empty(max(size, 1), dtype=torch.uint8, device=self.device)
        self.context.set_device_memory(self._memory.data_ptr(), size)

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        keep = []
        for name in self.inputs:
            if name not in inputs:
                raise InputError(f"engine input {name!r} missing (expects {', '.join(self.inputs)})")
            t = inputs[name].to(self.device, torch_dtype(self.engine.get_tensor_dtype(name))).contiguous()
            keep.append(t)
            if not self.context.set_input_shape(name, tuple(t.shape)):
                lo, _, hi = self.profile_shapes(name)
                raise EngineError(f"engine input {name!r} of shape {tuple(t.shape)} is outside the engine's profile "
                                  f"(min {lo}, max {hi}); re-export with larger limits")
            self.context.set_tensor_address(name, t.data_ptr())
        self._device_memory()
        out = {}
        for name in self.outputs:
            shape = dims_tuple(self.context.get_tensor_shape(name))
            t = torch.empty(shape, dtype=torch_dtype(self.engine.get_tensor_dtype(name)), device=self.device)
            self.context.set_tensor_address(name, t.data_ptr())
            out[name] = t
        if self.device != "cpu":  # the engine's stream waits for the copies made on the current stream
            self.stream.wait_stream(torch.cuda.current_stream(torch.device(self.device)))
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError("TensorRT engine execution failed")
        self.stream.synchronize()
        return out


def expected_key(folder: Path, art: dict, device: DeviceDescription) -> EngineKey:
    """The key an engine record of the manifest must have on ``device`` (ONNX and plugins hashed now)."""
    plugins = [folder / p["file"] if isinstance(p, dict) else folder / p for p in art.get("plugins", [])]
    return EngineKey.create(device, art["precision"], folder / art["onnx"], art.get("shape_profile", "static"), plugins)


def load_verified_engine(folder: Path, manifest: Manifest, role: str, device: DeviceDescription | None = None,
                         runner: Callable[..., EngineRunner] = EngineRunner) -> EngineRunner:
    """Check the engine of ``role`` against this machine (refusing mismatches), load its plugin libraries
    through the registry, and deserialize it."""
    art = manifest.artefacts.get(role)
    if art is None:
        raise EngineError(f"{folder} has no '{role}' engine")
    engine_path = folder / art["file"]
    key = expected_key(folder, art, device or describe_device())
    verify_engine(engine_path, key)
    load_plugin_libraries([folder / (p["file"] if isinstance(p, dict) else p) for p in art.get("plugins", [])])
    return runner(engine_path.read_bytes())


class TensorRTBackend(ExportedBackend):
    """RADSeg from the TensorRT engines of an export folder (``pipeline_engine`` or ``backbone_engine`` + ``head_engine``).

    Args:
        export_dir: folder written by ``radseg-edge export --format engine-fp16|engine-int8``.
        vocabulary: default classes (default: the folder's vocabulary).
        device_description: this machine (default: :func:`radseg_edge.export.cache.describe_device`).
    """

    name = "tensorrt"
    roles = {"pipeline": "pipeline_engine", "backbone": "backbone_engine", "head": "head_engine"}
    device = "cuda"

    def __init__(self, export_dir: str | os.PathLike, vocabulary=None,
                 device_description: DeviceDescription | None = None,
                 runner: Callable[..., EngineRunner] = EngineRunner) -> None:
        self.version = ensure_tensorrt("the TensorRT backend")
        if runner is EngineRunner and not torch.cuda.is_available():
            raise EngineError("the TensorRT backend needs a CUDA GPU and a CUDA build of torch")
        super().__init__(export_dir, vocabulary)
        machine = device_description or describe_device()
        self.runners = {r: load_verified_engine(self.folder, self.manifest, r, machine, runner)
                        for r in self.roles.values() if r in self.manifest.artefacts}
        self.device = next(iter(self.runners.values())).device

    def export_hint(self) -> str:
        return "run `radseg-edge export --format engine-fp16`"

    def max_windows(self) -> int | None:
        return self.runners["backbone_engine"].profile_shapes("windows")[2][0]

    def max_feature_size(self) -> tuple[int, int] | None:
        hi = self.runners["head_engine"].profile_shapes("features")[2]
        return int(hi[-2]), int(hi[-1])

    def run_pipeline(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.runners["pipeline_engine"](frame=torch.from_numpy(frame))
        return out["probs"], out["labels"]

    def run_backbone(self, windows: torch.Tensor) -> torch.Tensor:
        return self.runners["backbone_engine"](windows=windows)["features"]

    def run_head(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.runners["head_engine"](features=features, text_embeddings=text)["probs"]

    def describe(self) -> str:
        return f"tensorrt[{self.version}, {self.manifest.precision}]"
