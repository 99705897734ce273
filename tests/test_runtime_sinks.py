"""Sinks named by URI: video files, image sequences, the MJPEG server (read over loopback), null, display."""

from __future__ import annotations

import http.client
import threading
import time

import cv2
import numpy as np
import pytest

from radseg_edge.runtime.sinks import (
    DisplaySink,
    ImageSequenceSink,
    MjpegSink,
    NullSink,
    SinkError,
    VideoFileSink,
    open_sink,
)
from radseg_edge.runtime.sources import open_source
from tests.runtime_fakes import frame_image


def read_mjpeg_frames(port: int, n: int, timeout: float = 5.0) -> list[np.ndarray]:
    """Read ``n`` JPEG parts of http://127.0.0.1:port/stream with http.client (bounded loops)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/stream")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("multipart/x-mixed-replace; boundary=")
        frames: list[np.ndarray] = []
        for _ in range(50 * n):  # header lines + parts; never loop forever
            line = resp.readline()
            assert line, "stream closed early"
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                assert resp.readline() == b"\r\n"
                jpeg = resp.read(length)
                frames.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
                if len(frames) == n:
                    return frames
        raise AssertionError("too few frames")
    finally:
        conn.close()


def test_open_sink_dispatches_on_uri(tmp_path):
    assert isinstance(open_sink("null"), NullSink)
    assert isinstance(open_sink(f"file://{tmp_path}/o.mp4"), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "o.avi")), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "frames") + "/"), ImageSequenceSink)
    assert isinstance(open_sink(str(tmp_path / "f" / "%04d.png")), ImageSequenceSink)
    with pytest.raises(SinkError, match="unknown sink"):
        open_sink("rtp://1.2.3.4:5000")


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_video_file_sink_round_trips(tmp_path, ext):
    sink = open_sink(str(tmp_path / f"out{ext}"), fps=5)
    for i in range(6):
        sink.write(frame_image(i))
    sink.close()
    src = open_source(str(tmp_path / f"out{ext}"))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f.image)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert np.abs(frames[3].astype(int) - frame_image(3)).mean() < 12  # lossy codec, same picture


def test_image_sequence_sink_numbers_files(tmp_path):
    sink = ImageSequenceSink(str(tmp_path / "seq" / "%03d.png"))
    for i in range(3):
        sink.write(frame_image(i))
    files = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert files == ["000.png", "001.png", "002.png"]
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "seq" / "002.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, frame_image(2))  # PNG is lossless, RGB order kept


def test_display_sink_refuses_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("radseg_edge.runtime.sinks.display_available", lambda: False)
    with pytest.raises(SinkError, match="no display"):
        DisplaySink()


def test_mjpeg_server_serves_frames_to_a_real_http_client_on_loopback():
    before = set(threading.enumerate())
    sink = open_sink("http://127.0.0.1:0")
    assert isinstance(sink, MjpegSink) and sink.host == "127.0.0.1" and sink.port > 0
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set() and i < 2000:
            sink.write(frame_image(i))
            i += 1
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        frames = read_mjpeg_frames(sink.port, 3)
        assert all(f.shape == (48, 64, 3) for f in frames)
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", "/frame.jpg")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", "/")
        assert b"/stream" in conn.getresponse().read()
        conn.close()
    finally:
        stop.set()
        producer.join()
        sink.close()
    assert set(threading.enumerate()) - before == set()


def test_mjpeg_default_host_is_localhost_and_busy_port_is_a_clear_error():
    sink = open_sink("http://:0")
    try:
        assert sink.host == "127.0.0.1"
        with pytest.raises(SinkError, match="pick another port"):
            MjpegSink("127.0.0.1", sink.port)
    finally:
        sink.close()
