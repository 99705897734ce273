"""The MJPEG server and POST /vocab against hostile clients (127.0.0.1 only, every request bounded in time):
requested files confined to --vocab-dir and never quoted, JSON only as application/json, body limits,
bounded history, tokens, a cap on clients, no tracebacks when clients vanish, no cross-site POSTs."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from radseg_edge.errors import VocabularyError
from radseg_edge.runtime import sinks as sinks_module
from radseg_edge.runtime.live_vocab import MAX_ERROR_CHARS, RequestedFile, VocabularyController
from radseg_edge.runtime.sinks import MjpegSink, is_loopback
from radseg_edge.runtime.vocab import EmbeddingBank
from tests.runtime_fakes import FakeSegmenter, random_vocab

SECRET = "TOPSECRET-line"
START = ["sky", "road"]


class Applier:
    """Stands in for the stream worker: applies queued vocabulary changes every few milliseconds."""

    def __init__(self, controller: VocabularyController) -> None:
        self.controller = controller
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.controller.apply_pending()

    def __enter__(self) -> Applier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture()
def files(tmp_path):
    """A vocabulary folder (one good vocabulary, one class list of unknown names, a symlink out) and a
    secret file outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"{SECRET}1\n{SECRET}2\n")
    vocabs = tmp_path / "vocabs"
    vocabs.mkdir()
    random_vocab(["cat", "dog"]).save(vocabs / "pets.safetensors")
    (vocabs / "unknown.txt").write_text(f"{SECRET}3\n{SECRET}4\n")
    (vocabs / "link.txt").symlink_to(secret)
    return {"secret": secret, "vocabs": vocabs}


def _controller(vocab_dirs=(), log=None, history_limit=100):
    bank = EmbeddingBank()
    bank.add(random_vocab(START + ["cat"]))
    seg = FakeSegmenter(bank.resolve(START))
    return VocabularyController(seg, bank, log=log if log is not None else (lambda m: None),
                                vocab_dirs=vocab_dirs, history_limit=history_limit)


