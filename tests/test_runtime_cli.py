"""`radseg-edge stream` end to end: tiny checkpoint, video in, profile out; clear errors; documented options."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from radseg_edge.cli import build_parser, main
from tests.runtime_fakes import random_vocab, write_images, write_video

TINY = str(Path(__file__).parent / "fixtures" / "tiny_radio.pth.tar")


def test_every_stream_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    stream = sub.choices["stream"]
    undocumented = [a.option_strings for a in stream._actions if a.option_strings and not (a.help or "").strip()]
    assert undocumented == []
    for opt in ("--source", "--sink", "--vocab", "--classes", "--checkpoint", "--model", "--backend",
                "--profile", "--max-frames", "--drop", "--vocab-watch"):
        assert opt in stream._option_string_actions


def test_stream_cli_writes_video_and_profile_with_the_tiny_model(tmp_path, capsys):
    video = write_video(tmp_path / "in.mp4", 6, "mp4v", h=64, w=96)
    vocab = random_vocab(["sky", "road", "car", "tree"], dim=64).save(tmp_path / "v.safetensors")
    code = main([
        "stream", "--source", f"file://{video}", "--checkpoint", TINY, "--vocab", str(vocab),
        "--classes", "car, sky", "--sink", "null", "--sink", str(tmp_path / "out.avi"),
        "--profile", str(tmp_path / "prof.json"), "--max-frames", "4", "--crop", "64", "--stride", "32",
        "--device", "cpu",
    ])
    assert code == 0
    prof = json.loads((tmp_path / "prof.json").read_text())
    assert prof["frames"]["processed"] == 4 and prof["stop_reason"] == "max frames reached"
    assert prof["vocabulary"]["classes"] == ["car", "sky"] and prof["run"]["backend"] == "torch"
    assert prof["accounting"]["relative_error"] <= 0.05
    assert (tmp_path / "prof.csv").read_text().startswith("stage,p50_ms,p90_ms,p99_ms")
    assert (tmp_path / "out.avi").stat().st_size > 0
    err = capsys.readouterr().err
    assert "4 processed" in err and "end-to-end latency" in err


@pytest.mark.parametrize("source,message", [
    ("missing/video.mp4", "does not exist"),
    ("gopher://x", "unknown source scheme"),
])
def test_bad_source_is_one_clear_line(tmp_path, capsys, source, message):
    code = main(["stream", "--source", source, "--checkpoint", TINY, "--classes", "a", "--sink", "null"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


@pytest.mark.parametrize("extra,message", [
    (["--vocab-dir", "no/such/folder"], "--vocab-dir 'no/such/folder' is not a folder"),
    (["--http-max-clients", "0"], "--http-max-clients must be at least 1"),
    (["--http-token", " "], "--http-token is empty"),
    (["--reconnect-timeout", "0"], "--reconnect-timeout must be a positive number"),
])
def test_bad_http_options_are_one_clear_line_before_the_model_loads(tmp_path, capsys, extra, message):
    folder = write_images(tmp_path / "imgs", 1)
    code = main(["stream", "--source", str(folder), "--checkpoint", "missing.pth", "--classes", "a",
                 "--sink", "null", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0]


def test_unknown_class_without_text_tower_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = write_images(tmp_path / "imgs", 2)
    vocab = random_vocab(["sky", "road"], dim=64).save(tmp_path / "v.safetensors")
    code = main(["stream", "--source", str(folder), "--checkpoint", TINY, "--vocab", str(vocab),
                 "--classes", "sky, zebra", "--text-model", "none", "--sink", "null", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no cached text embedding for ['zebra']" in err[0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_the_cli_cleanly_with_a_summary_and_profile(tmp_path):
    """The real command in a subprocess: MJPEG on a free loopback port, a frame fetched, then SIGINT."""
    folder = write_images(tmp_path / "imgs", 3)
    vocab = random_vocab(["sky", "road"], dim=64).save(tmp_path / "v.safetensors")
    cmd = [sys.executable, "-m", "radseg_edge", "stream", "--source", str(folder), "--loop", "--checkpoint", TINY,
           "--vocab", str(vocab), "--sink", "http://127.0.0.1:0", "--crop", "64", "--stride", "32",
           "--device", "cpu", "--profile", str(tmp_path / "p.json")]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = None
        for _ in range(200):  # bounded: the line comes once the model is loaded
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"MJPEG stream at http://127\.0\.0\.1:(\d+)/stream", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "the command did not start its MJPEG server"
        for _ in range(100):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/frame.jpg")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                break
        assert body[:2] == b"\xff\xd8"  # a JPEG
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "SIGINT: stopping" in err and "processed" in err
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["stop_reason"] == "SIGINT" and prof["frames"]["processed"] >= 1
