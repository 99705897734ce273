"""`radseg-edge serve` on 127.0.0.1 (free ports, bounded start-up, always torn down) over the tiny checkpoint's
Triton repository (tests/fixtures/tiny_radio.pth.tar), and the `triton` client backend: labels equal to the
local onnxruntime backend's on the same frames (single, batched, concurrent clients, gRPC and HTTP); a server
that is down and a model that is missing are one clear sentence."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from radseg_edge.backends import make_backend
from radseg_edge.export.build import synthetic_images
from radseg_edge.runtime.triton_serve import free_loopback_ports, serve_process
from tests._triton_helpers import FRAME_HW, MAX_BATCH, tiny_triton_repo

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("onnxruntime")

START_TIMEOUT_S = 180  # first run installs the private PyTriton folder with pip


def _frames(n: int, seed: int = 21) -> np.ndarray:
    return np.stack(synthetic_images(n, FRAME_HW, seed=seed))


@contextlib.contextmanager
def serving(*extra: str, token: str | None = None):
    """A `radseg-edge serve` process on free loopback ports: yields (grpc_port, http_port, metrics_port)."""
    with serve_process(tiny_triton_repo() / "radseg", "--providers", "cpu", "--threads", "1", "--max-batch",
                       str(MAX_BATCH), "--queue-delay-us", "50000", *extra, token=token,
                       ready_timeout=START_TIMEOUT_S) as server:
        yield server.grpc_port, server.http_port, server.metrics_port


@pytest.fixture(scope="module")
def server():
    with serving() as ports:
        yield ports


@pytest.fixture(scope="module")
def local():
    return make_backend("onnxruntime", export_dir=tiny_triton_repo() / "radseg", providers="cpu", threads=1)


def test_triton_backend_equals_local_onnxruntime_frame_by_frame(server, local):
    backend = make_backend("triton", url=f"127.0.0.1:{server[0]}", model="radseg")
    assert backend.frame_size == FRAME_HW and backend.class_names is None  # serve does not publish names (use --vocab)
    for frame in _frames(2):
        got, ref = backend(frame), local(frame)
        assert np.array_equal(got.labels.numpy(), ref.labels.numpy())
        assert np.abs(got.probs.numpy() - ref.probs.numpy()).max() <= 1e-5
    backend.close()


def test_one_request_with_a_batch_and_the_http_protocol(server, local):
    frames = _frames(3, seed=4)
    backend = make_backend("triton", url=f"http://127.0.0.1:{server[1]}", model="radseg")
    labels, probs = backend.infer_batch(frames)
    assert labels.shape == (3, *FRAME_HW) and probs.shape == (3, 5, *FRAME_HW)
    for i, frame in enumerate(frames):
        assert np.array_equal(labels[i], local(frame).labels.numpy()[0])
    backend.close()


def test_concurrent_clients_are_batched_and_get_their_own_labels(server, local):
    import urllib.request

    frames = _frames(8, seed=8)
    refs = [local(f).labels.numpy()[0] for f in frames]
    clients = [make_backend("triton", url=f"127.0.0.1:{server[0]}", model="radseg") for _ in range(4)]

    def camera(i: int) -> list[bool]:
        return [np.array_equal(clients[i].infer_batch(frames[j][None])[0][0], refs[j]) for j in (i, i + 4)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(camera, range(4)))
    assert all(all(r) for r in results)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server[2]}/metrics", timeout=5).read().decode()

    def metric(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and 'model="radseg"' in line)

    frames_done, executions = metric("nv_inference_count"), metric("nv_inference_exec_count")
    assert frames_done >= 8 and executions < frames_done  # some requests ran together as one batch


def test_segment_command_through_the_server(server, tmp_path):
    import cv2

    from radseg_edge.cli import main
    from tests._export_helpers import tiny_vocabulary

    cv2.imwrite(str(tmp_path / "a.png"), _frames(1)[0][..., ::-1])
    vocab = tiny_vocabulary().save(tmp_path / "vocab.safetensors")
    code = main(["segment", str(tmp_path / "a.png"), "--backend", "triton", "--server", f"127.0.0.1:{server[0]}",
                 "--model", "radseg", "--vocab", str(vocab), "-o", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "a_labels.png").is_file()


def test_stream_command_through_the_server(server, tmp_path):
    import json

    import cv2

    from radseg_edge.cli import main
    from tests._export_helpers import tiny_vocabulary

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(3, seed=31)):
        cv2.imwrite(str(folder / f"{i}.png"), frame[..., ::-1])
    vocab = tiny_vocabulary().save(tmp_path / "vocab.safetensors")
    code = main(["stream", "--source", str(folder), "--backend", "triton", "--server", f"127.0.0.1:{server[0]}",
                 "--model", "radseg", "--vocab", str(vocab), "--sink", "null", "--profile", str(tmp_path / "p.json")])
    assert code == 0
    assert json.loads((tmp_path / "p.json").read_text())["frames"]["processed"] == 3


def test_missing_model_is_one_sentence(server):
    from radseg_edge.backends.triton import TritonUnavailable

    with pytest.raises(TritonUnavailable, match=r"has no model 'nope' ready \(.*\): check --model"):
        make_backend("triton", url=f"127.0.0.1:{server[0]}", model="nope")


@pytest.mark.parametrize("scheme", ["", "http://"])
def test_server_down_is_one_sentence(scheme):
    from radseg_edge.backends.triton import TritonUnavailable

    (port,) = free_loopback_ports(1)
    t0 = time.monotonic()
    with pytest.raises(TritonUnavailable, match=f"no Triton server answers at 127.0.0.1:{port}"):
        make_backend("triton", url=f"{scheme}127.0.0.1:{port}", model="radseg", timeout=2)
    assert time.monotonic() - t0 < 10


def test_serving_beyond_loopback_needs_a_token(capsys):
    from radseg_edge.cli import main
    from radseg_edge.runtime.triton_serve import check_binding, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    check_binding("192.168.1.5", "a-long-secret")
    code = main(["serve", "--export-dir", str(tiny_triton_repo() / "radseg"), "--host", "0.0.0.0"])
    assert code == 1 and "--token" in capsys.readouterr().err


def test_frame_server_runs_a_batch_in_one_call_equal_to_frame_by_frame(local):
    from radseg_edge.runtime.triton_serve import FrameServer

    server = FrameServer(local)
    assert server.batched and server.imgsz == FRAME_HW and server.num_classes == 5
    frames = _frames(3, seed=2)
    out = server(frames)
    for i, frame in enumerate(frames):
        assert np.array_equal(out["labels"][i], local(frame).labels.numpy()[0])
    assert server.batch_sizes == {3: 1}


def test_server_urls_and_protocols():
    from radseg_edge.backends.triton import parse_url
    from radseg_edge.errors import InputError

    assert parse_url("127.0.0.1:8001") == ("127.0.0.1:8001", "grpc")
    assert parse_url("http://gpu:8000/") == ("gpu:8000", "http")
    assert parse_url("gpu:8000", "http") == ("gpu:8000", "http")
    for bad in ("https://gpu:8000", "gpu", "grpc://gpu:1"):
        with pytest.raises(InputError, match="--server"):
            parse_url(bad, "http" if bad.startswith("grpc") else None)


def test_a_server_with_a_token_refuses_clients_without_it(local):
    from radseg_edge.backends.triton import TritonUnavailable

    token = "correct-horse-battery"
    with serving("--token", token, token=token) as (grpc_port, http_port, _):
        with pytest.raises(TritonUnavailable, match="pass --token"):
            make_backend("triton", url=f"127.0.0.1:{grpc_port}", model="radseg")
        frame = _frames(1, seed=40)[0]
        for url in (f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"):
            backend = make_backend("triton", url=url, model="radseg", token=token)
            assert np.array_equal(backend(frame).labels.numpy(), local(frame).labels.numpy())
            backend.close()
