"""The threaded streaming pipeline: frame counts, dropping, stage accounting, shutdown, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from radseg_edge.errors import InputError
from radseg_edge.runtime.pipeline import FrameSlot, StreamConfig, StreamPipeline
from radseg_edge.runtime.report import format_summary, write_profile
from radseg_edge.runtime.sinks import ImageSequenceSink, NullSink, VideoFileSink
from radseg_edge.runtime.sources import Frame, open_source
from tests.runtime_fakes import FakeSegmenter, random_vocab, write_images, write_video

NAMES = ["sky", "road", "tree"]


@pytest.fixture
def no_thread_leak():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set(), "threads left behind"


def run(source, segmenter=None, sinks=None, **config):
    segmenter = segmenter or FakeSegmenter(random_vocab(NAMES))
    sinks = sinks if sinks is not None else [NullSink()]
    return StreamPipeline(source, segmenter, sinks, StreamConfig(**config), log=lambda m: None).run()


@pytest.mark.parametrize("fourcc,ext", [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_every_frame_of_a_video_is_segmented_and_written(tmp_path, fourcc, ext, no_thread_leak):
    video = write_video(tmp_path / f"in{ext}", 12, fourcc)
    out = VideoFileSink(str(tmp_path / "out.avi"), fps=10)
    seq = ImageSequenceSink(str(tmp_path / "frames"))
    prof = run(open_source(str(video)), sinks=[out, seq])
    assert prof["frames"] == {"captured": 12, "processed": 12, "dropped": 0, "unprocessed_at_stop": 0}
    assert prof["stop_reason"] == "end of stream" and prof["drop_policy"] == "none"
    assert out.frames == 12 and len(list((tmp_path / "frames").glob("*.jpg"))) == 12
    src = open_source(str(tmp_path / "out.avi"))
    n = 0
    while src.read() is not None:
        n += 1
    assert n == 12


def test_image_folder_with_max_frames_stops_exactly(tmp_path, no_thread_leak):
    folder = write_images(tmp_path / "imgs", 10)
    seg = FakeSegmenter(random_vocab(NAMES))
    sink = NullSink()
    prof = run(open_source(str(folder), loop=True), seg, [sink], max_frames=7)
    assert prof["frames"]["processed"] == 7 and sink.frames == 7 and len(seg.calls) == 7
    assert prof["stop_reason"] == "max frames reached"
    fr = prof["frames"]
    assert fr["captured"] == fr["processed"] + fr["dropped"] + fr["unprocessed_at_stop"]


def test_slow_model_on_a_live_source_drops_stale_frames_and_counts_them(tmp_path, no_thread_leak):
    n = 15
    video = write_video(tmp_path / "live.avi", n, "MJPG")
    source = open_source(str(video))
    read_all = threading.Event()
    inner_read = source.read

    def read():
        frame = inner_read()
        if frame is None:
            read_all.set()
        return frame

    source.read = read

    def slow_first_frame(i):
        if i == 0:  # the model is busy with frame 0 while the camera delivers the rest
            assert read_all.wait(10.0)
            time.sleep(0.01)

    seg = FakeSegmenter(random_vocab(NAMES), before_call=slow_first_frame)
    prof = run(source, seg, drop="latest")
    fr = prof["frames"]
    assert prof["drop_policy"] == "latest"
    assert fr["captured"] == n
    assert fr["processed"] + fr["dropped"] == n and fr["unprocessed_at_stop"] == 0
    assert fr["dropped"] >= n - 2 and 1 <= fr["processed"] <= 2


def test_a_paced_file_uses_the_live_drop_policy(tmp_path, no_thread_leak):
    video = write_video(tmp_path / "v.avi", 8, "MJPG", fps=40.0)
    prof = run(open_source(str(video), realtime=0), FakeSegmenter(random_vocab(NAMES), delay_s=0.03))
    fr = prof["frames"]
    assert prof["drop_policy"] == "latest" and fr["processed"] >= 1
    assert fr["captured"] == fr["processed"] + fr["dropped"] + fr["unprocessed_at_stop"]


def test_stage_means_add_up_to_end_to_end_latency(tmp_path, no_thread_leak):
    video = write_video(tmp_path / "a.avi", 20, "MJPG")
    prof = run(open_source(str(video)), FakeSegmenter(random_vocab(NAMES), delay_s=0.002))
    stages = prof["stages"]
    assert list(stages)[:2] == ["decode", "wait_infer"]
    assert list(stages)[-4:] == ["model_other", "wait_render", "overlay", "encode"]
    assert {"preprocess", "backbone", "head"} <= set(stages)
    assert "postprocess" not in stages  # nested inside "head": not counted twice
    total = sum(s["mean_ms"] for s in stages.values())
    e2e = prof["end_to_end"]["mean_ms"]
    assert abs(total - e2e) <= 0.05 * e2e
    assert prof["accounting"]["relative_error"] <= 0.05
    assert all(s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] for s in stages.values())
    assert prof["fps"] > 0 and stages["backbone"]["p50_ms"] >= 2.0


def test_profile_is_written_as_json_and_csv(tmp_path):
    video = write_video(tmp_path / "a.avi", 5, "MJPG")
    prof = run(open_source(str(video)))
    json_path, csv_path = write_profile(prof, tmp_path / "out" / "prof.json")
    data = json.loads(json_path.read_text())
    assert data["frames"]["processed"] == 5 and "p99_ms" in data["stages"]["backbone"]
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["stage"] for r in rows] == list(prof["stages"]) + ["end_to_end"]
    assert float(rows[-1]["p50_ms"]) == pytest.approx(prof["end_to_end"]["p50_ms"], abs=1e-3)
    text = format_summary(prof)
    assert "5 processed" in text and "backbone" in text


def test_model_error_stops_the_stream_and_is_raised(tmp_path, no_thread_leak):
    folder = write_images(tmp_path / "imgs", 3)

    class Broken(FakeSegmenter):
        def __call__(self, frame):
            if len(self.calls) == 1:
                raise InputError("the model cannot take this frame")
            return super().__call__(frame)

    seg = Broken(random_vocab(NAMES))
    sink = NullSink()
    with pytest.raises(InputError, match="cannot take"):
        StreamPipeline(open_source(str(folder), loop=True), seg, [sink], log=lambda m: None).run()
    assert len(seg.calls) == 1 and sink.frames <= 1


def test_stop_from_another_thread_joins_everything(tmp_path, no_thread_leak):
    folder = write_images(tmp_path / "imgs", 3)
    started = threading.Event()
    seg = FakeSegmenter(random_vocab(NAMES), before_call=lambda i: started.set() if i == 2 else None)
    p = StreamPipeline(open_source(str(folder), loop=True), seg, [NullSink()], StreamConfig(drop="latest"),
                       log=lambda m: None)
    result = {}
    t = threading.Thread(target=lambda: result.update(p.run()))
    t.start()
    assert started.wait(10.0)
    p.stop("test")
    t.join(10.0)
    assert not t.is_alive() and result["stop_reason"] == "test" and result["frames"]["processed"] >= 2


def test_frames_segmented_before_a_stop_are_still_written(tmp_path, no_thread_leak):
    folder = write_images(tmp_path / "imgs", 3)
    holder: dict = {}

    class SlowSink(NullSink):
        def write(self, frame_rgb):
            time.sleep(0.05)  # rendering lags behind inference: segmented frames wait in the queue
            super().write(frame_rgb)

    def stop_at_fourth(i):
        if i == 3:
            holder["p"].stop("test")

    sink = SlowSink()
    seg = FakeSegmenter(random_vocab(NAMES), before_call=stop_at_fourth)
    holder["p"] = StreamPipeline(open_source(str(folder), loop=True), seg, [sink], log=lambda m: None)
    prof = holder["p"].run()
    assert sink.frames == 3 and prof["frames"]["processed"] == 3 and len(seg.calls) == 4


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM semantics")
def test_sigterm_ends_the_stream_cleanly_with_a_summary(tmp_path, no_thread_leak):
    folder = write_images(tmp_path / "imgs", 3)
    before = signal.getsignal(signal.SIGTERM)

    def terminate(i):
        if i == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    seg = FakeSegmenter(random_vocab(NAMES), before_call=terminate)
    prof = StreamPipeline(open_source(str(folder), loop=True), seg, [NullSink()], log=lambda m: None).run()
    assert prof["stop_reason"] == "SIGTERM" and prof["frames"]["processed"] >= 3
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored


def test_frame_slot_keep_latest_counts_replaced_frames():
    slot = FrameSlot(keep_latest=True)
    for i in range(4):
        slot.put(Frame(np.zeros((2, 2, 3), np.uint8), i, 0.0, 0.0))
    assert slot.dropped == 3 and slot.get(0.0).index == 3
    slot.close()
    assert slot.get(0.0) is None and slot.finished


def test_stage_records_stay_bounded_and_keep_describing_the_whole_run():
    from radseg_edge.runtime.pipeline import StageRecords

    rec = StageRecords(cap=100)
    for i in range(1000):
        stages = {"decode": 1.0, "backbone": float(i)}
        if i >= 500:
            stages["late"] = 2.0  # a stage that appears mid-run: 0 ms before
        rec.add(stages, e2e_ms=float(i) + 1.0)
    assert rec.count == 1000 and len(rec) < 100 and rec.last["backbone"] == 999.0
    table = rec.table()
    assert all(len(v) == len(rec) for v in table.values())
    assert table["backbone"].min() == 0.0 and table["backbone"].max() >= 900.0  # the whole run, evenly sampled
    assert abs(float(table["backbone"].mean()) - 499.5) < 20
    assert set(np.unique(table["late"])) <= {0.0, 2.0}


def test_the_model_profiler_does_not_grow_over_a_stream(tmp_path):
    """The pipeline reads each frame's model stages and then drains the segmenter's profiler."""
    seg = FakeSegmenter(random_vocab(["a", "b"]))
    pipeline = StreamPipeline(open_source(str(write_images(tmp_path / "imgs", 3)), loop=True), seg, [],
                              StreamConfig(drop="none", max_frames=40), log=lambda m: None)
    prof = pipeline.run()
    assert prof["frames"]["processed"] == 40 and "backbone" in prof["stages"]
    assert sum(len(v) for v in seg.profiler.samples.values()) <= 4  # at most one frame's stages left
