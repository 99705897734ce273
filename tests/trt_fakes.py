"""Recording fakes of the TensorRT, torch-tensorrt and ONNX Runtime APIs the project calls.

Every fake call is appended to ``Recorder.calls`` as ``(stub name, args, kwargs)``, where the stub name is
``"<tensorrt class>.<method>"`` (or ``"tensorrt.<function>"``), so tests assert the exact configuration
the code asks for. :data:`FAKE_CLASSES` maps each fake to the ``tensorrt-stubs`` class it stands for; a test
checks that every public method of a fake exists there, so the fakes cannot drift from the real API.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorder:
    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)

    def add(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def of(self, name: str) -> list[tuple[tuple, dict]]:
        """(args, kwargs) of every call of ``name``, in order."""
        return [(a, k) for n, a, k in self.calls if n == name]

    def names(self) -> list[str]:
        return [n for n, _, _ in self.calls]


class _Enum:
    """An enum namespace whose members are their own names (what the stubs' enums hold)."""

    def __init__(self, *members: str) -> None:
        for m in members:
            setattr(self, m, m)

    def __getitem__(self, name: str) -> str:
        return name


class _Flag(int):
    pass


class FakeDims(tuple):
    """tensorrt.Dims: built from a list, indexable, sized."""

    def __new__(cls, shape=()):
        return super().__new__(cls, tuple(int(d) for d in shape))


class FakeLogger:
    WARNING = "WARNING"

    def __init__(self, level: str) -> None:
        self.level = level


class FakeLayer:
    def __init__(self, rec: Recorder, kind: str) -> None:
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "precision", None)

    def __setattr__(self, name: str, value: Any) -> None:
        self._rec.add(f"ILayer.{name}=", self.type, value)
        object.__setattr__(self, name, value)


class FakeNetwork:
    def __init__(self, rec: Recorder, flags: int) -> None:
        self._rec = rec
        self._layers = [FakeLayer(rec, k) for k in ("NORMALIZATION", "MATRIX_MULTIPLY", "SOFTMAX", "REDUCE")]

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self._layers[index]


class FakeParser:
    def __init__(self, rec: Recorder, network: FakeNetwork, logger: FakeLogger) -> None:
        self._rec = rec

    def parse_from_file(self, model: str) -> bool:
        self._rec.add("OnnxParser.parse_from_file", model)
        return True

    @property
    def num_errors(self) -> int:
        return 0

    def get_error(self, index: int) -> str:
        return ""


class FakeTimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = bytes(blob)

    def serialize(self) -> bytes:
        return b"timings:" + self.blob


class FakeProfile:
    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        self._rec.add("IOptimizationProfile.set_shape", input, tuple(min), tuple(opt), tuple(max))


class FakeConfig:
    def __init__(self, rec: Recorder, trt: FakeTensorRT) -> None:
        self._rec, self._trt = rec, trt
        self._cache: FakeTimingCache | None = None

    def set_memory_pool_limit(self, pool: str, pool_size: int) -> None:
        self._rec.add("IBuilderConfig.set_memory_pool_limit", pool, pool_size)

    def set_flag(self, flag: str) -> None:
        self._rec.add("IBuilderConfig.set_flag", flag)

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self._rec.add("IBuilderConfig.add_optimization_profile")
        return 0

    def create_timing_cache(self, serialized_timing_cache: bytes) -> FakeTimingCache:
        self._rec.add("IBuilderConfig.create_timing_cache", bytes(serialized_timing_cache))
        return FakeTimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        ok = not (cache.blob and cache.blob in self._trt.foreign_timing_caches)
        self._rec.add("IBuilderConfig.set_timing_cache", cache.blob, ignore_mismatch, ok)
        if ok:
            self._cache = cache
        return ok

    def get_timing_cache(self) -> FakeTimingCache | None:
        self._rec.add("IBuilderConfig.get_timing_cache")
        return None if self._trt.timing_cache_lost else self._cache

    @property
    def progress_monitor(self) -> Any:
        return None

    @progress_monitor.setter
    def progress_monitor(self, monitor: Any) -> None:
        self._rec.add("IBuilderConfig.progress_monitor=", monitor)


