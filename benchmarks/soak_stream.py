"""Soak: `radseg-edge stream` for thousands of frames with churning clients and a camera that dies.

What runs (127.0.0.1 only, every wait bounded):

- a loopback HTTP camera: a child process serving a looping video file as MJPEG (``MjpegSink``) at
  ``--camera-fps``; it is killed (SIGKILL) and restarted on the same port ``--kills`` times, evenly spread
  over the run, staying down ``--down-s`` seconds each time;
- ``python -m radseg_edge stream`` (the real command, in its own process) with the tiny checkpoint
  (tests/fixtures/tiny_radio.pth.tar), reading that camera and serving its overlays on an MJPEG sink,
  until ``--frames`` frames were written;
- an MJPEG client that connects to the stream's output, reads ``--client-every`` frames, and disconnects
  (alternately a clean close and a TCP reset), over and over.

Reported: the stream process's RSS (VmRSS) after warm-up and at the end, and the growth in between
(target < 1%); frames accounted for (captured = processed + dropped + unprocessed at stop); camera
restarts survived (the source's reconnects); client connections served, and the server's disconnect /
refusal counts. The baseline is the RSS right after warm-up, measured in the same run.

    python benchmarks/soak_stream.py                       # 10,000 frames (the issue's soak)
    python benchmarks/soak_stream.py --frames 3000 --time-limit 300
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))  # soak the checkout this script lives in

RESULTS = ROOT / "results"
TINY = REPO / "tests" / "fixtures" / "tiny_radio.pth.tar"


# ----------------------------------------------------------------------------- camera child process
def serve_camera(port: int, video: str, fps: float) -> None:
    """Child process: play ``video`` in a loop as MJPEG on 127.0.0.1:``port`` until killed."""
    from radseg_edge.runtime.sinks import MjpegSink
    from radseg_edge.runtime.sources import open_source

    sink = MjpegSink("127.0.0.1", port)
    src = open_source(video, loop=True)
    print(f"camera serving on {sink.port}", flush=True)
    period = 1.0 / fps
    t_next = time.perf_counter()
    while True:
        frame = src.read()
        if frame is None:  # pragma: no cover - a looping file never ends
            break
        sink.write(frame.image)
        t_next += period
        time.sleep(max(0.0, t_next - time.perf_counter()))


def start_camera(port: int, video: Path, fps: float, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-camera", str(port), "--video", str(video),
                             "--camera-fps", str(fps)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()  # bounded: the child prints once its server is up (or exits)
    if not line.startswith("camera serving"):
        proc.kill()
        raise RuntimeError(f"the camera server did not start: {line!r}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- measurements
def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class ChurningClient(threading.Thread):
    """Connects to the stream's /stream, reads ``every`` JPEG parts, disconnects (clean or reset), repeats."""

    def __init__(self, port: int, every: int, stop: threading.Event) -> None:
        super().__init__(name="soak-client")
        self.port, self.every, self.stop = port, every, stop
        self.connections = 0
        self.frames = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._one_session()
            except OSError as exc:  # the stream is starting or ending
                self.errors.append(f"{type(exc).__name__}: {exc}"[:120] + f" (at {self.frames} frames read)")
                self.stop.wait(0.2)

    def _one_session(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.connections += 1
        try:
            s.sendall(b"GET /stream HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            buf = b""
            parts = 0
            while parts < self.every and not self.stop.is_set():
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                found = buf.count(b"--radsegframe")
                if found:
                    parts += found
                    self.frames += found
                    buf = buf[buf.rfind(b"--radsegframe") + 1:]
            if self.connections % 2 == 0:  # every other session ends with a TCP reset, mid-stream
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            s.close()


# ----------------------------------------------------------------------------- the soak
def soak(args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    work = Path(tempfile.mkdtemp(prefix="radseg_soak_"))
    h, w = (int(x) for x in args.size.split("x"))
    from stream_pipeline import make_video  # benchmarks/ is on sys.path: this script's folder

    video = make_video(work / "loop.avi", 90, h, w)
    import torch

    from radseg_edge.models.text import Vocabulary

    names = ["sky", "road", "car", "tree", "person"]
    vocab = Vocabulary.from_embeddings(names, torch.randn(len(names), 64, generator=torch.Generator().manual_seed(0)))
    vocab_path = vocab.save(work / "vocab.safetensors")

    cam_port = free_port()
    camera = start_camera(cam_port, video, args.camera_fps, env)
    profile_path = work / "profile.json"
    cmd = [sys.executable, "-m", "radseg_edge", "stream", "--source", f"http://127.0.0.1:{cam_port}/stream",
           "--checkpoint", str(TINY), "--vocab", str(vocab_path), "--sink", "http://127.0.0.1:0",
           "--crop", "64", "--stride", "32", "--device", "cpu", "--max-frames", str(args.frames),
           "--reconnect-timeout", str(args.reconnect_timeout), "--status", "1", "--no-telemetry",
           "--profile", str(profile_path)]
    t0 = time.monotonic()
    stream = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    state = {"frame": 0, "port": None, "lines": [], "tracebacks": 0}

    def read_stderr() -> None:
        for line in stream.stderr:
            state["lines"].append(line.rstrip()[:300])
            state["lines"] = state["lines"][-400:]
            if "Traceback" in line:
                state["tracebacks"] += 1
            m = re.search(r"MJPEG stream at http://127\.0\.0\.1:(\d+)/stream", line)
            if m:
                state["port"] = int(m.group(1))
            m = re.match(r"frame (\d+) ", line)
            if m:
                state["frame"] = int(m.group(1))

    reader = threading.Thread(target=read_stderr, name="soak-stderr")
    reader.start()
    stop_client = threading.Event()
    client: ChurningClient | None = None
    samples: list[tuple[float, int, float]] = []  # (seconds, frames written, RSS MiB)
    kills_at = [args.frames * (i + 1) // (args.kills + 1) for i in range(args.kills)]
    kills: list[dict] = []
    timed_out = False
    try:
        while stream.poll() is None:
            elapsed = time.monotonic() - t0
            if elapsed > args.time_limit:
                timed_out = True
                stream.send_signal(signal.SIGINT)  # stop cleanly: the profile is still written
                stream.wait(60)
                break
            if client is None and state["port"]:
                client = ChurningClient(state["port"], args.client_every, stop_client)
                client.start()
            rss = rss_mib(stream.pid)
            if rss is not None:
                samples.append((round(elapsed, 2), state["frame"], rss))
            if kills_at and state["frame"] >= kills_at[0]:
                kills_at.pop(0)
                camera.kill()
                camera.wait(10)
                t_kill = time.monotonic()
                time.sleep(args.down_s)
                camera = start_camera(cam_port, video, args.camera_fps, env)
                kills.append({"at_frame": state["frame"], "down_s": round(time.monotonic() - t_kill, 2)})
            time.sleep(args.sample_s)
    finally:
        stop_client.set()
        if client is not None:
            client.join(15)
        if stream.poll() is None:
            stream.kill()
        stream.wait(30)
        reader.join(15)
        camera.kill()
        camera.wait(10)
    wall = time.monotonic() - t0
    prof = json.loads(profile_path.read_text()) if profile_path.is_file() else {}
    return summarise(args, prof, samples, kills, client, state, stream.returncode, wall, timed_out)


def summarise(args, prof, samples, kills, client, state, returncode, wall, timed_out) -> dict:  # noqa: ANN001
    """The JSON document: settings, frame accounting, RSS after warm-up vs end, reconnects, client churn."""
    from radseg_edge.bench.machine import cpu_model

    frames = prof.get("frames", {})
    written = frames.get("processed", 0)
    warm = max(1, int(written * args.warmup))  # warm-up: the first --warmup share of the frames
    # samples while streaming after warm-up (the shutdown after the last frame frees memory: left out)
    after = [s for s in samples if warm <= s[1] < 0.995 * written]
    rss_warm = after[0][2] if after else None
    rss_end = after[-1][2] if after else None
    rss_max = max((s[2] for s in after), default=None)
    growth = (rss_end - rss_warm) / rss_warm if rss_warm and rss_end else None
    growth_max = (rss_max - rss_warm) / rss_warm if rss_warm and rss_max else None
    slope = None  # least-squares RSS growth per frame written, bytes
    if len(after) >= 3 and after[-1][1] > after[0][1]:
        x = [a[1] for a in after]
        y = [a[2] * 2**20 for a in after]
        mx, my = sum(x) / len(x), sum(y) / len(y)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / max(sum((a - mx) ** 2 for a in x), 1e-9)
    accounted = frames.get("processed", 0) + frames.get("dropped", 0) + frames.get("unprocessed_at_stop", 0)
    http_stats = next(iter(prof.get("http", {}).values()), {})
    return {
        "benchmark": "soak_stream",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "command": "python benchmarks/soak_stream.py " + " ".join(args.argv),
        "settings": {"frames_target": args.frames, "size": args.size, "camera_fps": args.camera_fps,
                     "kills": args.kills, "down_s": args.down_s, "client_every": args.client_every,
                     "warmup_share": args.warmup, "time_limit_s": args.time_limit},
        "exit_code": returncode,
        "timed_out": timed_out,
        "stop_reason": prof.get("stop_reason"),
        "wall_s": round(wall, 1),
        "fps": prof.get("fps"),
        "frames": frames,
        "frames_accounted": frames.get("captured") == accounted if frames else False,
        "rss_mib": {"after_warmup": rss_warm, "end": rss_end, "max_after_warmup": rss_max,
                    "first": samples[0][2] if samples else None},
        "rss_growth_after_warmup": growth,
        "rss_growth_max_after_warmup": growth_max,
        "rss_slope_bytes_per_frame": slope,
        "camera_kills": kills,
        "reconnects": prof.get("source", {}).get("reconnects"),
        "client": {"connections": client.connections if client else 0, "frames_read": client.frames if client else 0,
                   "errors": len(client.errors) if client else 0,
                   "error_examples": sorted(set(client.errors))[:6] if client else []},
        "server": http_stats,
        "tracebacks_in_log": state["tracebacks"],
        "rss_samples": samples[:: max(1, len(samples) // 200)],
        "log_tail": state["lines"][-12:],
    }


def _when_errors(client: dict) -> str:
    """' (all after the stream ended)' when every client error came once the client had read its last frame."""
    final = f"(at {client['frames_read']} frames read)"
    examples = client.get("error_examples", [])
    return " (all after the stream ended)" if examples and all(e.endswith(final) for e in examples) else ""


def markdown(doc: dict) -> str:
    f = doc["frames"]
    def pct(x: float | None) -> str:
        return f"{100 * x:+.2f}%" if x is not None else "n/a"

    rss = doc["rss_mib"]
    rows = [
        ("frames written (target)", f"{f.get('processed', 0)} ({doc['settings']['frames_target']})"),
        ("captured = processed + dropped + unprocessed at stop",
         f"{f.get('captured')} = {f.get('processed')} + {f.get('dropped')} + {f.get('unprocessed_at_stop')} "
         f"({'yes' if doc['frames_accounted'] else 'NO'})"),
        ("RSS after warm-up -> last frames (max)", f"{rss['after_warmup']:.1f} -> {rss['end']:.1f} MiB ({rss['max_after_warmup']:.1f})"
         if rss["after_warmup"] else "n/a"),
        ("RSS growth after warm-up, at the last frames (max); target < 1%",
         f"{pct(doc['rss_growth_after_warmup'])} ({pct(doc['rss_growth_max_after_warmup'])})"),
        ("RSS slope after warm-up (least squares)", f"{doc['rss_slope_bytes_per_frame']:.0f} bytes/frame"
         if doc["rss_slope_bytes_per_frame"] is not None else "n/a"),
        ("camera killed and restarted / reconnects survived", f"{len(doc['camera_kills'])} / {doc['reconnects']}"),
        ("output client connections (each read then dropped) / connection errors",
         f"{doc['client']['connections']} / {doc['client']['errors']}{_when_errors(doc['client'])}"),
        ("server: client disconnects / refused / request errors",
         f"{doc['server'].get('disconnects')} / {doc['server'].get('refused')} / {doc['server'].get('errors')}"),
        ("tracebacks in the stream's log", str(doc["tracebacks_in_log"])),
        ("stream FPS, wall time", f"{doc['fps'] or 0:.1f} FPS, {doc['wall_s']:.0f} s"),
        ("stop reason, exit code", f"{doc['stop_reason']}, {doc['exit_code']}"),
    ]
    downs = ", ".join(f"{k['down_s']:.1f}" for k in doc["camera_kills"]) or "-"
    lines = ["# Soak: stream with churning clients and a camera that dies", "",
             f"{doc['date']}; {doc['machine']}", "",
             f"`{doc['command']}`: tiny checkpoint, {doc['settings']['size']} frames from a looping file served by a "
             f"loopback MJPEG camera at {doc['settings']['camera_fps']:g} FPS, killed (SIGKILL) and restarted "
             f"{doc['settings']['kills']} times (down {downs} s: "
             f"{doc['settings']['down_s']:g} s wait plus the new camera process's start); an output client reconnects "
             f"every {doc['settings']['client_every']} frames. Warm-up: the first "
             f"{100 * doc['settings']['warmup_share']:.0f}% of the frames (the baseline RSS is measured right after it).",
             "", "| measure | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]
    if doc["timed_out"]:
        lines += ["", f"The run hit --time-limit {doc['settings']['time_limit_s']:g} s and was stopped with SIGINT."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames the stream writes (default 10000)")
    parser.add_argument("--size", default="64x96", help="frame size HxW of the looping file (default 64x96)")
    parser.add_argument("--camera-fps", type=float, default=60.0, help="rate of the loopback camera (default 60)")
    parser.add_argument("--kills", type=int, default=2, help="times the camera is killed and restarted (default 2)")
    parser.add_argument("--down-s", type=float, default=1.5, help="seconds the camera stays down each time")
    parser.add_argument("--client-every", type=int, default=100, help="frames the output client reads per connection")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the frames counted as warm-up (0.1)")
    parser.add_argument("--reconnect-timeout", type=float, default=30.0, help="the stream's --reconnect-timeout")
    parser.add_argument("--time-limit", type=float, default=600.0, help="stop the soak after this many seconds")
    parser.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling interval in seconds")
    parser.add_argument("--out", default=str(RESULTS / "soak_stream"), help="output path without extension")
    parser.add_argument("--serve-camera", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video", default=None, help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    if args.serve_camera is not None:
        serve_camera(args.serve_camera, args.video, args.camera_fps)
        return 0
    args.argv = raw
    doc = soak(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    ok = doc["frames_accounted"] and (doc["rss_growth_after_warmup"] or 0) < 0.01 and doc["tracebacks_in_log"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
