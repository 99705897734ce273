"""Live vocabulary: cached embeddings, HTTP POST /vocab mid-stream, watched file, rejected updates."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
import torch

from radseg_edge.errors import VocabularyError
from radseg_edge.models.text import Vocabulary
from radseg_edge.runtime.live_vocab import VocabularyController, VocabularyFileWatcher
from radseg_edge.runtime.pipeline import StreamConfig, StreamPipeline
from radseg_edge.runtime.sinks import MjpegSink
from radseg_edge.runtime.sources import open_source
from radseg_edge.runtime.vocab import EmbeddingBank, load_vocabulary_file, parse_class_names
from tests.runtime_fakes import DIM, FakeSegmenter, random_vocab, write_images
from tests.test_runtime_sinks import read_mjpeg_frames

START = ["sky", "road", "tree"]
EXTRA = ["cat", "dog", "forbidden"]


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", "/vocab", body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_class_names_parse_from_commas_or_lines():
    assert parse_class_names("a, b ,c") == ["a", "b", "c"]
    assert parse_class_names("# classes\nperson\n\ntraffic light  # comment\n") == ["person", "traffic light"]


def test_bank_resolves_cached_names_and_rejects_unknown_or_mismatched():
    bank = EmbeddingBank()
    bank.add(random_vocab(START + EXTRA))
    v = bank.resolve(["dog", "sky"])
    assert v.names == ["dog", "sky"] and v.embeddings.shape == (2, DIM)
    torch.testing.assert_close(v.embeddings[0], random_vocab(START + EXTRA).embeddings[4])
    with pytest.raises(VocabularyError, match="no cached text embedding for \\['zebra'\\]"):
        bank.resolve(["dog", "zebra"])
    with pytest.raises(VocabularyError, match="no class names"):
        bank.resolve([])
    with pytest.raises(VocabularyError, match="duplicate"):
        bank.resolve(["dog", "dog"])
    with pytest.raises(VocabularyError, match="dimension"):
        bank.add(random_vocab(["x"], dim=DIM + 1))


def test_bank_encodes_new_names_once_with_an_encoder():
    calls = []

    def encoder(names):
        calls.append(list(names))
        return torch.ones(len(names), DIM)

    bank = EmbeddingBank(encoder=encoder)
    bank.add(random_vocab(START))
    bank.resolve(["sky", "zebra"])
    bank.resolve(["zebra"])
    assert calls == [["zebra"]]


def test_vocabulary_files_are_cached_and_bad_files_rejected(tmp_path):
    v = random_vocab(["a", "b"])
    path = v.save(tmp_path / "v.safetensors")
    got = load_vocabulary_file(path)
    assert got.names == ["a", "b"]
    torch.testing.assert_close(got.embeddings, v.embeddings)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VocabularyError):
        load_vocabulary_file(tmp_path / "junk.safetensors")
    with pytest.raises(VocabularyError, match="not found"):
        load_vocabulary_file(tmp_path / "missing.safetensors")
    nan = Vocabulary.from_embeddings(["x"], torch.full((1, DIM), float("nan")))
    with pytest.raises(VocabularyError, match="NaN"):
        EmbeddingBank().add(nan)


def test_vocabulary_change_over_http_takes_effect_mid_stream_and_bad_ones_are_rejected(tmp_path):
    before = set(threading.enumerate())
    folder = write_images(tmp_path / "imgs", 4)
    bank = EmbeddingBank()
    bank.add(random_vocab(START + EXTRA))
    seg = FakeSegmenter(bank.resolve(START), delay_s=0.003)
    controller = VocabularyController(seg, bank, log=lambda m: None)
    sink = MjpegSink("127.0.0.1", 0)
    sink.add_route("POST", "/vocab", controller.http_post)
    sink.add_route("GET", "/vocab", controller.http_get)
    pipeline = StreamPipeline(open_source(str(folder), loop=True), seg, [sink], StreamConfig(drop="latest"),
                              vocab=controller, log=lambda m: None)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(pipeline.run()))
    runner.start()
    try:
        wait_until(lambda: len(seg.calls) >= 3)
        assert len(read_mjpeg_frames(sink.port, 2)) == 2

        bad = [
            (b'{"classes": ["cat", "zebra"]}', "application/json", "no cached text embedding"),
            (b'{"classes": []}', "application/json", "no class names"),
            (b"{not json", "application/json", "not valid JSON"),
            (b'{"classes": ["cat", "forbidden"]}', "application/json", "refuses"),  # model-side rejection
            (b'{"vocab": "/nonexistent/vocab.safetensors"}', "application/json", "not available"),
        ]
        for body, ctype, message in bad:
            status, reply = post(sink.port, body, ctype)
            assert status == 400 and message in reply["error"], (body, reply)
            assert reply["classes"] == START  # old vocabulary kept
        assert seg.class_names == tuple(START)

        status, reply = post(sink.port, b"cat, dog", "text/plain")
        assert status == 200 and reply["ok"] and reply["classes"] == ["cat", "dog"]
        n_after = len(seg.calls)
        wait_until(lambda: len(seg.calls) >= n_after + 2)
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", "/vocab")
        current = json.loads(conn.getresponse().read())
        conn.close()
        assert current["classes"] == ["cat", "dog"] and "forbidden" in current["cached"]
    finally:
        pipeline.stop("test done")
        runner.join(15)
    assert not runner.is_alive()
    first_new = seg.calls.index(("cat", "dog"))
    assert first_new >= 3
    assert all(c == tuple(START) for c in seg.calls[:first_new])
    assert all(c == ("cat", "dog") for c in seg.calls[first_new:])  # never a mix after the switch
    changes = result["vocabulary"]["changes"]
    assert [c["ok"] for c in changes] == [False] * 5 + [True]
    assert result["vocabulary"]["classes"] == ["cat", "dog"]
    assert set(threading.enumerate()) - before == set()


def test_watched_class_list_switches_classes(tmp_path):
    folder = write_images(tmp_path / "imgs", 2)
    bank = EmbeddingBank()
    bank.add(random_vocab(START + EXTRA))
    seg = FakeSegmenter(bank.resolve(START))
    controller = VocabularyController(seg, bank, log=lambda m: None)
    watched = tmp_path / "classes.txt"
    watched.write_text("sky\nroad\ntree\n")
    watcher = VocabularyFileWatcher(watched, controller, interval=0.02).start()
    pipeline = StreamPipeline(open_source(str(folder), loop=True), seg, [], StreamConfig(drop="latest"),
                              vocab=controller, log=lambda m: None)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        wait_until(lambda: len(seg.calls) >= 2)
        watched.write_text("dog\ncat\n")
        wait_until(lambda: seg.class_names == ("dog", "cat"))
        watched.write_text("dog\nunicorn\n")  # rejected: the old classes stay
        wait_until(lambda: any(not c["ok"] for c in controller.history))
        assert seg.class_names == ("dog", "cat")
        assert "unicorn" in controller.history[-1]["error"]
    finally:
        watcher.stop()
        pipeline.stop()
        runner.join(15)
    assert not runner.is_alive()


def test_update_of_a_vocabulary_object_with_wrong_dimension_is_rejected_by_the_model():
    seg = FakeSegmenter(random_vocab(START))
    bank = EmbeddingBank()
    controller = VocabularyController(seg, bank, log=lambda m: None)
    fut = controller.submit(Vocabulary.from_embeddings(["a"], torch.ones(1, DIM + 3)))
    controller.apply_pending()
    with pytest.raises(VocabularyError, match="dimension"):
        fut.result(0)
    assert seg.class_names == tuple(START) and controller.version == 0
