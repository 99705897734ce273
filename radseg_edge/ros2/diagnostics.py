"""Per-stage timings -> diagnostic_msgs/DiagnosticArray (published at 1 Hz by the node)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from radseg_edge.ros2.types import Messages

#: DiagnosticStatus levels (as in diagnostic_msgs).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


class TimingWindow:
    """The per-stage milliseconds of the last ``size`` frames, and counters since the start (thread-safe:
    the node's worker adds, its diagnostics timer reads)."""

    def __init__(self, size: int = 100) -> None:
        self._lock = threading.Lock()
        self.records: deque[dict[str, float]] = deque(maxlen=size)
        self.frames = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""

    def add(self, record: Mapping[str, float]) -> None:
        with self._lock:
            self.records.append(dict(record))
            self.frames += 1

    def stage_stats(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50_ms", "mean_ms", "max_ms"}} over the window (a stage absent in a frame counts 0 ms)."""
        with self._lock:
            records = list(self.records)
        names = list(dict.fromkeys(k for r in records for k in r))
        out = {}
        for k in names:
            v = np.array([r.get(k, 0.0) for r in records], dtype=np.float64)
            out[k] = {"p50_ms": float(np.percentile(v, 50)), "mean_ms": float(v.mean()), "max_ms": float(v.max())}
        return out


def diagnostic_status(msgs: Messages, window: TimingWindow, name: str, hardware_id: str,
                      extra: Mapping[str, Any] | None = None, fps: float | None = None) -> Any:
    """One DiagnosticStatus: level OK (WARN after a failed frame, STALE before the first frame), message
    ``"<n> frames, <fps> FPS"``, values: ``<stage>_p50_ms`` / ``<stage>_mean_ms`` per stage, frames,
    dropped, errors, and ``extra`` (backend, classes, ...)."""
    values: list[tuple[str, str]] = [("frames", str(window.frames)), ("dropped", str(window.dropped)),
                                     ("errors", str(window.errors))]
    if fps is not None:
        values.append(("fps", f"{fps:.2f}"))
    for stage, st in window.stage_stats().items():
        values += [(f"{stage}_p50_ms", f"{st['p50_ms']:.3f}"), (f"{stage}_mean_ms", f"{st['mean_ms']:.3f}")]
    values += [(str(k), str(v)) for k, v in (extra or {}).items()]
    if window.frames == 0:
        level, message = STALE, "no frame received yet"
    elif window.last_error:
        level, message = WARN, f"last frame failed: {window.last_error}"
    else:
        level, message = OK, f"{window.frames} frames" + (f", {fps:.1f} FPS" if fps is not None else "")
    return msgs.DiagnosticStatus(level=msgs.byte_value(level), name=name, message=message, hardware_id=hardware_id,
                                 values=[msgs.KeyValue(key=k, value=v) for k, v in values])


def diagnostic_array(msgs: Messages, header: Any, statuses: Sequence[Any] | Iterable[Any]) -> Any:
    """DiagnosticArray with ``header`` (the node's clock) and ``statuses``."""
    return msgs.DiagnosticArray(header=header, status=list(statuses))
