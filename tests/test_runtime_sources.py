"""Sources named by URI: parsing, video files (mp4v, MJPG), image folders/globs, reconnect back-off."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from radseg_edge.errors import RadsegError
from radseg_edge.runtime.sources import (
    Backoff,
    Frame,
    ReconnectingSource,
    SourceError,
    SourceSpec,
    VideoSource,
    open_source,
    opencv_has_gstreamer,
    parse_source,
)
from tests.runtime_fakes import frame_image, write_images, write_video


def test_uris_are_classified_like_jetson_inference(tmp_path):
    video = write_video(tmp_path / "v.avi", 2, "MJPG")
    folder = write_images(tmp_path / "imgs", 2)
    cases = {
        "csi://0": ("csi", "0"),
        "csi://1?width=640&height=480": ("csi", "1"),
        "v4l2:///dev/video0": ("v4l2", "/dev/video0"),
        "v4l2://1": ("v4l2", "/dev/video1"),
        "0": ("camera", "0"),
        "rtsp://cam.local:554/live": ("rtsp", "rtsp://cam.local:554/live"),
        "http://127.0.0.1:8080/stream": ("http", "http://127.0.0.1:8080/stream"),
        f"file://{video}": ("file", str(video)),
        str(video): ("file", str(video)),
        str(folder): ("images", str(folder)),
        str(folder / "*.png"): ("images", str(folder / "*.png")),
        str(folder / "0000.png"): ("images", str(folder / "0000.png")),
        "videotestsrc ! videoconvert ! appsink": ("gstreamer", "videotestsrc ! videoconvert ! appsink"),
    }
    for uri, (kind, location) in cases.items():
        spec = parse_source(uri)
        assert (spec.kind, spec.location) == (kind, location), uri
    assert parse_source("csi://1?width=640&height=480").options == {"width": "640", "height": "480"}
    assert parse_source("rtsp://x/y").network and parse_source("rtsp://x/y").live
    assert not parse_source(str(video)).live and parse_source("0").live


@pytest.mark.parametrize("uri", ["does/not/exist.mp4", "ftp://host/video", "csi://front"])
def test_bad_source_is_a_clear_error(uri):
    with pytest.raises(SourceError) as info:
        parse_source(uri)
    assert isinstance(info.value, RadsegError)
    assert uri.split("/")[-1].split(":")[0] in str(info.value) or "csi://0" in str(info.value)


def test_unreadable_video_file_says_so(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(SourceError, match="cannot open source"):
        open_source(str(bad))


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_csi_without_gstreamer_names_what_to_install():
    with pytest.raises(SourceError) as info:
        open_source("csi://0")
    msg = str(info.value)
    assert "GStreamer" in msg and "python3-opencv" in msg


@pytest.mark.parametrize("fourcc,ext", [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_video_file_yields_every_frame_as_rgb(tmp_path, fourcc, ext):
    path = write_video(tmp_path / f"clip{ext}", 7, fourcc)
    with open_source(f"file://{path}") as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [f.index for f in frames] == list(range(7))
    img = frames[0].image
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    # the red ramp rises left to right in channel 0 (RGB order, not OpenCV's BGR)
    assert img[24, -1, 0] > 200 and img[24, 0, 0] < 40
    assert all(f.t_start <= f.t_ready for f in frames)


def test_image_folder_and_glob_are_sorted_and_loop(tmp_path):
    folder = write_images(tmp_path / "seq", 4, ".png")
    (folder / "notes.txt").write_text("not an image")
    src = open_source(str(folder))
    imgs = [src.read() for _ in range(5)]
    assert imgs[4] is None
    np.testing.assert_array_equal(imgs[2].image, frame_image(2))
    looped = open_source(str(folder / "*.png"), loop=True)
    assert [looped.read().index for _ in range(6)] == list(range(6))
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "*.jpg"))


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    folder = write_images(tmp_path / "seq", 3, ".png")
    (folder / "0001.png").write_bytes(b"corrupt")
    logs: list[str] = []
    src = open_source(str(folder), log=logs.append)
    indices = []
    while (f := src.read()) is not None:
        indices.append(f.index)
    assert indices == [0, 1] and src.skipped == [str(folder / "0001.png")] and "0001.png" in logs[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"corrupt")
    with pytest.raises(SourceError, match="could be read"):
        open_source(str(bad), loop=True, log=logs.append).read()


class _Flaky(VideoSource):
    """Gives ``n`` frames then ends (a dropped network stream)."""

    def __init__(self, n: int) -> None:
        self.spec = SourceSpec("rtsp://test/live", "rtsp", "rtsp://test/live")
        self.n = n

    def read(self) -> Frame | None:
        if self.n == 0:
            return None
        self.n -= 1
        return Frame(frame_image(0), 0, 0.0, 0.0)


def test_network_source_reconnects_with_backoff_then_gives_up():
    attempts = []
    outcomes = iter(["ok", "fail", "fail", "ok"])

    def opener():
        attempts.append(next(outcomes, "fail"))
        if attempts[-1] == "fail":
            raise SourceError("host unreachable")
        return _Flaky(2)

    logs: list[str] = []
    spec = SourceSpec("rtsp://test/live", "rtsp", "rtsp://test/live")
    src = ReconnectingSource(spec, opener, Backoff(initial=0.01, factor=2.0, maximum=0.04, give_up_after=0.3),
                             log=logs.append)
    indices = []
    while (f := src.read()) is not None:
        indices.append(f.index)
    assert indices == [0, 1, 2, 3]  # 2 frames, lost, 2 failed reconnects, 2 more frames, then gave up
    assert src.reconnects == 1
    assert any("giving up" in m for m in logs) and any(m.endswith("reconnected") for m in logs)
    delays = [float(m.split(" in ")[1].split(" s")[0]) for m in logs if "reconnect attempt" in m]
    assert delays[:3] == [0.01, 0.02, 0.04]  # growing back-off


def test_reconnect_wait_is_interrupted_by_stop():
    stop = threading.Event()
    opened = []

    def opener():
        opened.append(1)
        if len(opened) > 1:
            raise SourceError("down")
        return _Flaky(0)

    src = ReconnectingSource(SourceSpec("http://x/s", "http", "http://x/s"), opener,
                             Backoff(initial=30.0, give_up_after=1000.0), stop=stop, log=lambda m: stop.set())
    assert src.read() is None  # would wait 30 s without the stop event


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_first_connection_is_retried_until_the_server_comes_up():
    """The camera server starts 0.6 s after the stream: the first connection is retried, not fatal."""
    from radseg_edge.runtime.sinks import MjpegSink

    port = _free_port()
    started: list[MjpegSink] = []
    stop = threading.Event()

    def late_server():
        time.sleep(0.6)
        sink = MjpegSink("127.0.0.1", port)
        started.append(sink)
        i = 0
        while not stop.wait(0.01):
            sink.write(frame_image(i))
            i += 1

    t = threading.Thread(target=late_server)
    t.start()
    logs: list[str] = []
    try:
        src = open_source(f"http://127.0.0.1:{port}/stream",
                          backoff=Backoff(initial=0.1, maximum=0.2, give_up_after=10.0), log=logs.append)
        try:
            assert src.read().image.shape == (48, 64, 3)
            assert src.failed_attempts >= 1 and any("not reachable yet" in m for m in logs)
        finally:
            src.close()
    finally:
        stop.set()
        t.join(10)
        for sink in started:
            sink.close()


def test_first_connection_gives_up_after_the_reconnect_timeout_with_one_line():
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no answer within") as info:
        open_source(f"http://127.0.0.1:{port}/stream", backoff=Backoff(initial=0.1, maximum=0.2, give_up_after=1.0),
                    log=lambda m: None)
    assert time.monotonic() - t0 < 3.0 and "\n" not in str(info.value) and "--reconnect-timeout 1" in str(info.value)


def test_a_listener_that_never_answers_is_bounded_by_the_reconnect_timeout():
    """A loopback socket that accepts connections and never replies: OpenCV's FFmpeg would wait 30 s;
    the open timeout comes from --reconnect-timeout (here 1.5 s)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="cannot open source"):
            open_source(f"http://127.0.0.1:{port}/stream", backoff=Backoff(initial=0.1, give_up_after=1.5),
                        log=lambda m: None)
        elapsed = time.monotonic() - t0
    assert elapsed < 6.0, f"opening took {elapsed:.1f} s with a 1.5 s reconnect timeout"


