"""``radseg-edge serve``: any backend of this machine behind Triton's own server, through PyTriton.

The served model has the interface of the ``export --format triton`` repository (input ``frame``
B x H x W x 3 uint8 RGB; outputs ``labels`` B x H x W int64 and ``probs`` B x K x H x W fp32), so the
``triton`` client backend does not care whether a Triton Inference Server container or this answers.

How PyTriton is arranged (see docs/serving.md, "Why serve installs a private PyTriton"):

- Triton runs Python models in a separate process, ``triton_python_backend_stub``, linked against
  ``libpython3.X.so.1.0``. The dynamic loader finds the first such library on its path: with a Python
  that is not the system's (pyenv, a self-built 3.11.7) that is the *system* libpython (3.11.2 here),
  which then imports this interpreter's standard library and fails (``'_thread.RLock' object has no
  attribute '_recursion_count'``). :func:`server_environment` puts this interpreter's own library
  folder (``sysconfig LIBDIR``) first on ``LD_LIBRARY_PATH`` when the interpreter is a shared build.
- The stub is compiled against the numpy 1.x C API: with numpy 2 its tensors come out empty (0 bytes).
  PyTriton 0.7.0 itself requires numpy < 2, which cannot be installed beside the rest of radseg-edge
  (OpenCV 5 and others need numpy 2). :func:`prepare_pytriton` therefore installs PyTriton (without its
  dependencies, which the ``serve`` extra provides) and numpy 1.x into a private folder with pip, once;
  this process imports PyTriton from there (its own numpy 2 stays first). The stub starts Python in
  isolated mode (PYTHONPATH is ignored), so :func:`_numpy1_beside_proxy` prepends the private folder
  to sys.path in the proxy model.py that PyTriton uploads: the stub alone imports numpy 1.x. Frames cross between the processes as raw bytes in shared memory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radseg_edge.errors import EngineError, InputError, MissingDependencyError

#: the PyTriton release serve is tested with.
PYTRITON_VERSION = "0.7.0"
#: numpy the Python-backend stub of that release is compiled for.
STUB_NUMPY = "numpy>=1.21,<2"
#: the request header carrying the token (PyTriton's restricted-endpoint header).
TOKEN_HEADER = "triton-access-token"
#: Triton endpoint groups protected by the token when serving beyond loopback (health stays open for probes).
PROTECTED_ENDPOINTS = ["metadata", "inference", "shared-memory", "model-config", "model-repository", "statistics",
                       "trace", "logging"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (as the MJPEG endpoint does)."""
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} exposes the model beyond this machine: also give --token SECRET "
                         f"(clients send it as the '{TOKEN_HEADER}' header: --token on the client side)")
    if token is not None and len(token) < 8:
        raise InputError("--token must have at least 8 characters")


def pytriton_home() -> Path:
    """The private folder holding PyTriton and the stub's numpy ($RADSEG_PYTRITON_HOME overrides)."""
    env = os.environ.get("RADSEG_PYTRITON_HOME")
    if env:
        return Path(env)
    tag = f"pytriton-{PYTRITON_VERSION}-py{sys.version_info.major}.{sys.version_info.minor}"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radseg-edge" / tag


def _home_ready(home: Path) -> bool:
    return (home / "pytriton" / "__init__.py").is_file() and (home / "numpy" / "__init__.py").is_file()


