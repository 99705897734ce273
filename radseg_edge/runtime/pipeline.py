"""The threaded streaming pipeline: capture -> inference -> render/output, with per-stage accounting.

Three joined (non-daemon) threads hand frames on through bounded buffers:

    capture  --FrameSlot(1)-->  inference  --Queue(1)-->  render + sinks

* Live sources (cameras, network streams, paced files): the slot keeps only the newest frame; a frame
  replaced before inference took it is *dropped* and counted. Files and image folders: the reader
  waits until the slot has room before it reads (every frame is segmented, none ages in the reader).
  ``drop="latest"``/``"none"`` overrides this.
* Shutdown on end of stream, ``max_frames``, a sink asking to stop (window closed), Ctrl-C or
  SIGTERM, or an error in any thread (re-raised by :meth:`StreamPipeline.run` after all threads joined).

Latency accounting holds by construction. Every processed frame carries six ``perf_counter``
timestamps t0..t5 (capture start, decoded, taken by inference, segmented, taken by render, overlay
done) and t6 (all sinks written); the stages are the differences between consecutive stamps, the
model's own top-level stages splitting t3 - t2 (the rest is ``model_other``):

    decode + wait_infer + [preprocess, backbone, ..., postprocess, model_other]
           + wait_render + overlay + encode  ==  end_to_end  (= t6 - t0)

so the stage means add up to the mean end-to-end latency exactly (up to float rounding).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from radseg_edge.runtime.live_vocab import VocabularyController
from radseg_edge.runtime.overlay import overlay
from radseg_edge.runtime.sinks import VideoSink
from radseg_edge.runtime.sources import Frame, VideoSource
from radseg_edge.runtime.telemetry import TelemetrySampler
from radseg_edge.utils.profiling import STAGES, StageProfiler

#: runtime stages around the model's own ones, in pipeline order.
PRE_MODEL_STAGES = ("decode", "wait_infer")
POST_MODEL_STAGES = ("model_other", "wait_render", "overlay", "encode")


@dataclass
class StreamConfig:
    """Knobs of :class:`StreamPipeline`.

    drop: "auto" (drop stale frames for live sources only), "latest" (always keep only the newest
        frame) or "none" (never drop; the reader waits for the model).
    max_frames: stop after this many frames were written (None = until the end of the stream).
    overlay: draw masks + legend; overlay_stats: also FPS and per-stage latency lines.
    status_interval: seconds between one-line status prints (0 = quiet).
    """

    drop: str = "auto"
    max_frames: int | None = None
    overlay: bool = True
    overlay_stats: bool = True
    alpha: float = 0.5
    render_queue: int = 1
    status_interval: float = 0.0
    handle_signals: bool = True


class FrameSlot:
    """Capture -> inference hand-off: keep-newest (counting drops) or a small blocking FIFO."""

    def __init__(self, keep_latest: bool, capacity: int = 1) -> None:
        self.keep_latest = keep_latest
        self.capacity = 1 if keep_latest else max(1, capacity)
        self._items: list[Frame] = []
        self._cond = threading.Condition()
        self._closed = False
        self._stopped = False
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        """Store a frame (False if the pipeline stopped meanwhile)."""
        with self._cond:
            if self.keep_latest:
                if self._items:
                    self._items.clear()
                    self.dropped += 1
            else:
                self._cond.wait_for(lambda: len(self._items) < self.capacity or self._stopped)
            if self._stopped:
                return False
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def wait_for_space(self) -> bool:
        """Block until a frame can be stored without waiting (False if stopped). Reading only then keeps a
        blocking reader from holding a decoded frame that ages while it waits."""
        with self._cond:
            self._cond.wait_for(lambda: self.keep_latest or len(self._items) < self.capacity or self._stopped)
            return not self._stopped

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None after ``timeout`` s / at the end of the stream (see :attr:`finished`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed or self._stopped, timeout=timeout)
            if self._items and not self._stopped:
                frame = self._items.pop(0)
                self._cond.notify_all()
                return frame
            return None

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._stopped or (self._closed and not self._items)

    def close(self) -> None:
        """No more frames will come (end of stream)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stop(self) -> int:
        """Abort: wake everyone; returns how many frames were left unprocessed."""
        with self._cond:
            self._stopped = True
            left = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left


@dataclass
class _Segmented:
    frame: Frame
    labels: np.ndarray
    class_names: tuple[str, ...]
    stages: dict[str, float]  # ms, decode .. model_other
    t_done: float