def _post(port: int, body: bytes, content_type: str | None = "application/json", headers: dict | None = None,
          path: str = "/vocab") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return what the server answers before it closes (at most ``timeout`` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_requested_files_outside_the_vocab_dirs_are_refused_and_never_quoted(files, capsys):
    logged: list[str] = []
    controller = _controller([files["vocabs"]], log=logged.append)
    sink = MjpegSink("127.0.0.1", 0)
    sink.add_route("POST", "/vocab", controller.http_post)
    try:
        for requested in (str(files["secret"]), "/etc/passwd", "/proc/self/environ", "../outside/secret.txt",
                          "link.txt", "unknown.txt", str(files["vocabs"] / "unknown.txt")):
            status, reply = _post(sink.port, json.dumps({"vocab": requested}).encode())
            assert status == 400 and not reply["ok"], requested
            text = json.dumps(reply)
            assert SECRET not in text and "root:" not in text, (requested, text)
            assert reply["classes"] == START
        with Applier(controller):
            status, reply = _post(sink.port, b'{"vocab": "pets.safetensors"}')  # inside --vocab-dir: allowed
        assert status == 200 and reply["classes"] == ["cat", "dog"]
    finally:
        sink.close()
    everything = json.dumps(controller.summary()) + "\n".join(logged) + capsys.readouterr().err
    assert SECRET not in everything and "root:" not in everything
    assert controller.counts == {"accepted": 1, "rejected": 7}


def test_without_vocab_dirs_only_the_operators_files_can_be_requested(files):
    controller = _controller()
    with pytest.raises(VocabularyError, match="none were given") as info:
        controller.resolve(RequestedFile(str(files["vocabs"] / "pets.safetensors")))
    assert "cat" not in str(info.value)
    controller.allow_file(files["vocabs"] / "pets.safetensors")  # what --vocab does
    assert controller.resolve(RequestedFile(str(files["vocabs"] / "pets.safetensors"))).names == ["cat", "dog"]
    with pytest.raises(VocabularyError, match="not available"):
        controller.resolve(RequestedFile(str(files["secret"])))  # the same check for the ROS 2 node


def test_json_is_read_only_with_the_json_content_type():
    controller = _controller()
    body = b'{"classes": ["cat"]}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        status, reply = controller.http_post(body, ctype)
        assert status == 415 and "application/json" in reply["error"], ctype
    status, reply = controller.http_post(b"a=b", "application/x-www-form-urlencoded")
    assert status == 415
    with Applier(controller):
        assert controller.http_post(body, "application/json; charset=utf-8")[0] == 200
        assert controller.http_post(b"sky, cat", "text/plain")[0] == 200


def test_request_bodies_are_limited_and_bad_lengths_answered_at_once():
    controller = _controller()
    sink = MjpegSink("127.0.0.1", 0, max_body=1024)
    sink.add_route("POST", "/vocab", controller.http_post)
    try:
        status, reply = _post(sink.port, b"x" * 4096, "text/plain")
        assert status == 413 and "1024" in reply["error"]
        head = b"POST /vocab HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        t0 = time.monotonic()
        assert b" 413 " in _raw(sink.port, head + b"Content-Length: 1000000000\r\n\r\n{")  # the body never comes
        assert b" 400 " in _raw(sink.port, head + b"Content-Length: -5\r\n\r\n{}")
        assert b" 400 " in _raw(sink.port, head + b"Content-Length: many\r\n\r\n{}")
        assert b" 411 " in _raw(sink.port, head + b"\r\n{}")
        assert time.monotonic() - t0 < 4.0  # answered without waiting for bodies or client timeouts
        assert controller.counts["rejected"] == 0  # refused before the controller saw anything
    finally:
        sink.close()


def test_error_history_and_error_texts_are_bounded():
    logged: list[str] = []
    controller = _controller(log=logged.append, history_limit=10)
    huge = json.dumps({"classes": [f"name{i}" for i in range(5000)]}).encode()
    for _ in range(30):
        assert controller.http_post(huge, "application/json")[0] == 400
    assert controller.counts["rejected"] == 30 and len(controller.history) == 10
    assert all(len(e["error"]) <= MAX_ERROR_CHARS for e in controller.history)
    assert max(len(m) for m in logged) < MAX_ERROR_CHARS + 100
    assert len(json.dumps(controller.summary())) < 10 * (MAX_ERROR_CHARS + 300)


def test_a_token_guards_every_route_and_one_is_generated_off_loopback(monkeypatch):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("camera.local")
    sink = MjpegSink("127.0.0.1", 0, token="s3cret")
    sink.write(np.zeros((8, 8, 3), np.uint8))
    try:
        assert _get(sink.port, "/frame.jpg")[0] == 401
        assert _get(sink.port, "/frame.jpg", {"Authorization": "Bearer wrong"})[0] == 401
        assert _post(sink.port, b"{}")[0] == 401
        assert _get(sink.port, "/frame.jpg", {"Authorization": "Bearer s3cret"})[0] == 200
        assert _get(sink.port, "/frame.jpg?token=s3cret")[0] == 200
        status, page = _get(sink.port, "/?token=s3cret")
        assert status == 200 and b"Bearer" in page
    finally:
        sink.close()
    # a bind address other than loopback always gets a token (pretend 127.0.0.1 were one: tests stay local)
    monkeypatch.setattr(sinks_module, "is_loopback", lambda host: False)
    sink = MjpegSink("127.0.0.1", 0)
    try:
        assert sink.token_generated and len(sink.token) >= 20 and sink.token in sink.viewer_url
        assert _get(sink.port, "/")[0] == 401
        assert _get(sink.port, f"/?token={sink.token}")[0] == 200
    finally:
        sink.close()
    assert MjpegSink.__init__.__defaults__ is not None  # loopback without a token stays open (the default)


def test_concurrent_clients_are_capped():
    sink = MjpegSink("127.0.0.1", 0, max_clients=2)
    sink.write(np.zeros((8, 8, 3), np.uint8))
    viewers = []
    try:
        for _ in range(2):  # two MJPEG viewers hold both slots
            conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
            conn.request("GET", "/stream")
            assert conn.getresponse().status == 200
            viewers.append(conn)
        status, body = _get(sink.port, "/")
        assert status == 503 and b"too many clients" in body
        viewers.pop().close()
        deadline = time.monotonic() + 5
        while _get(sink.port, "/")[0] != 200:  # the slot comes back once a frame write finds the viewer gone
            assert time.monotonic() < deadline
            sink.write(np.zeros((8, 8, 3), np.uint8))
            time.sleep(0.05)
        assert sink.stats()["refused"] >= 1
    finally:
        for v in viewers:
            v.close()
        sink.close()


def test_clients_that_vanish_mid_reply_are_counted_not_tracebacks(capfd):
    sink = MjpegSink("127.0.0.1", 0, quality=100)
    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    sink.write(noise)  # a multi-megabyte JPEG: the reply cannot fit in the socket buffers
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /frame.jpg HTTP/1.0\r\nHost: x\r\n\r\n")
            s.recv(1024)  # the reply has started
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # reset, mid-reply
        deadline = time.monotonic() + 5
        while sink.stats()["disconnects"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.stats()["disconnects"] >= 3
    finally:
        sink.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err


def test_cross_site_posts_are_refused():
    controller = _controller()
    sink = MjpegSink("127.0.0.1", 0)
    sink.add_route("POST", "/vocab", controller.http_post)
    try:
        status, reply = _post(sink.port, b'{"classes": ["cat"]}', headers={"Origin": "http://evil.example"})
        assert status == 403 and controller.counts == {"accepted": 0, "rejected": 0}
        with Applier(controller):  # the viewer page itself (same origin) may post
            status, _ = _post(sink.port, b'{"classes": ["cat"]}', headers={"Origin": f"http://127.0.0.1:{sink.port}"})
        assert status == 200
    finally:
        sink.close()


def test_a_plain_path_from_any_front_end_is_confined_too(files):
    """A ROS 2 or HTTP adapter that passes the client's text as a Path gets the same refusal."""
    from pathlib import Path

    controller = _controller([files["vocabs"]])
    with pytest.raises(VocabularyError, match="not available") as info:
        controller.resolve(Path(files["secret"]))
    assert SECRET not in str(info.value)
    assert controller.resolve(Path("pets.safetensors")).names == ["cat", "dog"]