class FakeBuilder:
    def __init__(self, rec: Recorder, trt: FakeTensorRT, logger: FakeLogger) -> None:
        self._rec, self._trt = rec, trt

    def create_network(self, flags: int = 0) -> FakeNetwork:
        self._rec.add("Builder.create_network", flags)
        return FakeNetwork(self._rec, flags)

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig(self._rec, self._trt)

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile(self._rec)

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes:
        self._rec.add("Builder.build_serialized_network")
        return b"ENGINE"


class FakeRegistry:
    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    def load_library(self, plugin_path: str) -> object:
        self._rec.add("IPluginRegistry.load_library", plugin_path)
        return object()


@dataclass
class EngineSpec:
    """What a fake engine looks like: inputs {name: (dtype, (min, opt, max))}, outputs {name: (dtype, shape_fn)}.

    ``shape_fn`` maps the current input shapes {name: shape} to the output's shape.
    """

    inputs: dict
    outputs: dict
    bytes_per_element_of_memory: int = 4


class FakeContext:
    def __init__(self, rec: Recorder, engine: FakeEngine, strategy: Any) -> None:
        self._rec, self._engine = rec, engine
        self._shapes: dict[str, tuple] = {}
        rec.add("ICudaEngine.create_execution_context", strategy)

    def set_input_shape(self, name: str, shape: Any) -> bool:
        lo, _, hi = self._engine.spec.inputs[name][1]
        ok = len(shape) == len(hi) and all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True))
        self._rec.add("IExecutionContext.set_input_shape", name, tuple(shape), ok)
        if ok:
            self._shapes[name] = tuple(shape)
        return ok

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._rec.add("IExecutionContext.set_tensor_address", name)
        return True

    def get_tensor_shape(self, name: str) -> FakeDims:
        return FakeDims(self._engine.spec.outputs[name][1](self._shapes))

    def update_device_memory_size_for_shapes(self) -> int:
        size = 1
        for shape in self._shapes.values():
            n = 1
            for d in shape:
                n *= d
            size += n * self._engine.spec.bytes_per_element_of_memory
        self._rec.add("IExecutionContext.update_device_memory_size_for_shapes", size)
        return size

    def set_device_memory(self, memory: int, size: int) -> None:
        self._rec.add("IExecutionContext.set_device_memory", size)

    def execute_async_v3(self, stream_handle: int) -> bool:
        self._rec.add("IExecutionContext.execute_async_v3", stream_handle, dict(self._shapes))
        return True


class FakeEngine:
    def __init__(self, rec: Recorder, spec: EngineSpec) -> None:
        self._rec, self.spec = rec, spec
        self._names = [*spec.inputs, *spec.outputs]

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self.spec.inputs else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        return (self.spec.inputs.get(name) or self.spec.outputs[name])[0]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[FakeDims]:
        self._rec.add("ICudaEngine.get_tensor_profile_shape", name, profile_index)
        return [FakeDims(s) for s in self.spec.inputs[name][1]]

    def create_execution_context(self, strategy: Any = "STATIC") -> FakeContext:
        return FakeContext(self._rec, self, strategy)


class FakeRuntime:
    def __init__(self, rec: Recorder, trt: FakeTensorRT, logger: FakeLogger) -> None:
        self._rec, self._trt = rec, trt

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> FakeEngine:
        self._rec.add("Runtime.deserialize_cuda_engine", bytes(serialized_engine))
        return FakeEngine(self._rec, self._trt.engines[bytes(serialized_engine)])


