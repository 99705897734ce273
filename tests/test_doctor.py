"""`radseg-edge doctor`: every check reports; missing pieces say what they disable and how to install them."""

from __future__ import annotations

import json

import pytest

from radseg_edge.cli import doctor, main


@pytest.mark.parametrize("text,l4t,jetpack", [
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8", "36.4.3", "6.2"),
    ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64", "36.4.0", "6.1"),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "35.4.1", "5.1.2"),
    ("# R36 (release), REVISION: 4.9, GCID: 1", "36.4.9", "6.2.1+"),
])
def test_l4t_release_and_jetpack_are_read_from_nv_tegra_release(text, l4t, jetpack):
    assert doctor.parse_nv_tegra_release(text) == l4t
    assert doctor.jetpack_for_l4t(l4t) == jetpack


def test_unrecognised_release_text_gives_none():
    assert doctor.parse_nv_tegra_release("garbage") is None


def test_doctor_json_lists_every_area_and_install_hints(capsys):
    assert main(["doctor", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    names = {c["name"] for c in checks}
    assert {"python", "torch", "cuda", "tensorrt", "onnxruntime", "triton", "opencv", "l4t", "jtop"} <= names
    for c in checks:
        assert c["status"] in ("ok", "missing", "warn", "n/a")
        if c["status"] == "missing":
            assert c["disables"] and c["install"], c


def test_missing_tensorrt_says_what_it_disables(monkeypatch, capsys):
    real = doctor._import
    monkeypatch.setattr(doctor, "_import", lambda name: None if name in ("tensorrt", "jtop") else real(name))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[MISS] tensorrt" in out and "--backend tensorrt" in out and "pip install tensorrt" in out
    assert main(["doctor", "--strict"]) == 1


def test_on_a_jetson_l4t_and_jtop_are_checked(monkeypatch, tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    monkeypatch.setattr(doctor, "NV_TEGRA_RELEASE", release)
    monkeypatch.setattr(doctor, "DEVICE_TREE_MODEL", model)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)  # no nvpmodel / systemctl here
    real = doctor._import
    monkeypatch.setattr(doctor, "_import", lambda name: None if name == "jtop" else real(name))
    checks = {c.name: c for c in doctor.check_jetson()}
    assert checks["l4t"].status == "ok" and "L4T 36.4.3 (JetPack 6.2)" in checks["l4t"].found
    assert "Orin Nano" in checks["l4t"].found
    assert checks["jtop"].status == "missing" and "jetson-stats" in checks["jtop"].install
    tensorrt_hint = doctor.check_tensorrt(jetson=True)[0]
    if tensorrt_hint.status == "missing":
        assert "python3-libnvinfer" in tensorrt_hint.install


AVX2_ONLY = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"})
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
NEOVERSE_V2 = frozenset({"fp", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16"})


def _cpu(checks):
    return {c.name: c for c in checks if c.name.startswith("cpu") or c.name == "bf16 on cpu"}


def test_avx2_only_cpu_lists_what_avx512_and_amx_would_enable_and_refuses_bf16(monkeypatch):
    from radseg_edge.utils import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    cpu = _cpu(doctor.check_cpu_features(AVX2_ONLY, "x86_64"))
    assert cpu["cpu.avx2"].status == "ok" and "fp32" in cpu["cpu.avx2"].found
    for flag in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"):
        assert cpu[f"cpu.{flag}"].status == "n/a" and cpu[f"cpu.{flag}"].disables, flag
    assert "bf16" in cpu["cpu.avx512_bf16"].disables
    assert cpu["bf16 on cpu"].status == "n/a" and "emulated" in cpu["bf16 on cpu"].found


def test_amx_cpu_enables_bf16_unless_onednn_is_capped(monkeypatch):
    from radseg_edge.utils import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpu = _cpu(doctor.check_cpu_features(SAPPHIRE_RAPIDS, "x86_64"))
    assert all(c.status == "ok" for c in cpu.values()), cpu
    assert "amx_bf16" in cpu["bf16 on cpu"].found
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu = _cpu(doctor.check_cpu_features(SAPPHIRE_RAPIDS, "x86_64"))
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in cpu["cpu"].found and cpu["bf16 on cpu"].status == "n/a"


def test_aarch64_reports_neon_sve_and_bf16():
    cpu = _cpu(doctor.check_cpu_features(NEOVERSE_V2, "arm64"))
    assert cpu["cpu"].found.startswith("aarch64")
    assert "NEON" in cpu["cpu.asimd"].found and "SVE" in cpu["cpu.sve"].found and "bf16" in cpu["cpu.bf16"].found
    assert not any(name.startswith("cpu.avx") for name in cpu)
    cpu = _cpu(doctor.check_cpu_features(frozenset({"fp", "asimd"}), "aarch64"))
    assert cpu["cpu.sve"].status == "n/a" and cpu["cpu.bf16"].status == "n/a"


def test_doctor_text_shows_the_cpu_features(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "cpu " in out and "torch CPU kernels" in out and "bf16 on cpu" in out
