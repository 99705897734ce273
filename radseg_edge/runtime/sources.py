"""Video sources named by URI, following jetson-inference's videoSource convention.

=============================  =====================================================
``csi://0``                    MIPI CSI camera (Jetson, nvarguscamerasrc via GStreamer)
``v4l2:///dev/video0``         V4L2 camera by device path
``0``, ``1``                   camera index (V4L2 / USB webcam)
``rtsp://host:554/path``       RTSP stream (reconnects with back-off)
``http(s)://host/stream``      HTTP stream, e.g. MJPEG (reconnects with back-off)
``file://video.mp4``, a path   video file
a folder, ``'frames/*.jpg'``   image folder (sorted) or glob; a single image path
``... ! appsink``              a GStreamer pipeline string (needs OpenCV built with GStreamer)
=============================  =====================================================

Network sources (rtsp, http) retry the first connection too, and every open and read is bounded by
OpenCV's ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` (set from the reconnect
budget), so a host that accepts a connection and never answers cannot block for FFmpeg's default 30 s.

Camera size and rate come from the URI query (``csi://0?width=1280&height=720&framerate=30``) or
the ``width``/``height``/``framerate`` arguments. Every source yields :class:`Frame` objects holding
H x W x 3 uint8 **RGB** images.
"""

from __future__ import annotations

import functools
import glob
import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from radseg_edge.errors import RadsegError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".h265", ".mjpeg", ".flv")


class SourceError(RadsegError):
    """A video source cannot be parsed, opened or read."""


@dataclass
class Frame:
    """One captured frame.

    ``image``: H x W x 3 uint8 RGB. ``t_start``: ``time.perf_counter()`` when this frame's capture
    began (for live cameras: when it arrived); ``t_ready``: when it was decoded. Seconds.
    """

    image: np.ndarray
    index: int
    t_start: float
    t_ready: float


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI. ``kind``: csi, v4l2, camera, rtsp, http, file, images or gstreamer."""

    uri: str
    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Frames arrive in real time (so stale ones should be dropped rather than queued)."""
        return self.kind in ("csi", "v4l2", "camera", "rtsp", "http", "gstreamer")

    @property
    def network(self) -> bool:
        return self.kind in ("rtsp", "http")


