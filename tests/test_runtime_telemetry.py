"""Telemetry: jtop stats parsing, energy per frame, and the fallbacks off Jetson / without jtop.service."""

from __future__ import annotations

import sys
import threading
import types

import pytest

from radseg_edge.runtime import telemetry as tel
from radseg_edge.runtime.telemetry import Sample, TelemetrySampler, parse_jtop_stats, summarize_samples

JTOP_STATS = {
    "time": "2026-01-01", "uptime": 12.0, "CPU1": 35, "CPU2": 20, "RAM": 0.42, "SWAP": 0.0, "GPU": 87.5,
    "Temp cpu": 51.2, "Temp gpu": 49.8, "Temp tj": 52.0, "Temp cv0": -256,
    "Power VDD_GPU_SOC": 6100, "Power VDD_CPU_CV": 1200, "Power TOT": 9800,
    "nvp model": "MAXN", "jetson_clocks": "ON",
}


def test_jtop_stats_become_rails_temperatures_and_modes():
    s = parse_jtop_stats(JTOP_STATS, t=1.0)
    assert s.power_mw == {"VDD_GPU_SOC": 6100.0, "VDD_CPU_CV": 1200.0, "TOT": 9800.0}
    assert s.temp_c == {"cpu": 51.2, "gpu": 49.8, "tj": 52.0}  # offline sensor (-256) left out
    assert (s.gpu_load, s.ram, s.nvpmodel, s.jetson_clocks) == (87.5, 0.42, "MAXN", "ON")


def test_energy_is_power_integrated_over_time_per_frame():
    samples = [Sample(t=t, power_mw={"TOT": 5000.0, "VDD_GPU_SOC": 3000.0 + 1000 * t}, temp_c={"gpu": 40 + t})
               for t in (0.0, 0.5, 1.0, 1.5, 2.0)]
    out = summarize_samples(samples, frames=20)
    assert out["energy_j"] == pytest.approx(10.0)  # 5 W for 2 s
    assert out["energy_per_frame_mj"] == pytest.approx(500.0)
    assert out["power_mw"]["VDD_GPU_SOC"] == {"mean": pytest.approx(4000.0), "max": 5000.0}
    assert out["temp_c_max"] == {"gpu": 42.0}


def test_off_jetson_the_sampler_reports_why_and_still_gives_process_figures(monkeypatch, tmp_path):
    monkeypatch.setattr(tel, "NV_TEGRA_RELEASE", tmp_path / "nv_tegra_release")
    s = TelemetrySampler().start()
    s.stop()
    out = s.summary(frames=3)
    assert out["available"] is False and "not a Jetson" in out["reason"]
    assert out["process"]["cpu_time_s"] >= 0 and out["process"]["wall_s"] >= 0


def _on_jetson(monkeypatch, tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(tel, "NV_TEGRA_RELEASE", release)


def test_jetson_without_jetson_stats_names_the_package(monkeypatch, tmp_path):
    _on_jetson(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "jtop", None)  # import fails
    s = TelemetrySampler().start()
    s.stop()
    assert "jetson-stats" in s.summary(0)["reason"]


class _JtopException(Exception):
    pass


def _fake_jtop_module(stats_seq=None, fail=False):
    mod = types.ModuleType("jtop")

    class Jtop:
        def __init__(self, interval=0.5):
            self.n = 0

        def start(self):
            if fail:
                raise _JtopException("jtop.service is not active. Please run:\nsudo systemctl restart jtop.service")

        def ok(self):
            self.n += 1
            return self.n <= len(stats_seq)

        @property
        def stats(self):
            return stats_seq[self.n - 1]

        @property
        def board(self):
            return {"platform": {"Machine": "aarch64"}, "hardware": {"Module": "NVIDIA Jetson Orin Nano"}}

        def close(self):
            pass

    mod.jtop = Jtop
    mod.JtopException = _JtopException
    return mod


def test_inactive_jtop_service_falls_back_cleanly(monkeypatch, tmp_path):
    _on_jetson(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(fail=True))
    before = set(threading.enumerate())
    s = TelemetrySampler().start()
    s.stop()
    out = s.summary(5)
    assert out["available"] is False and "jtop.service" in out["reason"]
    assert set(threading.enumerate()) - before == set()


def test_jtop_samples_are_summarised(monkeypatch, tmp_path):
    _on_jetson(monkeypatch, tmp_path)
    seq = [dict(JTOP_STATS, **{"Power TOT": 9000 + 100 * i}) for i in range(4)]
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(seq))
    s = TelemetrySampler(interval=0.01).start()
    s._thread.join(5)
    s.stop()
    out = s.summary(frames=4)
    assert out["available"] and out["jtop"]["samples"] == 4
    assert out["jtop"]["nvpmodel"] == "MAXN" and out["jtop"]["jetson_clocks"] == "ON"
    assert out["jtop"]["power_mw"]["TOT"]["max"] == 9300.0
    assert out["board"]["hardware"]["Module"] == "NVIDIA Jetson Orin Nano"


def test_a_long_run_keeps_a_bounded_record_covering_the_whole_run(monkeypatch, tmp_path):
    _on_jetson(monkeypatch, tmp_path)
    seq = [dict(JTOP_STATS, **{"Power TOT": 9000}) for _ in range(50)]
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(seq))
    s = TelemetrySampler(interval=0.01, max_samples=8).start()
    s._thread.join(5)
    s.stop()
    assert len(s.samples) <= 8 and s.thinned >= 2
    out = s.summary(frames=50)
    assert out["jtop"]["thinned"] == s.thinned
    assert s.samples[0].t < s.samples[-1].t  # first and late samples are both kept: the record spans the run