def prepare_pytriton(home: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Install PyTriton (no dependencies) and numpy 1.x into ``home`` with pip, unless already there.

    Raises:
        MissingDependencyError: pip failed (offline machine: run this where a package index is reachable,
            or point $RADSEG_PYTRITON_HOME at a copy of the folder).
    """
    import fcntl

    home = Path(home or pytriton_home())
    if _home_ready(home):
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two servers starting at once install once
        if not _home_ready(home):
            _pip_install(home, log)
    return home


def _pip_install(home: Path, log: Callable[[str], None]) -> None:
    log(f"serve: installing nvidia-pytriton=={PYTRITON_VERSION} and {STUB_NUMPY} into {home} (once)")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary", ":all:", "--target", str(home), f"nvidia-pytriton=={PYTRITON_VERSION}", STUB_NUMPY]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not _home_ready(home):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MissingDependencyError(
            f"serve could not install PyTriton into {home} with pip ({tail[0]}); run `radseg-edge serve --prepare` "
            "where a package index is reachable, or set RADSEG_PYTRITON_HOME to a prepared folder")


def import_pytriton(home: Path):
    """Import PyTriton from ``home`` (appended to sys.path, so this process keeps its own numpy)."""
    missing = [m for m in ("zmq", "tritonclient", "typer", "sh", "wrapt", "typing_inspect") if not _has(m)]
    if missing:
        raise MissingDependencyError(f"serve needs {', '.join(missing)}: pip install 'radseg-edge[serve]'")
    if str(home) not in sys.path:
        sys.path.append(str(home))
    import pytriton.triton

    return pytriton


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def server_environment(environ: dict[str, str], home: Path) -> dict[str, str]:
    """The environment tritonserver and its Python-backend stub need (see the module docstring)."""
    env = dict(environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    first = [libdir] if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and Path(libdir).is_dir() else []
    # tritonserver's own libraries (PyTriton looks for them only beside a site-packages install)
    first += [str(home / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (*first, env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def _numpy1_beside_proxy(home: Path) -> None:
    """Make the Python-backend stub import ``home``'s numpy 1.x (numpy 2 in this process only).

    PyTriton uploads its proxy ``model.py`` to Triton for each model; one line prepended to it puts
    ``home`` first on the stub's sys.path (the stub runs Python isolated: PYTHONPATH is ignored).
    """
    if int(np.__version__.split(".")[0]) < 2:
        return
    from pytriton.models.model import Model

    if getattr(Model.get_proxy_model_files, "_radseg_numpy1", False):
        return
    original = Model.get_proxy_model_files
    header = f"import sys; sys.path.insert(0, {str(home)!r})  # radseg-edge: numpy 1.x for this stub\n".encode()

    def get_proxy_model_files(self) -> dict:
        files = original(self)
        return {k: header + v if k.endswith("/model.py") else v for k, v in files.items()}

    get_proxy_model_files._radseg_numpy1 = True  # type: ignore[attr-defined]
    Model.get_proxy_model_files = get_proxy_model_files


class FrameServer:
    """The served computation, without Triton: B x H x W x 3 uint8 RGB frames -> labels and probabilities.

    Args:
        backend: a backend from :func:`radseg_edge.backends.make_backend` (called frame by frame), or an
            ONNX Runtime backend over a pipeline graph with a dynamic batch (``export --format triton``),
            which then runs each batch in one call.
    """

    def __init__(self, backend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.batch_sizes: dict[int, int] = {}
        manifest = getattr(backend, "manifest", None)
        art = manifest.artefacts.get("pipeline") if manifest is not None else None
        self.imgsz: tuple[int, int] | None = tuple(art["imgsz"]) if art else None
        self.batched = bool(art and art.get("max_batch", 1) > 1 and getattr(backend, "name", "") == "onnxruntime")
        vocab = getattr(backend, "vocabulary", None)
        self.num_classes = len(vocab) if vocab is not None else None
        self.class_names = list(vocab.names) if vocab is not None else None

    def __call__(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """frames: B x H x W x 3 uint8 RGB -> {"labels": B x H x W int64, "probs": B x K x H x W fp32}."""
        frames = np.ascontiguousarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be B x H x W x 3 uint8, got {frames.dtype} {tuple(frames.shape)}")
        with self.lock:
            self.batch_sizes[len(frames)] = self.batch_sizes.get(len(frames), 0) + 1
        if self.batched and tuple(frames.shape[1:3]) == self.imgsz:
            labels, probs = self.backend.session("pipeline").run(["labels", "probs"], {"frame": frames})
            return {"labels": labels.astype(np.int64), "probs": probs.astype(np.float32)}
        outs = [self.backend(frame) for frame in frames]
        return {"labels": np.concatenate([o.labels.cpu().numpy() for o in outs]).astype(np.int64),
                "probs": np.concatenate([o.probs.cpu().numpy() for o in outs]).astype(np.float32)}


@dataclass
class ServeOptions:
    """Settings of :func:`serve` (the ``radseg-edge serve`` options)."""

    model: str = "radseg"
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    max_batch: int = 8
    queue_delay_us: int = 2000
    instances: int = 1
    token: str | None = None
    verbose: bool = False


def serve(server: FrameServer, options: ServeOptions, log: Callable[[str], None] = print,
          home: Path | None = None) -> None:
    """Serve ``server`` with Triton until interrupted (SIGINT / SIGTERM). Blocks."""
    check_binding(options.host, options.token)
    if options.max_batch < 1 or options.instances < 1:
        raise InputError("--max-batch and --instances must be >= 1")
    home = prepare_pytriton(home, log)
    import_pytriton(home)
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    h, w = server.imgsz or (-1, -1)
    k = server.num_classes or -1

    @batch
    def infer(frame: np.ndarray) -> dict[str, np.ndarray]:
        return server(frame)

    os.environ.update(server_environment(os.environ, home))  # read by PyTriton when it starts tritonserver
    _numpy1_beside_proxy(home)
    config = TritonConfig(http_address=options.host, http_port=options.http_port, grpc_address=options.host,
                          grpc_port=options.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, exit_timeout_secs=5,
                          log_verbose=1 if options.verbose else 0)
    security = (TritonSecurityConfig(access_token=options.token, restricted_endpoints=list(PROTECTED_ENDPOINTS))
                if options.token else None)
    batcher = DynamicBatcher(max_queue_delay_microseconds=options.queue_delay_us,
                             preferred_batch_size=[b for b in (2, 4, 8, 16, 32, 64) if b <= options.max_batch] or None)
    try:
        with Triton(config=config, security_config=security) as triton:
            triton.bind(
                model_name=options.model, infer_func=[infer] * options.instances,
                inputs=[Tensor(name="frame", dtype=np.uint8, shape=(h, w, 3))],
                outputs=[Tensor(name="labels", dtype=np.int64, shape=(h, w)),
                         Tensor(name="probs", dtype=np.float32, shape=(k, h, w))],
                config=ModelConfig(max_batch_size=options.max_batch, batcher=batcher), strict=False,
            )
            size = f"{h}x{w}" if server.imgsz else "any size"
            log(f"serve: model '{options.model}' ({size}, {k if k > 0 else '?'} classes) on gRPC "
                f"{options.host}:{options.grpc_port}, HTTP {options.host}:{options.http_port}, metrics "
                f"{options.host}:{options.metrics_port}" + (" (token required)" if options.token else ""))
            triton.serve()
    except Exception as exc:
        if type(exc).__module__.startswith("pytriton"):
            raise EngineError(f"Triton failed to serve: {exc}") from exc
        raise


# ------------------------------------------------------------------- `radseg-edge serve` as a child process
def free_loopback_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class ServeProcess:
    """A running ``radseg-edge serve`` child (its own process group) and its loopback ports."""

    proc: subprocess.Popen
    log: Any
    grpc_port: int
    http_port: int
    metrics_port: int

    def log_tail(self, chars: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read()[-chars:]

    def stop(self) -> None:
        """SIGINT to the whole group (tritonserver and PyTriton's helpers), SIGKILL after 20 s."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def serve_process(export_dir: str | os.PathLike, *args: str, model: str = "radseg", token: str | None = None,
                  ready_timeout: float = 180.0, env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """Run ``radseg-edge serve --export-dir DIR ARGS`` on free 127.0.0.1 ports until ``model`` is ready (gRPC);
    always stopped on exit. For tests, benchmarks and scripts that need a server next to them (``env``: the
    child's environment, default this process's).

    Raises:
        EngineError: the server exited, or was not ready within ``ready_timeout`` s (with its log's tail).
    """
    import tempfile
    import time

    import tritonclient.grpc as grpcclient

    grpc_port, http_port, metrics_port = free_loopback_ports(3)
    cmd = [sys.executable, "-m", "radseg_edge", "serve", "--export-dir", str(export_dir), "--grpc-port",
           str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port), *args]
    log = tempfile.TemporaryFile("w+")
    server = ServeProcess(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                   env=env),
                          log, grpc_port, http_port, metrics_port)
    try:
        deadline = time.monotonic() + ready_timeout
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        headers = {"triton-access-token": token} if token else None
        while True:
            if server.proc.poll() is not None:
                raise EngineError(f"serve exited with {server.proc.returncode}: {server.log_tail()}")
            try:
                if client.is_model_ready(model, headers=headers, client_timeout=2):
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise EngineError(f"serve not ready after {ready_timeout:.0f} s: {server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        log.close()