def parse_source(uri: str) -> SourceSpec:
    """Classify a source URI or path (see the module table). Raises :class:`SourceError` if unknown."""
    text = str(uri).strip()
    if not text:
        raise SourceError("empty --source: give a camera (csi://0, v4l2:///dev/video0, 0), a URL, a video or images")
    if "!" in text and "://" not in text.split("!", 1)[0]:
        return SourceSpec(text, "gstreamer", text)
    if text.isdigit():
        return SourceSpec(text, "camera", text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme == "csi":
        sensor = (parts.netloc or parts.path.strip("/")) or "0"
        if not sensor.isdigit():
            raise SourceError(f"csi:// expects a sensor number (csi://0), found {text!r}")
        return SourceSpec(text, "csi", sensor, options)
    if scheme == "v4l2":
        device = parts.path or parts.netloc
        if device.isdigit():
            device = f"/dev/video{device}"
        return SourceSpec(text, "v4l2", device, options)
    if scheme in ("rtsp", "rtsps", "rtmp"):
        return SourceSpec(text, "rtsp", text, options)
    if scheme in ("http", "https"):
        return SourceSpec(text, "http", text, options)
    if scheme == "file":
        path = (parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else parts.path
        return _classify_path(path, text, options)
    if scheme and len(scheme) > 1:  # (one letter: a Windows drive)
        raise SourceError(
            f"unknown source scheme {scheme!r} in {text!r}: expected csi://, v4l2://, rtsp://, http(s)://, file:// "
            "or a path, folder, glob or camera index"
        )
    return _classify_path(text, text, {})


def _classify_path(path: str, uri: str, options: dict[str, str]) -> SourceSpec:
    if any(ch in path for ch in "*?["):
        return SourceSpec(uri, "images", path, options)
    p = Path(path).expanduser()
    if p.is_dir():
        return SourceSpec(uri, "images", str(p), options)
    if not p.exists():
        raise SourceError(f"source {path!r} does not exist (expected a video file, an image folder or a glob)")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return SourceSpec(uri, "images", str(p), options)
    return SourceSpec(uri, "file", str(p), options)


@functools.lru_cache(maxsize=1)
def opencv_build_info() -> dict[str, str]:
    """First word of the 'GStreamer', 'FFMPEG', 'GUI' and 'v4l/v4l2' lines of cv2.getBuildInformation()."""
    info: dict[str, str] = {}
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        key = {"v4l/v4l2": "V4L/V4L2"}.get(key.lower(), key)
        if key in ("GStreamer", "FFMPEG", "GUI", "V4L/V4L2") and key not in info:
            info[key] = value.strip().split()[0] if value.strip() else "?"
    return info


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (pip wheels cannot)."""
    return opencv_build_info().get("GStreamer", "NO").upper() == "YES"


GSTREAMER_HINT = (
    "this OpenCV was built without GStreamer (the pip wheels opencv-python[-headless] never have it). "
    "On Jetson use JetPack's OpenCV: `pip uninstall opencv-python opencv-python-headless` and "
    "`sudo apt install python3-opencv` (or build OpenCV with -D WITH_GSTREAMER=ON); "
    "a USB/V4L2 camera works without GStreamer (v4l2:///dev/video0)"
)


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, framerate: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink that keeps one buffer)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={framerate}/1, format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class VideoSource:
    """Base class: ``read()`` returns the next :class:`Frame` or None at the end of the stream."""

    spec: SourceSpec
    fps: float | None = None

    @property
    def live(self) -> bool:
        return self.spec.live

    def read(self) -> Frame | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFolderSource(VideoSource):
    """Images of a folder (sorted by name), a glob pattern, or one image file; optionally looped.

    An unreadable image is skipped (``skipped`` lists it, ``log`` reports it); if none is readable the
    source ends with a :class:`SourceError`.
    """

    def __init__(self, spec: SourceSpec, loop: bool = False, log: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.loop = loop
        self.log = log
        loc = spec.location
        if Path(loc).is_dir():
            files = [str(p) for p in sorted(Path(loc).iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
        elif any(ch in loc for ch in "*?["):
            files = sorted(f for f in glob.glob(os.path.expanduser(loc)) if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files = [loc]
        if not files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {loc!r}")
        self.files = files
        self.skipped: list[str] = []
        self._pos = 0
        self._count = 0

    def read(self) -> Frame | None:
        for _ in range(2 * len(self.files) + 1):  # at most one full pass of unreadable files
            if self._pos >= len(self.files):
                if not self.loop or self._count == 0:
                    break
                self._pos = 0
            t0 = time.perf_counter()
            path = self.files[self._pos]
            self._pos += 1
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                if path not in self.skipped:
                    self.skipped.append(path)
                    self.log(f"skipping {path}: not a readable image")
                continue
            frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._count, t0, time.perf_counter())
            self._count += 1
            return frame
        if self._count == 0:
            raise SourceError(f"none of the {len(self.files)} image(s) in {self.spec.location!r} could be read")
        return None


#: longest wait for data from a network source before its stream counts as lost (seconds).
DEFAULT_READ_TIMEOUT_S = 10.0


def _timeout_params(open_timeout: float | None, read_timeout: float | None) -> list[int]:
    """OpenCV ``VideoCapture`` open parameters bounding the open and each read (milliseconds, >= 1)."""
    params: list[int] = []
    if open_timeout is not None:
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout * 1000))]
    if read_timeout is not None:
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout * 1000))]
    return params


class OpenCVSource(VideoSource):
    """A ``cv2.VideoCapture`` (video file, camera, RTSP/HTTP or GStreamer pipeline).

    ``open_timeout`` / ``read_timeout`` (seconds, network sources): how long opening, and then waiting
    for one frame, may take before it fails (OpenCV's FFmpeg backend otherwise waits 30 s)."""

    def __init__(
        self,
        spec: SourceSpec,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        framerate: float | None = None,
        open_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self.spec = spec
        self.loop = loop
        self._count = 0
        opt = spec.options
        width = width or _int(opt.get("width"))
        height = height or _int(opt.get("height"))
        framerate = framerate or _float(opt.get("framerate") or opt.get("fps"))
        self.cap = self._open(spec, width, height, framerate, open_timeout, read_timeout)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None

    @staticmethod
    def _open(spec: SourceSpec, width: int | None, height: int | None, framerate: float | None,
              open_timeout: float | None = None, read_timeout: float | None = None) -> cv2.VideoCapture:
        kind = spec.kind
        if kind in ("csi", "gstreamer"):
            if not opencv_has_gstreamer():
                raise SourceError(f"{spec.uri!r} needs GStreamer: {GSTREAMER_HINT}")
            pipeline = spec.location
            if kind == "csi":
                pipeline = csi_pipeline(int(spec.location), width or 1280, height or 720, int(framerate or 30),
                                        int(spec.options.get("flip", 0)))
            cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        elif kind in ("camera", "v4l2"):
            target: int | str = int(spec.location) if kind == "camera" else spec.location
            if kind == "v4l2" and not Path(spec.location).exists():
                raise SourceError(f"camera device {spec.location!r} does not exist (list them with `v4l2-ctl --list-devices`)")
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2) if os.name == "posix" else cv2.VideoCapture(target)
            if not cap.isOpened():
                cap = cv2.VideoCapture(target)
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if framerate:
                cap.set(cv2.CAP_PROP_FPS, framerate)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        elif spec.network and (open_timeout is not None or read_timeout is not None):
            cap = cv2.VideoCapture(spec.location, cv2.CAP_ANY, _timeout_params(open_timeout, read_timeout))
        else:
            cap = cv2.VideoCapture(spec.location)
        if not cap.isOpened():
            raise SourceError(f"cannot open source {spec.uri!r} ({_open_hint(spec)})")
        return cap

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        ok = self.cap.grab()
        if not ok and self.loop and self.spec.kind == "file" and self._count > 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            t0 = time.perf_counter()
            ok = self.cap.grab()
        if not ok:
            return None
        t_arrived = time.perf_counter()
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None:
            return None
        image = bgr if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        # live cameras: latency counts from arrival (grab), files: from the start of demux + decode
        frame = Frame(image, self._count, t_arrived if self.live else t0, time.perf_counter())
        self._count += 1
        return frame

    def close(self) -> None:
        self.cap.release()


def _open_hint(spec: SourceSpec) -> str:
    if spec.kind == "file":
        return "unsupported codec or not a video; OpenCV's FFmpeg could not decode it"
    if spec.network:
        return "host unreachable, wrong path or credentials, or the stream is not up"
    if spec.kind in ("camera", "v4l2"):
        return "no such camera, or it is busy in another process; check `v4l2-ctl --list-devices` and permissions (video group)"
    return "see the GStreamer pipeline's errors above"


@dataclass
class Backoff:
    """Reconnect delays: ``initial``, then x ``factor`` up to ``maximum`` seconds; give up after ``give_up_after`` s."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 8.0
    give_up_after: float = 60.0

    def delays(self):
        d = self.initial
        while True:
            yield d
            d = min(d * self.factor, self.maximum)


class ReconnectingSource(VideoSource):
    """Wraps a network source: opens it, retrying until it answers, and when it fails later reopens it
    with exponential back-off (frames keep counting). Both wait at most ``backoff.give_up_after`` s.

    ``opener`` builds a fresh inner source (raising :class:`SourceError` when the host is unreachable);
    if it takes a ``timeout`` argument it gets the seconds left of the budget, so one attempt at a host
    that never answers cannot outlast it. ``stop`` interrupts a wait (the pipeline sets it on shutdown).
    """

    def __init__(
        self,
        spec: SourceSpec,
        opener: Callable[..., VideoSource],
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.spec = spec
        self.opener = opener
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self.log = log
        self.reconnects = 0
        self.failed_attempts = 0
        self._count = 0
        self._timeout_arg = "timeout" in inspect.signature(opener).parameters
        self.inner: VideoSource | None = None
        t0 = time.monotonic()
        error = self._attempt(self.backoff.give_up_after)
        delays = self.backoff.delays()
        while error is not None:
            waited = time.monotonic() - t0
            delay = next(delays)
            if waited + delay > self.backoff.give_up_after or self.stop.is_set():
                raise SourceError(f"cannot open source {spec.uri!r}: no answer within {waited:.1f} s "
                                  f"(--reconnect-timeout {self.backoff.give_up_after:g} s; last error: {error})")
            self.log(f"source {spec.uri}: not reachable yet ({error}); retrying in {delay:.2f} s")
            if self.stop.wait(delay):
                raise SourceError(f"source {spec.uri!r}: stopped while waiting for it to answer")
            error = self._attempt(self.backoff.give_up_after - (time.monotonic() - t0))
        if self.failed_attempts:
            self.log(f"source {spec.uri}: connected after {self.failed_attempts} failed attempt(s)")
        self.fps = self.inner.fps if self.inner is not None else None

    def _attempt(self, budget: float) -> str | None:
        """One open with at most ``budget`` seconds; None on success, else the error text."""
        try:
            self.inner = self.opener(timeout=max(budget, 0.05)) if self._timeout_arg else self.opener()
        except SourceError as exc:
            self.failed_attempts += 1
            return str(exc)
        return None

    def read(self) -> Frame | None:
        while not self.stop.is_set():
            frame = self.inner.read() if self.inner is not None else None
            if frame is not None:
                frame.index = self._count
                self._count += 1
                return frame
            if not self._reconnect():
                return None
        return None

    def _reconnect(self) -> bool:
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        t_lost = time.monotonic()
        self.log(f"source {self.spec.uri}: stream lost, reconnecting with back-off")
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            lost_for = time.monotonic() - t_lost
            if lost_for + delay > self.backoff.give_up_after:
                self.log(f"source {self.spec.uri}: no stream for {lost_for:.1f} s "
                         f"(limit {self.backoff.give_up_after:g} s), giving up")
                return False
            self.log(f"source {self.spec.uri}: reconnect attempt {attempt} in {delay:.2f} s")
            if self.stop.wait(delay):
                return False
            error = self._attempt(self.backoff.give_up_after - (time.monotonic() - t_lost))
            if error is not None:
                self.log(f"source {self.spec.uri}: {error}")
                continue
            self.reconnects += 1
            self.log(f"source {self.spec.uri}: reconnected")
            return True
        return False  # pragma: no cover - the generator is infinite

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class PacedSource(VideoSource):
    """Plays a file or image folder at ``fps`` frames/s, like a camera: a frame "arrives" at its scheduled
    time (``t_start``), whether or not anyone is ready for it. Marks the source as live, so the pipeline
    drops stale frames exactly as it would for a camera."""

    def __init__(self, inner: VideoSource, fps: float) -> None:
        if fps <= 0:
            raise SourceError(f"playback rate must be positive, found {fps}")
        self.inner = inner
        self.spec = inner.spec
        self.fps = fps
        self._t0: float | None = None
        self._n = 0

    @property
    def live(self) -> bool:
        return True

    def read(self) -> Frame | None:
        if self._t0 is None:
            self._t0 = time.perf_counter()
        due = self._t0 + self._n / self.fps
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        else:  # the reader fell behind: skip the frames a camera would have overwritten
            while due + 1.0 / self.fps <= now:
                if self.inner.read() is None:
                    return None
                self._n += 1
                due = self._t0 + self._n / self.fps
        frame = self.inner.read()
        if frame is None:
            return None
        frame.t_start = min(due, frame.t_start)  # latency counts from the frame's arrival
        frame.index = self._n
        self._n += 1
        return frame

    def close(self) -> None:
        self.inner.close()


def open_source(
    uri: str | SourceSpec,
    loop: bool = False,
    width: int | None = None,
    height: int | None = None,
    framerate: float | None = None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = print,
    realtime: float | None = None,
) -> VideoSource:
    """Open a source URI (see the module table). Network sources retry the first connection and
    reconnect with back-off, within ``backoff.give_up_after`` seconds (--reconnect-timeout), which also
    bounds each open (OpenCV's open timeout); each read waits at most min(that, 10 s).

    ``realtime``: play a file or image folder at this many frames/s like a camera (0: the file's own rate).
    """
    spec = uri if isinstance(uri, SourceSpec) else parse_source(uri)
    if realtime is not None and spec.kind in ("file", "images"):
        inner = open_source(spec, loop=loop, log=log)
        return PacedSource(inner, realtime or inner.fps or 30.0)
    if spec.kind == "images":
        return ImageFolderSource(spec, loop=loop, log=log)

    if spec.network:
        backoff = backoff or Backoff()
        read_timeout = min(backoff.give_up_after, DEFAULT_READ_TIMEOUT_S)

        def network_opener(timeout: float) -> VideoSource:
            return OpenCVSource(spec, loop=loop, width=width, height=height, framerate=framerate,
                                open_timeout=timeout, read_timeout=read_timeout)

        return ReconnectingSource(spec, network_opener, backoff=backoff, stop=stop, log=log)
    return OpenCVSource(spec, loop=loop, width=width, height=height, framerate=framerate)


def _int(v: str | None) -> int | None:
    return int(v) if v else None


def _float(v: str | None) -> float | None:
    return float(v) if v else None