def test_http_source_reads_an_mjpeg_server_and_reconnects_after_it_restarts():
    """A real network source: our MJPEG sink on loopback, stopped and restarted on the same port."""
    from radseg_edge.runtime.sinks import MjpegSink

    def serve(port: int):
        sink = MjpegSink("127.0.0.1", port)
        stop = threading.Event()

        def produce():
            for i in range(3000):
                if stop.wait(0.01):
                    return
                sink.write(frame_image(i))

        t = threading.Thread(target=produce)
        t.start()
        return sink, stop, t

    def shutdown(server):
        sink, stop, t = server
        stop.set()
        t.join()
        sink.close()

    server = serve(0)
    port = server[0].port
    logs: list[str] = []
    src = open_source(f"http://127.0.0.1:{port}/stream", backoff=Backoff(initial=0.05, maximum=0.2, give_up_after=10.0),
                      log=logs.append)
    try:
        assert src.read().image.shape == (48, 64, 3)
        shutdown(server)
        server = serve(port)
        frames = [src.read() for _ in range(3)]  # reads through the outage (bounded by give_up_after)
        assert all(f is not None and f.image.shape == (48, 64, 3) for f in frames)
        assert src.reconnects >= 1 and any("reconnected" in m for m in logs)
    finally:
        src.close()
        shutdown(server)


def test_realtime_playback_makes_a_file_behave_like_a_camera(tmp_path):
    video = write_video(tmp_path / "v.avi", 6, "MJPG", fps=50.0)
    src = open_source(str(video), realtime=0)  # the file's own rate
    assert src.live and src.fps == pytest.approx(50.0)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert 1 <= len(frames) <= 6
    assert [f.index for f in frames] == sorted({f.index for f in frames}) and frames[-1].index <= 5
    assert all(a.t_start <= b.t_start for a, b in zip(frames, frames[1:], strict=False))
    with pytest.raises(SourceError, match="positive"):
        open_source(str(video), realtime=-1.0)
