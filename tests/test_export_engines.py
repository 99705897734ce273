"""Engine cache keys and refusal of engines built for another machine (devices are described, not probed),
TensorRT build configuration chosen from the TensorRT version (mocked), and clear messages when tensorrt /
torch_tensorrt are missing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from radseg_edge.errors import EngineError, InputError, MissingDependencyError, importable
from radseg_edge.export.cache import (
    DeviceDescription,
    EngineCache,
    EngineKey,
    format_profile,
    key_path,
    read_l4t_release,
    verify_engine,
    write_key,
)
from radseg_edge.export.engine import build_engine, plan_build, required_onnx_kind

ORIN_NANO = DeviceDescription("Orin", "8.7", 8, "10.3.0.30", "12.6", "36.4.3")
ORIN_AGX = DeviceDescription("Orin", "8.7", 16, "10.3.0.30", "12.6", "36.4.3")
RTX_4090 = DeviceDescription("NVIDIA GeForce RTX 4090", "8.9", 128, "10.13.0.35", "12.9", "")
PROFILE = {"windows": ((1, 3, 336, 336), (6, 3, 336, 336), (32, 3, 336, 336))}

HAS_TRT = importable("tensorrt")
HAS_TORCH_TRT = importable("torch_tensorrt")


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "backbone.onnx"
    path.write_bytes(b"pretend onnx bytes")
    return path


def _engine(tmp_path, key, content=b"serialized engine"):
    path = tmp_path / "backbone.fp16.engine"
    path.write_bytes(content)
    write_key(path, key)
    return path


def test_key_covers_device_versions_precision_profile_and_hashes(onnx_file, tmp_path):
    plugin = tmp_path / "libplugin.so"
    plugin.write_bytes(b"plugin v1")
    key = EngineKey.create(ORIN_NANO, "fp16", onnx_file, PROFILE, [plugin])
    record = key.as_dict()
    assert record["device.gpu_name"] == "Orin" and record["device.sm"] == "8.7" and record["device.sm_count"] == 8
    assert record["device.tensorrt"] == "10.3.0.30" and record["device.cuda"] == "12.6" and record["device.l4t"] == "36.4.3"
    assert record["shape_profile"] == format_profile(PROFILE) == "windows:1x3x336x336/6x3x336x336/32x3x336x336"
    assert len(record["onnx_sha256"]) == 64 and len(record["plugin_sha256"]) == 1
    variants = [
        replace(key, device=ORIN_AGX),
        replace(key, device=replace(ORIN_NANO, tensorrt="10.7.0")),
        replace(key, device=replace(ORIN_NANO, cuda="12.8")),
        replace(key, device=replace(ORIN_NANO, l4t="36.3.0")),
        replace(key, precision="int8"),
        replace(key, shape_profile="static"),
        replace(key, onnx_sha256="0" * 64),
        replace(key, plugin_sha256=()),
    ]
    digests = {key.digest()} | {v.digest() for v in variants}
    assert len(digests) == len(variants) + 1
    plugin.write_bytes(b"plugin v2")  # a rebuilt plugin library changes the key
    assert EngineKey.create(ORIN_NANO, "fp16", onnx_file, PROFILE, [plugin]).digest() != key.digest()


def test_engine_built_on_orin_agx_is_refused_on_orin_nano_with_the_differences(onnx_file, tmp_path):
    engine = _engine(tmp_path, EngineKey.create(ORIN_AGX, "fp16", onnx_file, PROFILE))
    nano_key = EngineKey.create(ORIN_NANO, "fp16", onnx_file, PROFILE)
    with pytest.raises(EngineError, match=r"refusing engine .*device\.sm_count: engine has 16, this machine needs 8"):
        verify_engine(engine, nano_key)
    verify_engine(engine, EngineKey.create(ORIN_AGX, "fp16", onnx_file, PROFILE))  # the right machine accepts it


def test_engine_is_refused_for_another_onnx_precision_or_tensorrt(onnx_file, tmp_path):
    key = EngineKey.create(RTX_4090, "fp16", onnx_file, PROFILE)
    engine = _engine(tmp_path, key)
    with pytest.raises(EngineError, match="precision"):
        verify_engine(engine, replace(key, precision="int8"))
    with pytest.raises(EngineError, match="device.tensorrt"):
        verify_engine(engine, replace(key, device=replace(RTX_4090, tensorrt="11.0.0")))
    onnx_file.write_bytes(b"re-exported onnx")
    with pytest.raises(EngineError, match="onnx_sha256"):
        verify_engine(engine, EngineKey.create(RTX_4090, "fp16", onnx_file, PROFILE))


def test_engine_without_record_or_modified_after_build_is_refused(onnx_file, tmp_path):
    key = EngineKey.create(RTX_4090, "fp16", onnx_file, PROFILE)
    engine = _engine(tmp_path, key)
    engine.write_bytes(b"tampered engine")
    with pytest.raises(EngineError, match="changed after it was built"):
        verify_engine(engine, key)
    key_path(engine).unlink()
    with pytest.raises(EngineError, match="no key record"):
        verify_engine(engine, key)
    with pytest.raises(EngineError, match="does not exist"):
        verify_engine(tmp_path / "missing.engine", key)


def test_engine_cache_stores_looks_up_and_refuses_a_copied_record(onnx_file, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    key = EngineKey.create(ORIN_NANO, "fp16", onnx_file, PROFILE)
    assert cache.lookup("backbone", key) is None
    path = cache.store("backbone", key, b"engine bytes")
    assert cache.lookup("backbone", key) == path
    assert path.name.startswith("backbone-fp16-") and key_path(path).is_file()
    # someone copies an AGX record over the Nano one: the recorded key no longer matches
    record = json.loads(key_path(path).read_text())
    record["device.sm_count"] = 16
    key_path(path).write_text(json.dumps(record))
    with pytest.raises(EngineError, match="sm_count"):
        cache.lookup("backbone", key)


def test_l4t_release_is_read_from_nv_tegra_release(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    assert read_l4t_release(f) == "36.4.3"
    assert read_l4t_release(tmp_path / "absent") == ""


@pytest.mark.parametrize(
    ("version", "precision", "strong", "flags", "onnx_kind"),
    [
        ("10.3.0.30", "fp32", True, (), "fp32"),
        ("10.3.0.30", "fp16", True, (), "fp16"),
        ("10.3.0.30", "int8", False, ("INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"), "qdq"),
        ("10.13.2", "fp16", True, (), "fp16"),
        ("11.0.0", "fp16", True, (), "fp16"),
        ("11.0.0", "int8", True, (), "qdq"),
    ],
)
def test_build_plan_follows_the_tensorrt_version(version, precision, strong, flags, onnx_kind):
    assert required_onnx_kind(version, precision) == onnx_kind
    plan = plan_build(version, precision, workspace_mib=512)
    assert plan.strongly_typed is strong
    assert plan.builder_flags == flags
    assert plan.network_flags == (("STRONGLY_TYPED",) if strong else ())
    assert plan.onnx_kind == onnx_kind
    assert plan.workspace_bytes == 512 * 2**20
    if not strong:  # weakly typed INT8 on 10.x: LayerNorm/softmax/reductions pinned to fp32
        assert set(plan.fp32_layer_types) == {"NORMALIZATION", "SOFTMAX", "REDUCE"}


def test_build_plan_refuses_what_a_tensorrt_version_cannot_do():
    with pytest.raises(EngineError, match="strongly typed"):
        plan_build("11.0.0", "fp16", onnx_kind="fp32")
    with pytest.raises(EngineError, match="Q/DQ"):
        plan_build("10.3.0", "int8", onnx_kind="fp32")
    with pytest.raises(EngineError, match="too old"):
        plan_build("8.6.1", "fp16")
    assert plan_build("10.3.0", "fp16", onnx_kind="fp16").strongly_typed  # a converted ONNX keeps its types


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_gives_one_clear_sentence(onnx_file):
    with pytest.raises(MissingDependencyError, match=r"pip install 'radseg-edge\[trt\]'"):
        build_engine(onnx_file, plan_build("10.3.0", "fp16"))
    from radseg_edge.backends import make_backend, why_unavailable

    assert "tensorrt" in why_unavailable("tensorrt")
    with pytest.raises(InputError, match="tensorrt"):
        make_backend("tensorrt", export_dir=onnx_file.parent)


@pytest.mark.skipif(HAS_TORCH_TRT, reason="torch_tensorrt is installed here")
def test_export_formats_impossible_here_say_why(capsys):
    from radseg_edge.cli import main

    for fmt in ("engine-fp16", "engine-int8", "torch-tensorrt"):
        assert main(["export", "--format", fmt, "--random-weights", "-o", "unused"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and ("tensorrt" in err or "GPU" in err) and err.count("\n") == 1
