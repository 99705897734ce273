"""Per-stage latency timers, used by the model pipeline and the streaming runtime.

On CUDA the stages are timed with CUDA events (resolved lazily, so timing does not synchronise the
stream on every stage); on CPU with ``time.perf_counter``. A disabled profiler costs one branch.

    prof = StageProfiler()
    with prof.stage("backbone"):
        ...
    prof.end_frame()
    prof.summary()  # {"backbone": {"p50_ms": ..., "p90_ms": ..., "p99_ms": ..., "mean_ms": ..., "count": ...}}
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch

#: canonical stage names, in data-flow order.
STAGES = (
    "decode",
    "preprocess",
    "windows",
    "backbone",
    "stitch",
    "scga",
    "head",
    "postprocess",
    "refine",
    "sam_prompts",  # RADSeg+ stages, nested in "refine"
    "sam_backbone",
    "sam_decoder",
    "sam_merge",
    "overlay",
    "encode",
)


class StageProfiler:
    """Collects per-stage durations (milliseconds) over frames."""

    def __init__(self, enabled: bool = True, device: torch.device | str | None = None) -> None:
        self.enabled = enabled
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._pending: list[tuple[str, object, object]] = []
        self.frames = 0
        self.info: dict[str, object] = {}
        #: shallowest nesting depth each stage was seen at (0 = top level, not inside another stage).
        self.depth: dict[str, int] = {}
        self._open = 0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage ``name`` (nested stages are allowed)."""
        if not self.enabled:
            yield
            return
        self.depth[name] = min(self.depth.get(name, self._open), self._open)
        self._open += 1
        try:
            with self._timed(name):
                yield
        finally:
            self._open -= 1

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._pending.append((name, start, end))
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.samples[name].append((time.perf_counter() - t0) * 1e3)

    def add(self, name: str, milliseconds: float) -> None:
        """Record a duration measured elsewhere (e.g. a capture thread)."""
        if self.enabled:
            self.samples[name].append(float(milliseconds))

    def _resolve(self) -> None:
        if self._pending:
            torch.cuda.synchronize(self.device)
            for name, start, end in self._pending:
                self.samples[name].append(start.elapsed_time(end))  # type: ignore[attr-defined]
            self._pending.clear()

    def end_frame(self) -> None:
        """Mark the end of one frame (resolves pending CUDA events)."""
        self._resolve()
        self.frames += 1

    def last(self) -> dict[str, float]:
        """The most recent duration of every stage, in ms."""
        self._resolve()
        return {k: v[-1] for k, v in self.samples.items() if v}

    def summary(self) -> dict[str, dict[str, float]]:
        """p50/p90/p99/mean (ms) and count per stage, stages in data-flow order."""
        self._resolve()
        order = sorted(self.samples, key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s))
        out: dict[str, dict[str, float]] = {}
        for name in order:
            arr = np.asarray(self.samples[name], dtype=np.float64)
            if arr.size == 0:
                continue
            out[name] = {
                "p50_ms": float(np.percentile(arr, 50)),
                "p90_ms": float(np.percentile(arr, 90)),
                "p99_ms": float(np.percentile(arr, 99)),
                "mean_ms": float(arr.mean()),
                "count": int(arr.size),
            }
        return out

    def mark(self) -> dict[str, int]:
        """A bookmark of how many samples every stage has; pass it to :meth:`since`."""
        self._resolve()
        return {k: len(v) for k, v in self.samples.items()}

    def since(self, mark: dict[str, int], top_level_only: bool = True) -> dict[str, float]:
        """Total ms per stage recorded after ``mark`` (e.g. the model stages of one frame).

        With ``top_level_only`` nested stages are left out, so the returned durations never overlap
        and their sum is at most the wall time of the enclosing call.
        """
        self._resolve()
        out: dict[str, float] = {}
        for name, values in self.samples.items():
            new = values[mark.get(name, 0):]
            if new and (not top_level_only or self.depth.get(name, 0) == 0):
                out[name] = float(sum(new))
        return out

    def drain(self) -> None:
        """Forget the recorded samples, keeping ``info``, ``depth`` and the frame count. A consumer that
        reads every frame with :meth:`mark` / :meth:`since` (the streaming pipeline) calls it after each
        frame, so a stream that runs for days does not grow these lists."""
        self._resolve()
        self.samples.clear()

    def reset(self) -> None:
        self._resolve()
        self.samples.clear()
        self.frames = 0


#: a profiler that records nothing; the default of every API that takes one.
NULL_PROFILER = StageProfiler(enabled=False)