class FakeTensorRT(types.ModuleType):
    """A ``tensorrt`` module that records. ``engines`` maps serialized bytes to an :class:`EngineSpec`;
    ``foreign_timing_caches`` holds cache blobs that ``set_timing_cache`` refuses (made on another GPU);
    ``timing_cache_lost`` makes ``get_timing_cache`` return None after the build."""

    def __init__(self, version: str = "10.3.0.30") -> None:
        super().__init__("tensorrt")
        rec = self.recorder = Recorder()
        self.__version__ = version
        self.__file__ = "<fake tensorrt>"
        self.engines: dict[bytes, EngineSpec] = {}
        self.foreign_timing_caches: set[bytes] = set()
        self.timing_cache_lost = False
        for name in ("float32", "float16", "int32", "int8", "bool", "int64", "uint8", "bfloat16"):
            setattr(self, name, name)
        self.Dims = FakeDims
        self.Logger = FakeLogger
        self.NetworkDefinitionCreationFlag = _Enum("EXPLICIT_BATCH", "STRONGLY_TYPED")
        self.NetworkDefinitionCreationFlag.STRONGLY_TYPED = _Flag(1)  # its int() is used for the bit
        self.BuilderFlag = _Enum("FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS")
        self.MemoryPoolType = _Enum("WORKSPACE")
        self.LayerType = _Enum("NORMALIZATION", "SOFTMAX", "REDUCE", "MATRIX_MULTIPLY")
        self.TensorIOMode = _Enum("INPUT", "OUTPUT")
        self.ExecutionContextAllocationStrategy = _Enum("STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED")
        registry = FakeRegistry(rec)
        trt = self

        def get_plugin_registry() -> FakeRegistry:
            rec.add("tensorrt.get_plugin_registry")
            return registry

        def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
            rec.add("tensorrt.init_libnvinfer_plugins", namespace)
            return True

        self.get_plugin_registry = get_plugin_registry
        self.init_libnvinfer_plugins = init_libnvinfer_plugins
        self.Builder = lambda logger: FakeBuilder(rec, trt, logger)
        self.OnnxParser = lambda network, logger: FakeParser(rec, network, logger)
        self.Runtime = lambda logger: FakeRuntime(rec, trt, logger)


class FakeStream:
    """A torch.cuda.Stream stand-in with a recognisable handle."""

    cuda_stream = 0x5EED

    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    def wait_stream(self, other: Any) -> None:
        self._rec.add("stream.wait_stream")

    def synchronize(self) -> None:
        self._rec.add("stream.synchronize")


#: fake class -> the tensorrt-stubs class whose API it stands for ("" = the tensorrt module itself).
FAKE_CLASSES = {
    FakeLogger: "Logger",
    FakeLayer: "ILayer",
    FakeNetwork: "INetworkDefinition",
    FakeParser: "OnnxParser",
    FakeTimingCache: "ITimingCache",
    FakeProfile: "IOptimizationProfile",
    FakeConfig: "IBuilderConfig",
    FakeBuilder: "Builder",
    FakeRegistry: "IPluginRegistry",
    FakeContext: "IExecutionContext",
    FakeEngine: "ICudaEngine",
    FakeRuntime: "Runtime",
    FakeDims: "Dims",
}


def public_methods(cls: type) -> set[str]:
    """Public names a fake class defines itself (methods and properties)."""
    return {n for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}


def public_module_names(fake: FakeTensorRT) -> set[str]:
    return {n for n in vars(fake) if not n.startswith("_") and n not in ("recorder", "engines",
                                                                         "foreign_timing_caches", "timing_cache_lost")}


class FakeTorchTensorRT(types.ModuleType):
    """A ``torch_tensorrt`` module that records compile / save / Input."""

    def __init__(self, version: str) -> None:
        super().__init__("torch_tensorrt")
        rec = self.recorder = Recorder()
        self.__version__ = version
        self.__file__ = "<fake torch_tensorrt>"

        class Input:
            def __init__(self, **kwargs: Any) -> None:
                self.kwargs = kwargs
                rec.add("torch_tensorrt.Input", **kwargs)

            def __repr__(self) -> str:
                return f"Input({self.kwargs})"

        def compile(module: Any, **kwargs: Any) -> Any:
            rec.add("torch_tensorrt.compile", module, **kwargs)
            return module

        def save(module: Any, file_path: str, **kwargs: Any) -> None:
            rec.add("torch_tensorrt.save", module, file_path, **kwargs)
            with open(file_path, "wb") as fh:
                fh.write(b"program " + file_path.encode())

        self.Input, self.compile, self.save = Input, compile, save


class FakeOnnxRuntime(types.ModuleType):
    """An ``onnxruntime`` module with the TensorRT EP available, recording sessions' providers."""

    def __init__(self) -> None:
        super().__init__("onnxruntime")
        rec = self.recorder = Recorder()
        self.__version__ = "1.23.2"
        self.__file__ = "<fake onnxruntime>"

        class SessionOptions:
            intra_op_num_threads = 0
            log_severity_level = 2

        class InferenceSession:
            def __init__(self, path: str, sess_options: Any = None, providers: Any = None) -> None:
                rec.add("InferenceSession", path, providers=providers)

        self.SessionOptions, self.InferenceSession = SessionOptions, InferenceSession
        self.get_available_providers = lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                "CPUExecutionProvider"]
