"""Video outputs named by URI, following jetson-inference's videoOutput convention.

=================================  ==============================================================
``display://0``                    a window (only when a display exists and OpenCV has a GUI)
``file://out.mp4``, ``out.avi``    a video file (mp4v for .mp4/.mov/.mkv, MJPG for .avi)
``frames/``, ``file://frames/``    an image sequence (``frames/000000.jpg`` ...); ``frames/%05d.png`` too
``http://127.0.0.1:8080``          MJPEG over HTTP (GET /stream, /frame.jpg, / for a viewer page)
``null``                           discard (for measuring)
=================================  ==============================================================

The MJPEG server binds to 127.0.0.1 unless the URI names another address (``http://0.0.0.0:8080``
exposes it to the network). Bound to anything but loopback it requires a token (given, or generated and
shown by ``sink.token``): ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` on every request. It serves
at most ``max_clients`` connections at once (more get 503), reads request bodies of at most ``max_body``
bytes (413 beyond; 411 without Content-Length; 400 for a bad one), refuses cross-origin POSTs (403), and
counts client disconnects instead of printing tracebacks. Port 0 picks a free port (``sink.port`` tells
which). Extra JSON routes (the live vocabulary endpoint) are added with :meth:`MjpegSink.add_route`.
Sinks take H x W x 3 uint8 RGB frames.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from radseg_edge.errors import RadsegError
from radseg_edge.runtime.sources import VIDEO_EXTENSIONS, opencv_build_info

IMAGE_SEQUENCE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class SinkError(RadsegError):
    """A video output cannot be parsed or opened."""


class VideoSink:
    """Base class: ``write(frame_rgb)`` each frame, ``close()`` once. ``stop_requested`` ends the stream."""

    uri: str = ""
    stop_requested = False

    def write(self, frame_rgb: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullSink(VideoSink):
    """Discards frames (counts them)."""

    def __init__(self, uri: str = "null") -> None:
        self.uri = uri
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        self.frames += 1


def display_available() -> bool:
    """A window can be opened: a display server is set (or Windows/macOS) and OpenCV has a GUI backend."""
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        if not Path("/System").exists():  # macOS needs no DISPLAY
            return False
    return opencv_build_info().get("GUI", "NONE").upper() != "NONE"


class DisplaySink(VideoSink):
    """An OpenCV window; closing it or pressing q/Esc requests the end of the stream."""

    def __init__(self, uri: str = "display://0", title: str = "radseg-edge") -> None:
        if not display_available():
            raise SinkError(
                f"{uri!r}: no display here (DISPLAY unset or OpenCV without GUI, e.g. opencv-python-headless). "
                "Use --sink http://127.0.0.1:8080 to watch in a browser, or install opencv-python"
            )
        self.uri = uri
        self.title = title
        self._shown = False

    def write(self, frame_rgb: np.ndarray) -> None:
        cv2.imshow(self.title, cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self._shown = True
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        if key in (ord("q"), 27) or closed:
            self.stop_requested = True

    def close(self) -> None:
        if self._shown:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


class VideoFileSink(VideoSink):
    """A video file written by OpenCV; opened at the first frame (its size fixes the video size)."""

    CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".m4v": "mp4v"}

    def __init__(self, path: str, fps: float = 30.0, uri: str = "") -> None:
        self.path = Path(path)
        self.uri = uri or str(path)
        self.fps = fps
        self.fourcc = self.CODECS.get(self.path.suffix.lower())
        if self.fourcc is None:
            raise SinkError(f"cannot write video {str(path)!r}: use one of {', '.join(self.CODECS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        h, w = frame_rgb.shape[:2]
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                raise SinkError(f"OpenCV cannot write {self.fourcc} video to {str(self.path)!r}")
            self.size = (w, h)
        if (w, h) != self.size:
            frame_rgb = cv2.resize(frame_rgb, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class ImageSequenceSink(VideoSink):
    """One image per frame: ``pattern % index`` (default ``<folder>/%06d.jpg``)."""

    def __init__(self, pattern: str, uri: str = "") -> None:
        self.uri = uri or pattern
        if "%" not in pattern:
            p = Path(pattern)
            pattern = str(p.with_name(p.stem + "_%06d" + p.suffix) if p.suffix else p / "%06d.jpg")
        if Path(pattern).suffix.lower() not in IMAGE_SEQUENCE_EXTENSIONS:
            raise SinkError(f"image sequence {pattern!r}: use one of {', '.join(IMAGE_SEQUENCE_EXTENSIONS)}")
        self.pattern = pattern
        Path(pattern).parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        path = self.pattern % self.frames
        if not cv2.imwrite(path, cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)):
            raise SinkError(f"cannot write {path!r}")
        self.frames += 1


#: a JSON route: (request body bytes, content type) -> (HTTP status, JSON-serialisable reply)
Route = Callable[[bytes, str], tuple[int, object]]

VIEWER_PAGE = """<!doctype html><html><head><title>radseg-edge</title></head>
<body style="font-family:sans-serif;background:#222;color:#eee">
<img id="v" style="max-width:100%"><br>
<form onsubmit="fetch('/vocab',{method:'POST',headers:H,
 body:JSON.stringify({classes:document.getElementById('c').value})}).then(r=>r.json())
 .then(j=>document.getElementById('s').textContent=JSON.stringify(j));return false;">
