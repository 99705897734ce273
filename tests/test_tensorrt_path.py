"""The TensorRT path on recording fakes (tests/trt_fakes.py): for each defect of issue 17 the exact builder /
runtime / provider configuration the code asks TensorRT, torch-tensorrt and ONNX Runtime's TensorRT EP for.
No TensorRT is needed; the fakes' method names are checked against the tensorrt-stubs API."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch

from radseg_edge.errors import EngineError, InputError
from radseg_edge.export.cache import (
    DeviceDescription,
    EngineKey,
    format_profile,
    key_path,
    sha256_file,
    write_key,
)
from radseg_edge.export.manifest import Manifest
from tests.trt_fakes import (
    FAKE_CLASSES,
    EngineSpec,
    FakeOnnxRuntime,
    FakeStream,
    FakeTensorRT,
    FakeTorchTensorRT,
    Recorder,
    public_methods,
    public_module_names,
)
from tests.trt_stubs import STUBS_MISSING, stub_members, usable_stubs

ORIN_NANO = DeviceDescription("Orin", "8.7", 8, "10.3.0.30", "12.6", "36.4.3")
ORIN_AGX = DeviceDescription("Orin", "8.7", 16, "10.3.0.30", "12.6", "36.4.3")
C, D, K, CROP, PATCH = 8, 8, 3, 224, 16


@pytest.fixture
def trt(monkeypatch):
    fake = FakeTensorRT("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def _profiles(max_windows: int = 32, side: int = 128) -> dict:
    return {
        "backbone": {"windows": ((1, 3, CROP, CROP), (6, 3, CROP, CROP), (max_windows, 3, CROP, CROP))},
        "head": {"features": ((1, C, 1, 1), (1, C, 28, 42), (1, C, side, side)),
                 "text_embeddings": ((1, D), (32, D), (1024, D))},
    }


def _specs(profiles: dict) -> dict[bytes, EngineSpec]:
    g = CROP // PATCH
    return {
        b"BACKBONE": EngineSpec({"windows": ("float32", profiles["backbone"]["windows"])},
                                {"features": ("float32", lambda s: (s["windows"][0], C, g, g))}),
        b"HEAD": EngineSpec({"features": ("float32", profiles["head"]["features"]),
                             "text_embeddings": ("float32", profiles["head"]["text_embeddings"])},
                            {"probs": ("float32", lambda s: (1, s["text_embeddings"][0], *s["features"][2:]))}),
    }


def engine_folder(folder: Path, trt: FakeTensorRT, device: DeviceDescription = ORIN_NANO, side: int = 128,
                  plugins: tuple[Path, ...] = ()) -> Path:
    """An export folder with a backbone and a head engine (fake bytes, real key records) for ``device``."""
    folder.mkdir(parents=True, exist_ok=True)
    profiles = _profiles(side=side)
    artefacts = {}
    plugin_records = [{"file": p.relative_to(folder).as_posix(), "sha256": sha256_file(p)} for p in plugins]
    for role, blob in (("backbone", b"BACKBONE"), ("head", b"HEAD")):
        onnx = folder / f"{role}.fp16.onnx"
        onnx.write_bytes(f"{role} onnx".encode())
        engine = folder / f"{role}.fp16.engine"
        engine.write_bytes(blob)
        write_key(engine, EngineKey.create(device, "fp16", onnx, profiles[role], plugins))
        artefacts[f"{role}_engine"] = {"file": engine.name, "sha256": sha256_file(engine), "onnx": onnx.name, "precision": "fp16",
                                       "shape_profile": format_profile(profiles[role]), "plugins": plugin_records}
    Manifest(format="engine-fp16", precision="fp16", model={"embed_dim": C}, vocabulary={"dim": D},
             windows={"crop": CROP, "stride": CROP, "patch": PATCH}, artefacts=artefacts).write(folder)
    trt.engines.update(_specs(profiles))
    return folder


def tensorrt_backend(folder: Path, trt: FakeTensorRT, device: DeviceDescription = ORIN_NANO):
    from radseg_edge.backends.tensorrt import EngineRunner, TensorRTBackend

    return TensorRTBackend(folder, device_description=device,
                           runner=lambda blob: EngineRunner(blob, device="cpu", stream=FakeStream(trt.recorder)))


BIG_IMAGE = torch.zeros(1, 3, 1344, 2688)  # 6 x 12 = 72 windows of 224, an 84 x 168 feature map


@pytest.mark.parametrize("version", ["10.3.0.30", "11.0.0"])
def test_build_engine_configures_the_builder_from_the_plan(version, tmp_path, monkeypatch):
    from radseg_edge.export.engine import build_engine, plan_build

    fake = FakeTensorRT(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx = tmp_path / "backbone.fp16.onnx"
    onnx.write_bytes(b"onnx")
    profile = _profiles()["backbone"]
    engine = build_engine(onnx, plan_build(version, "fp16", workspace_mib=256), profile,
                          timing_cache=tmp_path / "timing.cache", progress=False)
    rec = fake.recorder
    assert engine == b"ENGINE" and rec.of("OnnxParser.parse_from_file") == [((str(onnx),), {})]
    assert rec.of("IBuilderConfig.set_memory_pool_limit") == [(("WORKSPACE", 256 * 2**20), {})]
    assert rec.of("IOptimizationProfile.set_shape") == [(("windows", *profile["windows"]), {})]
    assert rec.of("Builder.create_network") == [((1 << 1,), {})] and rec.of("IBuilderConfig.set_flag") == []
    assert (tmp_path / "timing.cache").read_bytes() == b"timings:"


# -- 1. window batches chunked to the profile; a map beyond the head profile refused; set_input_shape checked ----
def test_1_window_batches_are_chunked_to_the_backbone_profile_and_a_too_large_map_is_refused(tmp_path, trt):
    backend = tensorrt_backend(engine_folder(tmp_path / "e", trt), trt)
    text = torch.randn(K, D)
    with pytest.raises(InputError, match=r"84x168 feature map.*at most 128x128.*--max-image-side 2688"):
        backend(BIG_IMAGE, text)
    windows = [a for a, _ in trt.recorder.of("IExecutionContext.set_input_shape") if a[0] == "windows"]
    assert [(a[1][0], a[2]) for a in windows] == [(32, True), (32, True), (8, True)]
    assert ("ICudaEngine.get_tensor_profile_shape") in trt.recorder.names()


def test_1_a_map_within_the_head_profile_runs_and_an_out_of_profile_shape_is_an_error(tmp_path, trt):
    backend = tensorrt_backend(engine_folder(tmp_path / "e", trt, side=256), trt)
    out = backend(BIG_IMAGE, torch.randn(K, D))
    assert out.probs.shape == (1, K, 1344, 2688) and out.features.shape == (1, C, 84, 168)
    head = [a for a, _ in trt.recorder.of("IExecutionContext.set_input_shape") if a[0] == "features"]
    assert head == [("features", (1, C, 84, 168), True)]
    with pytest.raises(EngineError, match=r"'windows' of shape \(40, 3, 224, 224\) is outside the engine's profile"):
        backend.runners["backbone_engine"](windows=torch.zeros(40, 3, CROP, CROP))


# -- 2. execution context memory per actual shape ----------------------------------------------------------------------
def test_2_context_memory_is_user_managed_and_sized_for_the_actual_shapes(tmp_path, trt):
    backend = tensorrt_backend(engine_folder(tmp_path / "e", trt, side=256), trt)
    strategies = [a[0] for a, _ in trt.recorder.of("ICudaEngine.create_execution_context")]
    assert strategies == ["USER_MANAGED", "USER_MANAGED"]
    runner = backend.runners["backbone_engine"]
    trt.recorder.calls.clear()
    runner(windows=torch.zeros(32, 3, CROP, CROP))
    runner(windows=torch.zeros(2, 3, CROP, CROP))
    names = trt.recorder.names()
    # memory is sized after the shapes are set and before execution, every call
    assert names.index("IExecutionContext.update_device_memory_size_for_shapes") > names.index(
        "IExecutionContext.set_input_shape")
    sizes = [a[0] for a, _ in trt.recorder.of("IExecutionContext.update_device_memory_size_for_shapes")]
    given = [a[0] for a, _ in trt.recorder.of("IExecutionContext.set_device_memory")]
    assert given == sizes and sizes[0] > sizes[1]  # 32 windows need more than 2


# -- 3. a dedicated CUDA stream ------------------------------------------------------------------------------------------
def test_3_engines_run_on_their_own_stream_not_the_default_one(tmp_path, trt):
    backend = tensorrt_backend(engine_folder(tmp_path / "e", trt, side=256), trt)
    backend(torch.zeros(1, 3, 224, 448), torch.randn(K, D))
    handles = [a[0] for a, _ in trt.recorder.of("IExecutionContext.execute_async_v3")]
    assert handles and all(h == FakeStream.cuda_stream != 0 for h in handles)
    assert trt.recorder.names().count("stream.synchronize") == len(handles)


# -- 4. timing caches keyed by device and checked ---------------------------------------------------------------------
def test_4_timing_cache_from_another_gpu_is_replaced_and_a_missing_cache_does_not_crash(tmp_path, trt):
    from radseg_edge.export.cache import timing_cache_path
    from radseg_edge.export.engine import build_engine, plan_build

    assert timing_cache_path(tmp_path, ORIN_NANO) != timing_cache_path(tmp_path, ORIN_AGX)
    cache = timing_cache_path(tmp_path, ORIN_NANO)
    cache.write_bytes(b"agx timings")
    trt.foreign_timing_caches.add(b"agx timings")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    build_engine(onnx, plan_build("10.3.0.30", "fp16", "fp16"), timing_cache=cache, progress=False)
    sets = [(a[0], a[2]) for a, _ in trt.recorder.of("IBuilderConfig.set_timing_cache")]
    assert sets == [(b"agx timings", False), (b"", True)]
    assert [a[1] for a, _ in trt.recorder.of("IBuilderConfig.set_timing_cache")] == [False, False]  # never ignore
    assert cache.read_bytes() == b"timings:"  # the fresh cache replaced the foreign one
    trt.timing_cache_lost = True
    build_engine(onnx, plan_build("10.3.0.30", "fp16", "fp16"), timing_cache=cache, progress=False)
    assert cache.read_bytes() == b"timings:"


# -- 5. FP16 on TensorRT 10.x: strongly typed from the fp16 ONNX, with fp32 similarity islands ---------------------------
def test_5_fp16_on_tensorrt_10_is_strongly_typed_without_weak_precision_flags(tmp_path, trt):
    from radseg_edge.export.engine import build_engine, plan_build

    plan = plan_build("10.3.0.30", "fp16")
    assert plan.strongly_typed and plan.onnx_kind == "fp16" and plan.builder_flags == ()
    with pytest.raises(EngineError, match="fp16-converted ONNX"):
        plan_build("10.3.0.30", "fp16", "fp32")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    build_engine(onnx, plan, progress=False)
    assert trt.recorder.of("Builder.create_network") == [((1 << 1,), {})]  # STRONGLY_TYPED = 1
    assert trt.recorder.of("IBuilderConfig.set_flag") == []
    assert not [n for n in trt.recorder.names() if n.startswith("ILayer.")]  # no per-layer precision on typed nets


class _SimilarityHead(torch.nn.Module):
    def forward(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        from radseg_edge.export import ops

        return ops.class_probabilities_export(ops.scga_export(features), text)


def test_5_fp16_conversion_keeps_similarities_norms_and_their_thresholds_in_fp32(tmp_path):
    onnx = pytest.importorskip("onnx")
    from radseg_edge.export.fp16 import fp32_island_nodes

    path = tmp_path / "head.onnx"
    with torch.no_grad():
        torch.onnx.export(_SimilarityHead(), (torch.randn(1, 8, 3, 4), torch.randn(5, 8)), str(path),
                          input_names=["features", "text"], dynamo=True, opset_version=18, verbose=False)
    model = onnx.load(str(path))
    keep = set(fp32_island_nodes(model))
    by_name = {n.name: n for n in model.graph.node}
    kept_ops = sorted(by_name[n].op_type for n in keep)
    assert kept_ops.count("MatMul") == 2  # SCGA's similarity and the cosine logits (not weights x values)
    assert kept_ops.count("ReduceL2") == 3 and kept_ops.count("Softmax") == 2
    assert {"ReduceMean", "Less", "Where"} <= set(kept_ops)  # the SCGA threshold decision


# -- 6. keys on every load path: plugins, ORT TRT cache, torch-tensorrt ------------------------------------------------
def test_6_plugin_libraries_are_copied_hashed_keyed_and_loaded_through_the_registry_first(tmp_path, trt, monkeypatch):
    from radseg_edge.export import build as build_module
    from radseg_edge.export import cache as cache_module
    from radseg_edge.export.cache import timing_cache_path

    monkeypatch.setattr(cache_module, "describe_device", lambda: ORIN_NANO)
    folder = tmp_path / "export"
    folder.mkdir()
    for role in ("backbone", "head"):
        (folder / f"{role}.fp16.onnx").write_bytes(f"{role} onnx".encode())
    Manifest(format="onnx-fp16", precision="fp16", model={"embed_dim": C}, vocabulary={"dim": D},
             windows={"crop": CROP, "stride": CROP, "patch": PATCH},
             artefacts={r: {"file": f"{r}.fp16.onnx", "kind": "fp16"} for r in ("backbone", "head")}).write(folder)
    plugin = tmp_path / "build" / "libradseg_trt_plugin.so"
    plugin.parent.mkdir()
    plugin.write_bytes(b"plugin v1")
    manifest = build_module.build_folder_engines(folder, "fp16", progress=False, plugin_libraries=[plugin])
    names = trt.recorder.names()
    assert names.index("IPluginRegistry.load_library") < names.index("OnnxParser.parse_from_file")
    loaded = {a[0] for a, _ in trt.recorder.of("IPluginRegistry.load_library")}
    assert loaded == {str((folder / "plugins" / plugin.name).resolve())}
    record = manifest.artefacts["backbone_engine"]["plugins"]
    assert record == [{"file": "plugins/libradseg_trt_plugin.so", "sha256": sha256_file(plugin)}]
    import json

    key = json.loads(key_path(folder / "backbone.fp16.engine").read_text())
    assert key["plugin_sha256"] == [sha256_file(plugin)]
    assert timing_cache_path(folder, ORIN_NANO).exists()


def test_6_the_tensorrt_backend_loads_plugins_before_deserializing_and_refuses_a_changed_plugin(tmp_path, trt):
    folder = tmp_path / "e"
    (folder / "plugins").mkdir(parents=True)
    plugin = folder / "plugins" / "libradseg_trt_plugin.so"
    plugin.write_bytes(b"plugin v1")
    engine_folder(folder, trt, plugins=(plugin,))
    tensorrt_backend(folder, trt)
    names = trt.recorder.names()
    assert names.index("IPluginRegistry.load_library") < names.index("Runtime.deserialize_cuda_engine")
    plugin.write_bytes(b"plugin v2")
    with pytest.raises(EngineError, match="refusing engine .*plugin_sha256"):
        tensorrt_backend(folder, trt)


def test_6_an_engine_of_another_orin_is_refused_by_the_tensorrt_backend(tmp_path, trt):
    folder = engine_folder(tmp_path / "e", trt, device=ORIN_AGX)
    with pytest.raises(EngineError, match=r"device\.sm_count: engine has 16, this machine needs 8"):
        tensorrt_backend(folder, trt, ORIN_NANO)
    assert "Runtime.deserialize_cuda_engine" not in trt.recorder.names()


def _onnx_folder(folder: Path, kind: str, precision: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    profiles = _profiles()
    artefacts = {}
    for role in ("backbone", "head"):
        (folder / f"{role}.onnx").write_bytes(f"{role} {kind}".encode())
        artefacts[role] = {"file": f"{role}.onnx", "sha256": sha256_file(folder / f"{role}.onnx"),
                           "kind": kind if role == "backbone" else "fp32",
                           "profile": profiles[role], "max_windows": 32}
    Manifest(format=f"onnx-{precision}", precision=precision, model={"embed_dim": C}, vocabulary={"dim": D},
             windows={"crop": CROP, "stride": CROP, "patch": PATCH}, artefacts=artefacts).write(folder)
    return folder


def _trt_ep_options(folder: Path, monkeypatch, device: DeviceDescription, role: str = "backbone") -> dict:
    fake = FakeOnnxRuntime()
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    from radseg_edge.backends.onnxruntime import OnnxRuntimeBackend

    OnnxRuntimeBackend(folder, providers="tensorrt", device_description=lambda: device).session(role)
    (args, kwargs), = fake.recorder.of("InferenceSession")
    providers = kwargs["providers"]
    assert providers[0][0] == "TensorrtExecutionProvider" and providers[-1] == "CPUExecutionProvider"
    return providers[0][1]


def test_6_onnxruntime_tensorrt_engine_cache_lives_in_a_folder_named_by_the_device_key(tmp_path, monkeypatch):
    folder = _onnx_folder(tmp_path / "o", "fp32", "fp32")
    nano = _trt_ep_options(folder, monkeypatch, ORIN_NANO)
    agx = _trt_ep_options(folder, monkeypatch, ORIN_AGX)
    assert nano["trt_engine_cache_enable"] is True
    assert Path(nano["trt_engine_cache_path"]).parent == folder / "ort_trt_cache"
    assert nano["trt_engine_cache_path"] != agx["trt_engine_cache_path"]


def test_6_torch_tensorrt_programs_get_key_records_and_a_foreign_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", FakeTorchTensorRT("2.5.0"))
    from radseg_edge.backends.torch_tensorrt import TorchTensorRTBackend
    from radseg_edge.export.torch_trt import program_key

    folder = tmp_path / "t"
    folder.mkdir()
    profile = _profiles()["backbone"]
    program = folder / "backbone.trt.pt2"
    program.write_bytes(b"program")
    write_key(program, program_key("fp16", profile, ORIN_AGX))
    Manifest(format="torch-tensorrt", precision="fp16", model={}, vocabulary={}, windows={"crop": CROP, "stride": CROP},
             artefacts={"backbone_trt": {"file": program.name, "sha256": sha256_file(program), "precision": "fp16",
                                         "shape_profile": format_profile(profile)}}).write(folder)
    loaded = []
    TorchTensorRTBackend(folder, device_description=ORIN_AGX, load=loaded.append)
    assert loaded == [program]
    with pytest.raises(EngineError, match=r"refusing engine backbone\.trt\.pt2.*sm_count"):
        TorchTensorRTBackend(folder, device_description=ORIN_NANO, load=loaded.append)


# -- 7. torch-tensorrt: dynamic save, precision by version, clear errors ------------------------------------------------
class _CudaFreeModule(torch.nn.Module):
    def cuda(self, device=None):  # CPU torch: nothing to move
        return self


@pytest.mark.parametrize("version, expected", [
    ("2.5.0", {"enabled_precisions": {torch.float16, torch.float32}}),
    ("2.8.0+cu126", {"enabled_precisions": {torch.float16, torch.float32}}),
    ("2.9.0", {"use_explicit_typing": False, "enabled_precisions": {torch.float16, torch.float32}}),
    ("2.10.0", {"use_explicit_typing": True, "enable_autocast": True, "low_precision_type": torch.float16}),
])
def test_7_torch_tensorrt_saves_dynamic_inputs_and_picks_the_precision_option_by_version(
        version, expected, tmp_path, monkeypatch):
    fake = FakeTorchTensorRT(version)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from radseg_edge.export.torch_trt import compile_module

    win = ((1, 3, 64, 64), (6, 3, 64, 64), (32, 3, 64, 64))
    compile_module(_CudaFreeModule(), [torch.zeros(6, 3, 64, 64)], tmp_path / "b.pt2", "fp16", ranges={0: win})
    (cargs, ckw), = fake.recorder.of("torch_tensorrt.compile")
    (sargs, skw), = fake.recorder.of("torch_tensorrt.save")
    assert "inputs" not in skw and skw["output_format"] == "exported_program"
    spec, = skw["arg_inputs"]
    assert spec.kwargs == {"min_shape": win[0], "opt_shape": win[1], "max_shape": win[2], "dtype": torch.float32}
    assert ckw["arg_inputs"] == skw["arg_inputs"] and ckw["ir"] == "dynamo"
    assert {k: v for k, v in ckw.items() if k not in ("ir", "arg_inputs")} == expected


def test_7_torch_tensorrt_export_asks_only_for_what_it_needs_and_imgsz_without_vocab_is_one_sentence(monkeypatch):
    from radseg_edge.export import build as build_module

    monkeypatch.setitem(sys.modules, "torch_tensorrt", FakeTorchTensorRT("2.5.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = []
    real = build_module.require

    def recording_require(module, extra, purpose):
        asked.append(module)
        return real(module, extra, purpose)

    monkeypatch.setattr(build_module, "require", recording_require)
    build_module.check_feasible("torch-tensorrt")
    assert "onnx" not in asked and "onnxruntime" not in asked
    with pytest.raises(InputError, match="--imgsz .* give --vocab"):
        build_module.export_model(types.SimpleNamespace(), "torch-tensorrt", "unused",
                                  options=build_module.ExportOptions(imgsz=(64, 64)))


# -- 8. ONNX Runtime TensorRT EP options -----------------------------------------------------------------------------
def test_8_onnxruntime_tensorrt_ep_gets_shape_ranges_and_the_right_precision_switches(tmp_path, monkeypatch):
    fp32 = _trt_ep_options(_onnx_folder(tmp_path / "a", "fp32", "fp32"), monkeypatch, ORIN_NANO)
    assert fp32["trt_profile_min_shapes"] == f"windows:1x3x{CROP}x{CROP}"
    assert fp32["trt_profile_opt_shapes"] == f"windows:6x3x{CROP}x{CROP}"
    assert fp32["trt_profile_max_shapes"] == f"windows:32x3x{CROP}x{CROP}"
    assert "trt_fp16_enable" not in fp32 and "trt_int8_enable" not in fp32
    head = _trt_ep_options(_onnx_folder(tmp_path / "a", "fp32", "fp32"), monkeypatch, ORIN_NANO, role="head")
    assert head["trt_profile_max_shapes"] == f"features:1x{C}x128x128,text_embeddings:1024x{D}"
    fp16 = _trt_ep_options(_onnx_folder(tmp_path / "b", "fp16", "fp16"), monkeypatch, ORIN_NANO)
    assert "trt_fp16_enable" not in fp16  # an fp16 graph keeps its own types (and its fp32 islands)
    int8 = _trt_ep_options(_onnx_folder(tmp_path / "c", "qdq", "int8"), monkeypatch, ORIN_NANO)
    assert int8["trt_int8_enable"] is True and "trt_fp16_enable" not in int8


# -- 9. ModelOpt AutoCast's magnitude guard stays on -----------------------------------------------------------------
def test_9_fp16_conversion_keeps_autocast_magnitude_guard_finite(tmp_path, monkeypatch):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from radseg_edge.export import fp16

    graph = helper.make_graph([helper.make_node("Cast", ["frame"], ["x"], to=TensorProto.FLOAT)], "g",
                              [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 4, 6, 3])],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 3])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    rec = Recorder()

    def convert(onnx_path, **kw):
        data = np.load(kw["calibration_data"])  # what the magnitude check runs on
        rec.add("convert_to_mixed_precision", onnx_path, frame=data["frame"], **kw)

    autocast = types.ModuleType("modelopt.onnx.autocast")
    autocast.__file__ = "<fake autocast>"
    autocast.convert_to_mixed_precision = convert
    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", autocast)
    fp16._convert_modelopt(path, ["node_matmul"])
    (_, kw), = rec.of("convert_to_mixed_precision")
    assert math.isfinite(kw["data_max"]) and kw["data_max"] == fp16.DATA_MAX <= 65504
    assert kw["frame"].dtype == np.uint8 and kw["frame"].shape == (1, 4, 6, 3)  # valid inputs for the check
    assert {"Pow", "Sqrt", "ReduceL2"} <= set(kw["op_types_to_exclude"]) and kw["nodes_to_exclude"] == ["node_matmul"]


# -- the fakes follow the real API ----------------------------------------------------------------------------------
def test_the_fakes_only_use_names_the_tensorrt_api_has():
    if usable_stubs() is None:
        pytest.skip(STUBS_MISSING)
    for fake, stub in FAKE_CLASSES.items():
        missing = public_methods(fake) - stub_members(stub)
        assert not missing, f"{fake.__name__} has {sorted(missing)}, which tensorrt.{stub} lacks"
    module = FakeTensorRT()
    assert public_module_names(module) <= stub_members(""), public_module_names(module) - stub_members("")
    for enum in ("NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "LayerType", "TensorIOMode",
                 "ExecutionContextAllocationStrategy"):
        members = {m for m in vars(getattr(module, enum)) if not m.startswith("_")}
        assert members <= stub_members(enum), (enum, members - stub_members(enum))
