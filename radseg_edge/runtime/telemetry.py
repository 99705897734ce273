"""Power, temperature and load telemetry sampled beside a run.

On Jetson, jetson-stats (``from jtop import jtop``; needs the root ``jtop.service``) is sampled in a
thread: power per rail and total (mW), temperatures (deg C), GPU load (%), RAM, nvpmodel mode and
jetson_clocks. The summary integrates total power over time into energy (J) and energy per frame (mJ).
Elsewhere (no Jetson, jetson-stats not installed, service inactive) the sampler records only the
process's CPU time and peak memory, and says why there is no power data.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass
class Sample:
    """One telemetry reading. Power in mW, temperatures in deg C, loads in %."""

    t: float
    power_mw: dict[str, float] = field(default_factory=dict)  # rail -> mW ("TOT" = total)
    temp_c: dict[str, float] = field(default_factory=dict)
    gpu_load: float | None = None
    ram: float | None = None
    nvpmodel: str | None = None
    jetson_clocks: str | None = None


def parse_jtop_stats(stats: dict[str, Any], t: float) -> Sample:
    """Turn one ``jtop.stats`` dict ('Power TOT', 'Power VDD_GPU_SOC', 'Temp cpu', 'GPU', 'RAM', ...) into a Sample."""
    s = Sample(t=t)
    for key, value in stats.items():
        if not isinstance(key, str):
            continue
        if key.startswith("Power "):
            v = _number(value)
            if v is not None:
                s.power_mw[key[len("Power "):]] = v
        elif key.startswith("Temp "):
            v = _number(value)
            if v is not None and v > -200:  # jtop reports -256 for an offline sensor
                s.temp_c[key[len("Temp "):]] = v
    s.gpu_load = _number(stats.get("GPU"))
    s.ram = _number(stats.get("RAM"))
    nvp = stats.get("nvp model")
    s.nvpmodel = None if nvp is None else str(nvp)
    jc = stats.get("jetson_clocks")
    s.jetson_clocks = None if jc is None else str(jc)
    return s


def _number(v: object) -> float | None:
    try:
        return None if v is None or isinstance(v, (str, bytes)) else float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def summarize_samples(samples: list[Sample], frames: int) -> dict[str, Any]:
    """Mean/max power per rail, energy (J, trapezoid over 'TOT'), energy per frame (mJ), temperatures, load."""
    out: dict[str, Any] = {"samples": len(samples)}
    if not samples:
        return out
    out["duration_s"] = samples[-1].t - samples[0].t
    rails = sorted({r for s in samples for r in s.power_mw})
    out["power_mw"] = {
        r: {"mean": float(np.mean(v)), "max": float(np.max(v))}
        for r in rails
        if (v := [s.power_mw[r] for s in samples if r in s.power_mw])
    }
    tot = [(s.t, s.power_mw["TOT"]) for s in samples if "TOT" in s.power_mw]
    if len(tot) >= 2:
        t = np.array([a for a, _ in tot])
        p = np.array([b for _, b in tot]) / 1e3  # W
        energy = float(np.sum((p[1:] + p[:-1]) * 0.5 * np.diff(t)))
        out["energy_j"] = energy
        if frames > 0:
            out["energy_per_frame_mj"] = energy / frames * 1e3
    zones = sorted({z for s in samples for z in s.temp_c})
    out["temp_c_max"] = {z: float(max(s.temp_c[z] for s in samples if z in s.temp_c)) for z in zones}
    loads = [s.gpu_load for s in samples if s.gpu_load is not None]
    if loads:
        out["gpu_load_mean"] = float(np.mean(loads))
    rams = [s.ram for s in samples if s.ram is not None]
    if rams:
        out["ram_max"] = float(max(rams))
    out["nvpmodel"] = next((s.nvpmodel for s in reversed(samples) if s.nvpmodel), None)
    out["jetson_clocks"] = next((s.jetson_clocks for s in reversed(samples) if s.jetson_clocks), None)
    return out


def is_jetson() -> bool:
    return NV_TEGRA_RELEASE.exists()


class TelemetrySampler:
    """Samples jtop every ``interval`` s in a (joined) thread while the run lasts; falls back cleanly.

        tel = TelemetrySampler(); tel.start(); ...; tel.stop(); tel.summary(frames)
    """

    def __init__(self, interval: float = 0.5, enabled: bool = True, max_samples: int = 4096) -> None:
        self.interval = interval
        self.enabled = enabled
        #: bounded for runs of any length: past ``max_samples`` every second sample is dropped, so the record
        #: keeps covering the whole run at half the rate (energy stays a trapezoid over the run; a short peak
        #: may then be missed by the max figures).
        self.max_samples = max(2, int(max_samples))
        self.thinned = 0  # how many times the record was halved
        self.samples: list[Sample] = []
        self.board: dict[str, Any] | None = None
        self.reason: str | None = None  # why there is no jtop data (None while jtop works)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._t0_cpu = os.times()
        self._t0 = time.perf_counter()

    def start(self) -> TelemetrySampler:
        self._t0_cpu = os.times()
        self._t0 = time.perf_counter()
        if not self.enabled:
            self.reason = "telemetry disabled"
            return self
        if not is_jetson():
            self.reason = f"not a Jetson ({NV_TEGRA_RELEASE} missing): no power telemetry"
            return self
        try:
            from jtop import JtopException, jtop  # type: ignore[import-not-found]
        except ImportError:
            self.reason = (
                "jetson-stats is not installed: sudo pip3 install -U jetson-stats "
                "(or pip install 'radseg-edge[jetson]'), then reboot or `sudo systemctl restart jtop.service`"
            )
            return self
        self._thread = threading.Thread(target=self._run, args=(jtop, JtopException), name="telemetry")
        self._thread.start()
        self._ready.wait(timeout=5.0)
        return self

    def _run(self, jtop_cls: Any, jtop_exc: type[BaseException]) -> None:
        try:
            j = jtop_cls(interval=self.interval)
            j.start()
        except jtop_exc as exc:
            self.reason = f"jtop unavailable ({exc}): start it with `sudo systemctl restart jtop.service`"
            self._ready.set()
            return
        except Exception as exc:  # jtop raises assorted errors for permission/version problems
            self.reason = f"jtop failed to start ({type(exc).__name__}: {exc})"
            self._ready.set()
            return
        try:
            try:
                self.board = json.loads(json.dumps(j.board, default=str))
            except Exception:
                self.board = None
            self._ready.set()
            while not self._stop.is_set() and j.ok():
                self.samples.append(parse_jtop_stats(dict(j.stats), time.perf_counter()))
                if len(self.samples) > self.max_samples:
                    self.samples = self.samples[::2]
                    self.thinned += 1
        except Exception as exc:
            self.reason = f"jtop stopped ({type(exc).__name__}: {exc})"
        finally:
            self._ready.set()
            try:
                j.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def summary(self, frames: int) -> dict[str, Any]:
        """Telemetry of the run: ``available``, ``reason`` when not, jtop figures, process CPU time and memory."""
        cpu = os.times()
        wall = time.perf_counter() - self._t0
        out: dict[str, Any] = {
            "available": bool(self.samples),
            "process": {
                "cpu_time_s": (cpu.user - self._t0_cpu.user) + (cpu.system - self._t0_cpu.system),
                "wall_s": wall,
                "max_rss_mb": _max_rss_mb(),
            },
        }
        if self.samples:
            out["jtop"] = summarize_samples(self.samples, frames)
            out["jtop"]["thinned"] = self.thinned
            if self.board is not None:
                out["board"] = self.board
        else:
            out["reason"] = self.reason or "jtop returned no samples (the run was shorter than one interval)"
        return out


def _max_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (None where ``resource`` is missing, e.g. Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
