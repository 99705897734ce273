"""TensorRT engine builds from the exported ONNX graphs.

The build path depends on the installed TensorRT (EDGE.md, "TensorRT versions that matter"):

- FP16 (TensorRT 10.x and 11+): a *strongly typed* network from the fp16-converted ONNX, whose fp32
  islands (:mod:`radseg_edge.export.fp16`) hold LayerNorm, softmax, every square / norm and the SCRA /
  SCGA similarities. (Weak typing with builder flags is deprecated since TensorRT 10.12 and let
  TensorRT run the similarity MatMuls and the squares inside ReduceL2 in fp16.)
- INT8 on TensorRT 10.x (JetPack 6 ships 10.3): a weakly typed network with INT8 + FP16 builder flags
  and a Q/DQ ONNX (explicit quantization, no calibrator); LayerNorm, softmax and reductions are pinned
  to fp32 with precision constraints.
- TensorRT 11+: the FP16/INT8 builder flags and the legacy calibrators are gone; every network is
  strongly typed: precision comes from the ONNX itself (fp16-converted or Q/DQ).

Plugin libraries (the ``RadsegScga`` plugin) are loaded through TensorRT's plugin registry
(``get_plugin_registry().load_library``, which registers IPluginV3 creators; ``ctypes.CDLL`` does not)
before the ONNX is parsed, and likewise before an engine is deserialized (:func:`load_plugin_libraries`).

:func:`plan_build` makes that choice from a version string and is pure (tested without TensorRT);
:func:`build_engine` carries a plan out with the TensorRT Python API, imported lazily.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from radseg_edge.errors import EngineError, MissingDependencyError, require
from radseg_edge.export.plugin import existing_plugin_library

if TYPE_CHECKING:
    import tensorrt

PRECISIONS = ("fp32", "fp16", "int8")

#: ONNX variants an engine can be built from (see radseg_edge.export.onnx / fp16 / quantize).
ONNX_KINDS = ("fp32", "fp16", "qdq")

#: TensorRT layer types kept in fp32 under the weakly typed FP16/INT8 flags.
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")


def ensure_tensorrt(purpose: str) -> str:
    """Check that the real TensorRT Python package is importable; returns its version.

    Raises:
        MissingDependencyError: tensorrt is absent, or only a namespace without the library is (e.g. the
            ``tensorrt-stubs`` type stubs), with the pip extra to install.
    """
    module = require("tensorrt", "trt", purpose)
    version = getattr(module, "__version__", None)
    if version is None:
        raise MissingDependencyError(
            f"{purpose} needs the TensorRT Python package; 'tensorrt' here is only a namespace (type stubs?) "
            "without the library: pip install 'radseg-edge[trt]' (on Jetson: the JetPack python3-libnvinfer)"
        )
    return str(version)


def load_plugin_libraries(libraries: Sequence[str | os.PathLike], registry: tensorrt.IPluginRegistry | None = None) -> list:
    """Load TensorRT plugin libraries through the plugin registry (before parsing or deserializing).

    Args:
        libraries: paths of shared libraries exporting plugin creators (e.g. libradseg_trt_plugin.so).
        registry: the registry to load into (default: ``tensorrt.get_plugin_registry()``).
    Returns:
        the library handles (keep them alive as long as engines use the plugins).
    Raises:
        EngineError: a library that does not exist or that TensorRT could not load.
    """
    import tensorrt as trt

    handles = []
    for lib in libraries:
        path = existing_plugin_library(lib)
        reg = registry if registry is not None else trt.get_plugin_registry()
        handle = reg.load_library(str(path.resolve()))
        if handle is None:
            raise EngineError(f"TensorRT could not load the plugin library {path} (see the log above)")
        handles.append(handle)
    return handles


def parse_version(version: str) -> tuple[int, int]:
    """"10.3.0.30" -> (10, 3)."""
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError as exc:
        raise EngineError(f"cannot read the TensorRT version {version!r}") from exc


@dataclass(frozen=True)
class BuildPlan:
    """How to configure a TensorRT build (names are TensorRT enum members, resolved at build time)."""

    tensorrt: tuple[int, int]
    precision: str
    onnx_kind: str
    strongly_typed: bool
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    fp32_layer_types: tuple[str, ...]
    workspace_bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)


def required_onnx_kind(tensorrt_version: str, precision: str) -> str:
    """Which ONNX variant a build of ``precision`` needs with this TensorRT: "fp32", "fp16" or "qdq"."""
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    major, _ = parse_version(tensorrt_version)
    if major < 10:
        raise EngineError(f"TensorRT {tensorrt_version} is too old: radseg-edge needs TensorRT >= 10.3 (JetPack 6)")
    if precision == "int8":
        return "qdq"
    if precision == "fp16":
        return "fp16"
    return "fp32"


def plan_build(tensorrt_version: str, precision: str, onnx_kind: str | None = None, workspace_mib: int = 1024) -> BuildPlan:
    """Choose network/builder flags for ``precision`` with the given TensorRT version.

    Args:
        tensorrt_version: ``tensorrt.__version__`` (e.g. "10.3.0.30", "11.0.0").
        precision: "fp32", "fp16" or "int8".
        onnx_kind: the ONNX variant at hand ("fp32", "fp16" converted, "qdq" quantized); default: the
            one this version needs (:func:`required_onnx_kind`).
        workspace_mib: builder workspace limit in MiB (keep it small on Orin Nano: 256-1024).
    Raises:
        EngineError: TensorRT older than 10, or an ONNX variant that cannot give ``precision``.
    """
    major, minor = parse_version(tensorrt_version)
    if major < 10:
        raise EngineError(f"TensorRT {tensorrt_version} is too old: radseg-edge needs TensorRT >= 10.3 (JetPack 6)")
    needed = required_onnx_kind(tensorrt_version, precision)
    onnx_kind = onnx_kind or needed
    if onnx_kind not in ONNX_KINDS:
        raise EngineError(f"unknown ONNX kind {onnx_kind!r}; expected one of {', '.join(ONNX_KINDS)}")
    workspace = int(workspace_mib) * (1 << 20)
    if precision == "int8" and onnx_kind != "qdq":
        raise EngineError("an INT8 engine is built from a Q/DQ ONNX: run `radseg-edge export --format onnx-int8` first")
    if major >= 11 or precision != "int8":
        if onnx_kind != needed:
            raise EngineError(
                f"with TensorRT {tensorrt_version} a {precision} engine is a strongly typed network and needs the "
                f"{'fp16-converted' if needed == 'fp16' else needed} ONNX, got the {onnx_kind} one"
            )
        return BuildPlan(
            tensorrt=(major, minor),
            precision=precision,
            onnx_kind=onnx_kind,
            strongly_typed=True,
            network_flags=("STRONGLY_TYPED",),
            builder_flags=(),
            fp32_layer_types=(),
            workspace_bytes=workspace,
            notes=(f"TensorRT {major}.{minor}: strongly typed build of the {onnx_kind} ONNX (precision comes from "
                   "the ONNX, fp32 islands included)",),
        )
    return BuildPlan(
        tensorrt=(major, minor),
        precision=precision,
        onnx_kind=onnx_kind,
        strongly_typed=False,
        network_flags=(),
        builder_flags=("INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"),
        fp32_layer_types=FP32_LAYER_TYPES,
        workspace_bytes=workspace,
        notes=(f"TensorRT {major}.{minor}: weakly typed INT8 network with builder precision flags",
               "explicit quantization from the Q/DQ nodes (no calibrator)"),
    )


def _progress_monitor(print_fn=print) -> tensorrt.IProgressMonitor:
    """A ``tensorrt.IProgressMonitor`` that prints phase starts and steps (TensorRT >= 10)."""
    import tensorrt as trt

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._start = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            indent = "  " if parent_phase else ""
            print_fn(f"[{time.perf_counter() - self._start:7.1f}s] {indent}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Monitor()


def _attach_timing_cache(config: tensorrt.IBuilderConfig, path: Path) -> tensorrt.ITimingCache:
    """Read the timing cache at ``path`` into ``config``; a cache TensorRT refuses (another GPU or version)
    is discarded with a warning and the build starts from an empty one."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        print(f"warning: TensorRT refused the timing cache {path} (made on another GPU or TensorRT version); "
              "starting from an empty one", file=sys.stderr)
        cache = config.create_timing_cache(b"")
        if config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    raise EngineError(f"TensorRT could not use a timing cache for {path}; delete it or build without a timing cache")