classes: <input id="c" size="60" placeholder="person, car, tree"> <button>apply</button></form>
<pre id="s"></pre>
<script>const T=new URLSearchParams(location.search).get('token');
const H={'Content-Type':'application/json'};if(T){H['Authorization']='Bearer '+T;}
document.getElementById('v').src='/stream'+(T?'?token='+encodeURIComponent(T):'');</script></body></html>"""

#: request bodies larger than this (bytes) are refused with 413 before they are read.
MAX_BODY_BYTES = 64 * 1024
#: connections served at once by default (more are answered 503 and closed).
DEFAULT_MAX_CLIENTS = 16
#: a client that went away (or stalled past the handler timeout): counted, never a traceback.
_DISCONNECTS = (ConnectionError, TimeoutError, socket.timeout)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (an HTTP server bound there is not reachable from the network)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _one_shot_reply(status: HTTPStatus, error: str) -> bytes:
    body = json.dumps({"ok": False, "error": error}).encode()
    head = (f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with at most ``max_clients`` handler threads; extra connections get 503.
    Client disconnects are counted (``disconnects``), other handler errors logged as one line."""

    daemon_threads = False  # handler threads are joined by server_close()
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type, max_clients: int,
                 log: Callable[[str], None]) -> None:
        if int(max_clients) < 1:
            raise SinkError(f"max_clients must be at least 1, got {max_clients}")
        self.max_clients = int(max_clients)
        self._slots = threading.BoundedSemaphore(self.max_clients)
        self.refused = 0
        self.disconnects = 0
        self.errors = 0
        self._count_lock = threading.Lock()
        self.log = log
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver signature
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                request.settimeout(1.0)
                request.sendall(_one_shot_reply(HTTPStatus.SERVICE_UNAVAILABLE,
                                                f"too many clients (at most {self.max_clients}); try again later"))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: give the slot back
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def count_disconnect(self) -> None:
        with self._count_lock:
            self.disconnects += 1

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECTS):
            self.count_disconnect()
            return
        self.errors += 1
        self.log(f"MJPEG server: request from {client_address[0]} failed ({type(exc).__name__}: {str(exc)[:200]})")


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class MjpegSink(VideoSink):
    """MJPEG over HTTP from a stdlib ``ThreadingHTTPServer`` in its own (joined, non-daemon) thread.

    Routes: ``GET /`` viewer page, ``GET /stream`` multipart/x-mixed-replace MJPEG,
    ``GET /frame.jpg`` the newest frame, plus any added with :meth:`add_route`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80, uri: str = "",
                 token: str | None = None, max_clients: int = DEFAULT_MAX_CLIENTS, max_body: int = MAX_BODY_BYTES,
                 log: Callable[[str], None] = _log_stderr) -> None:
        """``token``: required on every request when set; generated when None and ``host`` is not loopback
        (``token_generated`` then says so: print it). ``max_clients``: connections served at once.
        ``max_body``: largest request body in bytes."""
        if token is not None and not token.strip():
            raise SinkError("the HTTP token is empty: give a non-empty --http-token")
        self.token_generated = token is None and not is_loopback(host)
        self.token = secrets.token_urlsafe(18) if self.token_generated else token
        self.max_body = int(max_body)
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._closing = threading.Event()
        self.routes: dict[tuple[str, str], Route] = {}
        sink = self

        class Handler(_Handler):
            owner = sink

        try:
            self.server = _BoundedHTTPServer((host, port), Handler, max_clients, log)
        except OSError as exc:
            raise SinkError(f"cannot serve MJPEG on {host}:{port} ({exc.strerror}); pick another port") from exc
        self.host = host
        self.port = int(self.server.server_address[1])
        self.uri = uri or f"http://{host}:{port}"
        self.url = f"http://{host}:{self.port}"
        self.frames = 0
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"mjpeg-server:{self.port}")
        self._thread.start()

    @property
    def viewer_url(self) -> str:
        """The viewer page's URL (with the token when one is required)."""
        return f"{self.url}/" + (f"?token={self.token}" if self.token else "")

    def stats(self) -> dict[str, int]:
        """Connections refused (over max_clients), client disconnects and other request errors so far."""
        return {"refused": self.server.refused, "disconnects": self.server.disconnects, "errors": self.server.errors}

    def add_route(self, method: str, path: str, route: Route) -> None:
        """Serve ``route`` at ``method path`` (JSON reply)."""
        self.routes[(method.upper(), path)] = route

    def write(self, frame_rgb: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            raise SinkError("JPEG encoding failed")
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq += 1
            self._cond.notify_all()
        self.frames += 1

    def wait_frame(self, after_seq: int, timeout: float) -> tuple[int, bytes | None]:
        """The newest JPEG once its sequence number exceeds ``after_seq`` (or the current one on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after_seq or self._closing.is_set(), timeout=timeout)
            return self._seq, self._jpeg

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    owner: MjpegSink
    protocol_version = "HTTP/1.0"
    timeout = 10.0  # seconds a stalled viewer may block a write before it is dropped
    server_version = "radseg-edge"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by default
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _authorised(self) -> bool:
        """True when no token is required or the request carries it (Bearer header or ?token=)."""
        token = self.owner.token
        if token is None:
            return True
        given = ""
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        else:
            given = (parse_qs(urlsplit(self.path).query).get("token") or [""])[0]
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
        self._json(HTTPStatus.UNAUTHORIZED, {"ok": False, "error": "a token is required: Authorization: Bearer TOKEN "
                                                                   "or ?token=TOKEN (printed when the server started)"})
        return False

    def _read_body(self, method: str) -> bytes | None:
        """The request body, or None after replying 411/400/413 (missing, bad or too large Content-Length)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            if method == "POST":
                self._json(HTTPStatus.LENGTH_REQUIRED, {"ok": False, "error": "Content-Length is required"})
                return None
            return b""
        try:
            length = int(raw.strip())
        except ValueError:
            length = -1
        if length < 0:
            self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "Content-Length must be a whole number >= 0"})
            return None
        if length > self.owner.max_body:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"ok": False, "error": f"request body of {length} bytes is over the limit of {self.owner.max_body}"})
            return None
        return self.rfile.read(length) if length else b""

    def _same_origin(self) -> bool:
        """Refuse a browser's cross-site POST (its Origin names another host than the one it talks to)."""
        origin = self.headers.get("Origin")
        if origin is None or urlsplit(origin).netloc == self.headers.get("Host", ""):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "cross-origin requests are refused"})
        return False

    def _route(self, method: str) -> bool:
        route = self.owner.routes.get((method, urlsplit(self.path).path))
        if route is None:
            return False
        if method == "POST" and not self._same_origin():
            return True
        body = self._read_body(method)
        if body is None:
            return True
        try:
            status, reply = route(body, self.headers.get("Content-Type", ""))
        except Exception as exc:  # a route bug must not kill the server
            status, reply = HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        self._json(int(status), reply)
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorised():
            return
        if not self._route("POST"):
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no POST route {urlsplit(self.path).path[:100]}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorised():
            return
        path = urlsplit(self.path).path
        if self._route("GET"):
            return
        if path == "/":
            self._send(HTTPStatus.OK, VIEWER_PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/frame.jpg":
            _, jpeg = self.owner.wait_frame(0, timeout=5.0)
            if jpeg is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": "no frame yet"})
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg")
        elif path == "/stream":
            self._stream()
        else:
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no route {path[:100]}"})

    def _stream(self) -> None:
        boundary = "radsegframe"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={boundary}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = 0
        try:
            while not self.owner.closing:
                new_seq, jpeg = self.owner.wait_frame(seq, timeout=0.25)
                if jpeg is None or new_seq == seq:
                    continue
                seq = new_seq
                self.wfile.write(
                    f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg + b"\r\n"
                )
                self.wfile.flush()
        except OSError:  # the viewer went away or stalled: counted, not an error
            self.server.count_disconnect()  # type: ignore[attr-defined]


def open_sink(uri: str, fps: float | None = None, http_token: str | None = None,
              http_max_clients: int = DEFAULT_MAX_CLIENTS) -> VideoSink:
    """Open an output URI (see the module table). ``http_token`` / ``http_max_clients`` apply to an MJPEG
    sink (see :class:`MjpegSink`)."""
    text = str(uri).strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if text in ("null", "null://", "none") or scheme == "null":
        return NullSink(text)
    if scheme == "display":
        return DisplaySink(text)
    if scheme in ("http", "mjpeg"):
        host = parts.hostname or "127.0.0.1"
        port = parts.port if parts.port is not None else 8080
        return MjpegSink(host, port, uri=text, token=http_token, max_clients=http_max_clients)
    if scheme == "file":
        path = (parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else parts.path
    elif scheme and len(scheme) > 1:
        raise SinkError(
            f"unknown sink {text!r}: expected display://0, file://out.mp4, a folder for images, "
            "http://127.0.0.1:PORT (MJPEG) or null"
        )
    else:
        path = text
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return VideoFileSink(path, fps=fps or 30.0, uri=text)
    if "%" in path or suffix in IMAGE_SEQUENCE_EXTENSIONS or suffix == "" or path.endswith(("/", os.sep)):
        return ImageSequenceSink(path, uri=text)
    raise SinkError(f"cannot tell what kind of output {text!r} is: use a video (.mp4/.avi), a folder or a %d pattern")
