"""Many cameras, one server: `radseg-edge serve` on 127.0.0.1 under N = 1, 2, 4, 8, 16 simulated cameras.

Each camera is a thread with its own `triton` client (gRPC) sending frames at a set rate (a frame whose
tick passed while the previous one was still out is dropped, as a live camera does). Measured per N:
frames served per second, p50/p99 latency per camera, dropped frames, and the batch sizes Triton formed
(from its Prometheus metrics: inferences / executions). Baseline, in the same run: the same frames run
one by one locally with ONNX Runtime on the same export (same threads), measured right before each N
(the machine's load varies) -- the most frames per second these cameras get without a server. Models: the tiny test checkpoint and C-RADIOv3-B with random weights
at a small frame size. Bounded in time (seconds per N) and loopback only. Saves JSON + Markdown.

    python benchmarks/bench_triton_load.py                    # both models (~6 min on a 2-core CPU)
    python benchmarks/bench_triton_load.py --models tiny --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # benchmark the checkout this script lives in

from radseg_edge.export.build import ExportOptions, synthetic_images  # noqa: E402
from radseg_edge.export.triton_repo import TritonRepoOptions, write_triton_repository  # noqa: E402
from radseg_edge.models.text import Vocabulary  # noqa: E402
from radseg_edge.pipeline import RADSeg  # noqa: E402

RESULTS = ROOT / "results"
TINY_CKPT = ROOT.parent / "tests" / "fixtures" / "tiny_radio.pth.tar"

#: model -> (frame size, crop, stride, camera fps, max batch, queue delay us)
MODELS = {
    "tiny": ((96, 128), 64, 32, 15.0, 16, 5000),
    "c-radio_v3-b": ((224, 224), 224, 224, 2.0, 16, 20000),
}


def build_repo(name: str, out: Path) -> Path:
    (h, w), crop, stride, _, max_batch, delay = MODELS[name]
    if name == "tiny":
        from radseg_edge.models import load_radio

        radio = load_radio(TINY_CKPT)
    else:
        from radseg_edge import radio_from_config

        radio = radio_from_config(name, seed=0)
    seg = RADSeg(radio, crop=crop, stride=stride)
    emb = torch.randn(8, seg.embedding_dim, generator=torch.Generator().manual_seed(0))
    vocab = Vocabulary.from_embeddings([f"class_{i}" for i in range(8)], emb)
    opts = TritonRepoOptions(max_batch_size=max_batch, max_queue_delay_us=delay, kind="cpu")
    write_triton_repository(seg, vocab, (h, w), out, opts, ExportOptions(gate_limit=1, progress=False),
                            {"random_weights": name != "tiny"}, engine="never")
    return out / "radseg"


def metrics(port: int) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    def total(metric: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(metric + "{") and 'model="radseg"' in line)

    return total("nv_inference_count"), total("nv_inference_exec_count")


def camera(backend, frame: np.ndarray, fps: float, seconds: float, t0: float, out: dict) -> None:
    """Send ``frame`` every 1/fps s from t0 for ``seconds``; frames whose tick passed are dropped."""
    period, lat, dropped = 1.0 / fps, [], 0
    tick = 0
    while True:
        due = t0 + tick * period
        if due - t0 >= seconds:
            break
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        start = time.perf_counter()
        backend.infer_batch(frame[None])
        end = time.perf_counter()
        lat.append(end - start)
        nxt = int((end - t0) / period) + 1  # next tick after this frame came back
        dropped += max(0, nxt - tick - 1)
        tick = max(tick + 1, nxt)
    out["latency_s"], out["dropped"] = lat, dropped


def bench_model(name: str, cameras: list[int], seconds: float, threads: int, work: Path) -> dict:
    from radseg_edge.backends import make_backend
    from radseg_edge.runtime.triton_serve import serve_process

    (h, w), _, _, fps, max_batch, delay = MODELS[name]
    t = time.perf_counter()
    model_dir = build_repo(name, work / name)
    export_s = time.perf_counter() - t
    frames = np.stack(synthetic_images(16, (h, w), seed=3))
    # baseline: the same frames one by one, locally, same export and threads
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), so, providers=["CPUExecutionProvider"])
    sess.run(["labels"], {"frame": frames[:1]})
    n_local = 24 if name == "tiny" else 4
    local: list[float] = []

    def local_fps_now() -> float:
        """Frames/s of the same frames one by one here, measured right before each N (the load varies)."""
        times = []
        for i in range(n_local):
            s = time.perf_counter()
            sess.run(["labels"], {"frame": frames[i % 16][None]})
            times.append(time.perf_counter() - s)
        local.extend(times)
        return n_local / sum(times)

    rows = []
    with serve_process(model_dir, "--providers", "cpu", "--threads", str(threads), "--max-batch", str(max_batch),
                       "--queue-delay-us", str(delay), ready_timeout=240,
                       env={**os.environ, "PYTHONPATH": str(ROOT.parent)}) as server:
        grpc, mport = server.grpc_port, server.metrics_port
        for n in cameras:
            local_fps = local_fps_now()
            clients = [make_backend("triton", url=f"127.0.0.1:{grpc}", model="radseg", timeout=120, with_probs=False)
                       for _ in range(n)]
            for c in clients:
                c.infer_batch(frames[:1])  # connect and warm
            c0, e0 = metrics(mport)
            outs = [{} for _ in range(n)]
            t0 = time.perf_counter() + 0.05
            threads_ = [threading.Thread(target=camera, args=(clients[i], frames[i % 16], fps, seconds, t0, outs[i]))
                        for i in range(n)]
            for th in threads_:
                th.start()
            for th in threads_:
                th.join()
            wall = time.perf_counter() - t0
            c1, e1 = metrics(mport)
            for c in clients:
                c.close()
            served = sum(len(o["latency_s"]) for o in outs)
            p50 = [float(np.percentile(o["latency_s"], 50)) * 1e3 for o in outs]
            p99 = [float(np.percentile(o["latency_s"], 99)) * 1e3 for o in outs]
            offered = n * fps
            local_cap = min(offered, local_fps)
            rows.append({
                "cameras": n, "offered_fps": offered, "served_fps": served / wall, "wall_s": wall,
                "frames": served, "dropped": sum(o["dropped"] for o in outs),
                "p50_ms_per_camera": p50, "p99_ms_per_camera": p99,
                "p50_ms_median": float(np.median(p50)), "p99_ms_max": float(np.max(p99)),
                "avg_batch": (c1 - c0) / max(e1 - e0, 1), "executions": e1 - e0,
                "local_fps_measured": local_fps, "local_one_by_one_fps": local_cap, "ratio_vs_local": (served / wall) / local_cap,
            })
            r = rows[-1]
            print(f"{name} N={n:2d}: {r['served_fps']:.1f} fps served of {offered:.0f} offered "
                  f"(local one by one {local_cap:.1f}, {r['ratio_vs_local']:.2f}x), p50 {r['p50_ms_median']:.0f} ms, "
                  f"p99 {r['p99_ms_max']:.0f} ms, avg batch {r['avg_batch']:.2f}, dropped {r['dropped']}", flush=True)
    return {"model": name, "frame": [h, w], "camera_fps": fps, "seconds": seconds, "max_batch": max_batch, "queue_delay_us": delay,
            "local_latency_ms_p50": float(np.median(local)) * 1e3, "local_fps": len(local) / sum(local),
            "export_s": export_s,
            "rows": rows}


def markdown(doc: dict) -> str:
    lines = ["# Triton serving under load: N cameras against `radseg-edge serve` (127.0.0.1)", "",
             f"{doc['machine']}, {doc['date']}; ONNX Runtime CPU with {doc['threads']} intra-op threads on both "
             f"sides; measured seconds per N given per model. `local` = the same frames run one by one with ONNX Runtime on "
             "the same export, measured right before each N (the best these cameras get without a server: "
             "min(offered, local fps)). "
             "Batch = Triton's inferences / executions.", ""]
    for m in doc["models"]:
        lines += [f"**{m['model']}** ({m['frame'][0]}x{m['frame'][1]}, each camera {m['camera_fps']:g} fps, "
                  f"max batch {m['max_batch']}, queue delay {m['queue_delay_us'] / 1000:g} ms, "
                  f"{m.get('seconds', doc['seconds']):g} s per N).", "",
                  f"Local one by one, all N together: {m['local_fps']:.1f} frames/s (p50 {m['local_latency_ms_p50']:.0f} ms "
                  "per frame).", "",
                  "| cameras | offered fps | frames served | served fps | local fps | served / local | "
                  "p50 ms (median camera) | p99 ms (worst camera) | avg batch | dropped |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            lines.append(f"| {r['cameras']} | {r['offered_fps']:.0f} | {r['frames']} | {r['served_fps']:.1f} | "
                         f"{r['local_one_by_one_fps']:.1f} | {r['ratio_vs_local']:.2f}x | {r['p50_ms_median']:.0f} | "
                         f"{r['p99_ms_max']:.0f} | {r['avg_batch']:.2f} | {r['dropped']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown-only", metavar="JSON", help="rewrite the Markdown of a saved JSON and exit")
    ap.add_argument("--models", default="tiny,c-radio_v3-b", help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--cameras", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per N (default 6)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    ap.add_argument("--out", default=str(RESULTS / "triton_load"))
    args = ap.parse_args(argv)
    if args.markdown_only:
        src = Path(args.markdown_only)
        src.with_suffix(".md").write_text(markdown(json.loads(src.read_text())))
        return 0
    cams = [int(c) for c in args.cameras.split(",")]
    doc = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
           "seconds": args.seconds, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            doc["models"].append(bench_model(name, cams, args.seconds, args.threads, Path(tmp)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