def build_engine(
    onnx_path: str | os.PathLike,
    plan: BuildPlan,
    shape_profile: Mapping[str, Sequence[Sequence[int]]] | None = None,
    timing_cache: str | os.PathLike | None = None,
    plugin_libraries: Sequence[str | os.PathLike] = (),
    progress: bool = True,
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file following ``plan``.

    Args:
        onnx_path: the ONNX variant the plan expects.
        shape_profile: {input name: (min, opt, max) shapes} for dynamic inputs (e.g. the window batch).
        timing_cache: file to read and update with kernel timings (faster rebuilds); name it per device
            (:func:`radseg_edge.export.cache.timing_cache_path`). A cache TensorRT refuses is replaced.
        plugin_libraries: shared libraries with TensorRT plugins, loaded through the plugin registry
            before parsing.
    Returns:
        the serialized engine bytes (store them with :class:`radseg_edge.export.cache.EngineCache`).
    """
    ensure_tensorrt("building TensorRT engines")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    load_plugin_libraries(plugin_libraries)
    builder = trt.Builder(logger)
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.fp32_layer_types:
        pinned = {getattr(trt.LayerType, t) for t in plan.fp32_layer_types}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in pinned:
                layer.precision = trt.float32
    if shape_profile:
        profile = builder.create_optimization_profile()
        for name, (smin, sopt, smax) in shape_profile.items():
            profile.set_shape(name, trt.Dims([int(d) for d in smin]), trt.Dims([int(d) for d in sopt]),
                              trt.Dims([int(d) for d in smax]))
        config.add_optimization_profile(profile)
    if timing_cache is not None:
        _attach_timing_cache(config, Path(timing_cache))
    if progress and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    if timing_cache is not None:
        final = config.get_timing_cache()
        if final is not None:
            tmp = Path(str(timing_cache) + ".tmp")
            tmp.write_bytes(bytes(final.serialize()))
            os.replace(tmp, timing_cache)
    return bytes(serialized)