_END = object()


class StreamPipeline:
    """Runs ``source -> segmenter -> overlay -> sinks`` until the stream ends or it is stopped.

    Args:
        source: an opened :class:`VideoSource`.
        segmenter: a :class:`~radseg_edge.runtime.segmenter.Segmenter`; its optional ``profiler``
            attribute (a StageProfiler) supplies the model stages.
        sinks: where rendered frames go (several at once are fine).
        vocab: controller for live vocabulary changes (applied between frames), or None.
        telemetry: a sampler started and stopped with the run, or None.
    """

    def __init__(
        self,
        source: VideoSource,
        segmenter: Any,
        sinks: Sequence[VideoSink],
        config: StreamConfig | None = None,
        vocab: VocabularyController | None = None,
        telemetry: TelemetrySampler | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.source = source
        self.segmenter = segmenter
        self.sinks = list(sinks)
        self.config = config or StreamConfig()
        self.vocab = vocab
        self.telemetry = telemetry
        self.log = log
        keep_latest = self.config.drop == "latest" or (self.config.drop == "auto" and source.live)
        if self.config.drop not in ("auto", "latest", "none"):
            raise ValueError(f"drop must be auto, latest or none, found {self.config.drop!r}")
        self.keep_latest = keep_latest
        self.slot = FrameSlot(keep_latest)
        self.results: queue.Queue = queue.Queue(maxsize=self.config.render_queue)
        self.stop_event = threading.Event()
        self.records = StageRecords()  # bounded: a stream may run for days
        self.captured = 0
        self.started = 0
        self.written = 0
        self.stop_reason = "end of stream"
        self._errors: list[BaseException] = []
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._fps_ema: float | None = None
        self._last_status = 0.0
        self._threads: list[threading.Thread] = []

    # ----- control -----
    def stop(self, reason: str = "stopped") -> None:
        """Ask every thread to finish (safe from any thread or a signal handler)."""
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()
        source_stop = getattr(self.source, "stop", None)
        if isinstance(source_stop, threading.Event):  # interrupts a reconnect back-off
            source_stop.set()
        self.slot.stop()

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self.stop(f"error: {exc}")

    # ----- threads -----
    def _capture(self) -> None:
        try:
            while not self.stop_event.is_set() and self.slot.wait_for_space():
                frame = self.source.read()
                if frame is None:
                    break
                self.captured += 1
                if self._t_first is None:
                    self._t_first = frame.t_start
                if not self.slot.put(frame):
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)
        finally:
            self.slot.close()

    def _infer(self) -> None:
        prof = getattr(self.segmenter, "profiler", None)
        prof = prof if isinstance(prof, StageProfiler) and prof.enabled else None
        try:
            while not self.stop_event.is_set():
                if self.vocab is not None:
                    self.vocab.apply_pending()
                if self.config.max_frames is not None and self.started >= self.config.max_frames:
                    self.stop("max frames reached")  # the capture thread may be waiting on the slot
                    break
                frame = self.slot.get(timeout=0.05)
                if frame is None:
                    if self.slot.finished:
                        break
                    continue
                self.started += 1
                t_taken = time.perf_counter()
                mark = prof.mark() if prof is not None else None
                result = self.segmenter(frame.image)
                labels = _labels_of(result, frame.image.shape[:2])
                names = tuple(getattr(result, "class_names", None) or self.segmenter.class_names)
                model = prof.since(mark) if prof is not None else {}
                if prof is not None:
                    prof.drain()  # this frame's stages are in `model`; the profiler's lists must not grow
                t_done = time.perf_counter()
                stages = {"decode": (frame.t_ready - frame.t_start) * 1e3,
                          "wait_infer": (t_taken - frame.t_ready) * 1e3}
                stages.update(model)
                stages["model_other"] = (t_done - t_taken) * 1e3 - sum(model.values())
                if self.vocab is not None:
                    self.vocab.frame_index = self.started
                if not self._put(_Segmented(frame, labels, names, stages, t_done)):
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)
        finally:
            self._put(_END, force=True)

    def _put(self, item: object, force: bool = False) -> bool:
        while force or not self.stop_event.is_set():
            try:
                self.results.put(item, timeout=0.05)
                return True
            except queue.Full:
                render = self._threads[2] if len(self._threads) == 3 else None
                if force and (render is None or (render.ident is not None and not render.is_alive())):
                    try:  # make room: nobody will take the queued frame any more
                        self.results.get_nowait()
                    except queue.Empty:
                        pass
        return False

    def _render(self) -> None:
        try:
            while True:
                try:
                    item = self.results.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                if self._errors:
                    continue  # drain without output after a failure
                self._emit(item)
                if self.config.max_frames is not None and self.written >= self.config.max_frames:
                    self.stop("max frames reached")
                if any(s.stop_requested for s in self.sinks):
                    self.stop("closed by the viewer")
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)

    def _emit(self, item: _Segmented) -> None:
        t_taken = time.perf_counter()
        image = item.frame.image
        if self.config.overlay:
            lines = self._status_lines() if self.config.overlay_stats else ()
            image = overlay(image, item.labels, item.class_names, alpha=self.config.alpha, text_lines=lines)
        t_drawn = time.perf_counter()
        for sink in self.sinks:
            sink.write(image)
        t_out = time.perf_counter()
        stages = dict(item.stages)
        stages["wait_render"] = (t_taken - item.t_done) * 1e3
        stages["overlay"] = (t_drawn - t_taken) * 1e3
        stages["encode"] = (t_out - t_drawn) * 1e3
        self.records.add(stages, (t_out - item.frame.t_start) * 1e3)
        if self._t_last is not None:
            dt = t_out - self._t_last
            if dt > 0:
                self._fps_ema = 1.0 / dt if self._fps_ema is None else 0.9 * self._fps_ema + 0.1 / dt
        self._t_last = t_out
        self.written += 1
        if self.config.status_interval and t_out - self._last_status >= self.config.status_interval:
            self._last_status = t_out
            self.log("  ".join(self._status_lines()))

    def _status_lines(self) -> list[str]:
        if not self.records.count:
            return []
        last = self.records.last
        fps = f"{self._fps_ema:.1f} FPS" if self._fps_ema else "-- FPS"
        head = f"frame {self.written}  {fps}  e2e {self.records.last_e2e:.0f} ms  dropped {self.slot.dropped}"
        model = [f"{k} {v:.1f}" for k, v in last.items() if k not in PRE_MODEL_STAGES + POST_MODEL_STAGES]
        return [head, " | ".join(model) + " ms"] if model else [head]

    # ----- run -----
    def run(self) -> dict[str, Any]:
        """Stream until done; returns the profile (see :meth:`profile`). Re-raises a thread's error."""
        restore = self._install_signals() if self.config.handle_signals else {}
        if self.telemetry is not None:
            self.telemetry.start()
        t_start = time.perf_counter()
        self._threads = [
            threading.Thread(target=self._capture, name="capture"),
            threading.Thread(target=self._infer, name="inference"),
            threading.Thread(target=self._render, name="render"),
        ]
        try:
            for t in self._threads:
                t.start()
            for t in self._threads:
                while t.is_alive():
                    t.join(timeout=0.1)
        except KeyboardInterrupt:
            self.stop("interrupted")
            for t in self._threads:
                t.join()
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            if self.telemetry is not None:
                self.telemetry.stop()
            if self.vocab is not None:
                self.vocab.cancel_pending()
            self._close_io()
            self.wall_s = time.perf_counter() - t_start
        if self._errors:
            raise self._errors[0]
        return self.profile()

    def _close_io(self) -> None:
        """Close the source and every sink (the pipeline owns them); a failing close is reported, not fatal."""
        for closable in [self.source, *self.sinks]:
            try:
                closable.close()
            except Exception as exc:
                if not self._errors:
                    self._errors.append(exc)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        restore: dict[int, Any] = {}

        def on_signal(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            self.log(f"{name}: stopping (again to force)")
            self.stop(f"{name}")
            signal.signal(signum, restore.get(signum, signal.SIG_DFL))

        for sig in (signal.SIGINT, signal.SIGTERM):
            restore[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
        return restore

    def profile(self) -> dict[str, Any]:
        """Per-stage p50/p90/p99/mean (ms), end-to-end latency, FPS, frame accounting, vocabulary changes, telemetry."""
        return build_profile(self)


class StageRecords:
    """Per-frame stage times (ms) in bounded memory: float32 columns, one per stage, plus end-to-end.

    A long stream must not grow without limit: once ``cap`` frames are kept, every other one is
    dropped and from then on only every ``stride``-th frame is recorded (stride doubles each time), so
    the percentiles keep describing the whole run with at most ``cap`` frames x (stages + 1) x 4 bytes.
    ``last`` / ``last_e2e`` are always the newest frame's times (for the status line).
    """

    def __init__(self, cap: int = 200_000) -> None:
        self.cap = max(2, int(cap))
        self.stride = 1
        self.count = 0
        self.columns: dict[str, array] = {}
        self.e2e = array("f")
        self.last: dict[str, float] = {}
        self.last_e2e = 0.0

    def __len__(self) -> int:
        return len(self.e2e)

    def add(self, stages: dict[str, float], e2e_ms: float) -> None:
        self.last, self.last_e2e = stages, e2e_ms
        index, self.count = self.count, self.count + 1
        if index % self.stride:
            return
        kept = len(self.e2e)
        for name, value in stages.items():
            if name not in self.columns:  # a stage first seen now: absent before = 0 ms
                self.columns[name] = array("f", bytes(4 * kept))
            self.columns[name].append(value)
        for column in self.columns.values():
            if len(column) == kept:
                column.append(0.0)
        self.e2e.append(e2e_ms)
        if len(self.e2e) >= self.cap:
            self.stride *= 2
            self.columns = {k: v[::2] for k, v in self.columns.items()}
            self.e2e = self.e2e[::2]

    def table(self) -> dict[str, np.ndarray]:
        """Stage name -> float64 array of the kept frames' times (ms)."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.columns.items()}


def _labels_of(result: Any, size: tuple[int, int]) -> np.ndarray:
    """H x W int labels from a segmenter result (torch or numpy, optionally 1 x H x W), resized to ``size``."""
    labels = getattr(result, "labels", result)
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim == 3:
        labels = labels[0]
    if labels.shape != tuple(size):
        labels = cv2.resize(labels.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return labels


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "max_ms": float(values.max()),
    }


def stage_order(names: set[str]) -> list[str]:
    """Runtime stages around the model stages (canonical order, then unknown ones alphabetically)."""
    model = sorted(names - set(PRE_MODEL_STAGES) - set(POST_MODEL_STAGES),
                   key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s))
    return [s for s in PRE_MODEL_STAGES if s in names] + model + [s for s in POST_MODEL_STAGES if s in names]


def build_profile(p: StreamPipeline) -> dict[str, Any]:
    n = p.records.count
    out: dict[str, Any] = {
        "frames": {
            "captured": p.captured,
            "processed": n,
            "dropped": p.slot.dropped,
            "unprocessed_at_stop": max(0, p.captured - n - p.slot.dropped),
        },
        "drop_policy": "latest" if p.keep_latest else "none",
        "stop_reason": p.stop_reason,
        "wall_s": getattr(p, "wall_s", None),
    }
    reconnects = getattr(p.source, "reconnects", None)
    if isinstance(reconnects, int):  # a network source
        out["source"] = {"reconnects": reconnects, "failed_attempts": getattr(p.source, "failed_attempts", 0)}
    http = {s.uri: s.stats() for s in p.sinks if callable(getattr(s, "stats", None))}
    if http:  # MJPEG servers: connections refused over the cap, client disconnects, request errors
        out["http"] = http
    if n:
        columns = p.records.table()
        table = {k: columns[k] for k in stage_order(set(columns))}  # absent stage = 0 ms
        e2e = np.asarray(p.records.e2e, dtype=np.float64)
        stages = {k: {**_stats(v), "share": float(v.mean() / e2e.mean()) if e2e.mean() > 0 else 0.0}
                  for k, v in table.items()}
        stage_sum = float(sum(v.mean() for v in table.values()))
        span = (p._t_last or 0.0) - (p._t_first or 0.0)
        out.update({
            "fps": (n / span) if span > 0 else None,
            "end_to_end": _stats(e2e),
            "stages": stages,
            "accounting": {
                "sum_of_stage_means_ms": stage_sum,
                "end_to_end_mean_ms": float(e2e.mean()),
                "relative_error": abs(stage_sum - float(e2e.mean())) / max(float(e2e.mean()), 1e-12),
            },
        })
    model_prof = getattr(p.segmenter, "profiler", None)
    if isinstance(model_prof, StageProfiler) and model_prof.info:
        out["model"] = {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
                        for k, v in model_prof.info.items()}
    if p.vocab is not None:
        out["vocabulary"] = p.vocab.summary()  # bounded: counts of all changes, the last ones in full
    if p.telemetry is not None:
        out["telemetry"] = p.telemetry.summary(n)
    return out
