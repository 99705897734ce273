"""Triton client backend: frames go to a Triton Inference Server (a container, or ``radseg-edge serve``).

    backend = make_backend("triton", url="127.0.0.1:8001", model="radseg")   # gRPC
    backend = make_backend("triton", url="http://gpu-server:8000", model="radseg")   # HTTP
    result = backend(frame)          # H x W x 3 uint8 RGB -> BackendResult (labels, probs)
    labels, probs = backend.infer_batch(frames)   # B x H x W x 3 uint8 (one request)

The served model is the fixed-size pipeline of ``radseg-edge export --format triton`` (input ``frame``,
outputs ``labels`` and ``probs``); the vocabulary is built in. A server that is down or a model that is
missing is one sentence (:class:`TritonUnavailable`); a connection lost while running is retried with
a fresh connection (``retries`` times, waiting ``retry_wait`` s between tries), like network cameras.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from radseg_edge.backends.base import BackendResult, frame_uint8
from radseg_edge.errors import EngineError, InputError, require

#: the header carrying the serve token (PyTriton's restricted-endpoint header; gRPC: with Triton's prefix).
TOKEN_HEADER = "triton-access-token"


class TritonUnavailable(EngineError):
    """No Triton server answers at the URL, or it does not serve the model."""


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """("host:port", "grpc" | "http") from "host:port", "grpc://host:port" or "http://host:port".

    Without a scheme, ``protocol`` decides (default gRPC).
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme not in ("grpc", "http"):
            raise InputError(f"--server {url!r}: use grpc://HOST:PORT or http://HOST:PORT (https is not supported)")
        if protocol and protocol != scheme:
            raise InputError(f"--server {url!r} says {scheme} but --protocol is {protocol}")
        url, protocol = rest, scheme
    url = url.rstrip("/")
    if not url or ":" not in url:
        raise InputError(f"--server expects HOST:PORT (e.g. 127.0.0.1:8001), got {url!r}")
    return url, (protocol or "grpc")


class TritonBackend:
    """RADSeg served by Triton (see the module docstring).

    Args:
        url: "host:port" (gRPC, default 127.0.0.1:8001) or "http://host:port".
        model: the model name on the server ("radseg").
        protocol: "grpc" or "http" when the URL has no scheme.
        timeout: seconds for connecting and for each request.
        token: sent as the ``triton-access-token`` header (servers bound beyond loopback require it).
        retries: reconnections tried when a request fails on the connection.
        with_probs: also fetch the probabilities (B x K x H x W fp32; labels only when False).
        version: model version ("" = the server's policy).
    """

    name = "triton"

    def __init__(self, url: str = "127.0.0.1:8001", model: str = "radseg", protocol: str | None = None,
                 timeout: float = 10.0, token: str | None = None, retries: int = 3, retry_wait: float = 0.5,
                 with_probs: bool = True, version: str = "", vocabulary=None) -> None:
        self.url, self.protocol = parse_url(url, protocol)
        self.model = model
        self.timeout = float(timeout)
        # Triton's restricted gRPC protocols expect the key with this prefix; HTTP takes it as is
        key = f"triton-grpc-protocol-{TOKEN_HEADER}" if self.protocol == "grpc" else TOKEN_HEADER
        self.headers = {key: token} if token else None
        self.retries = int(retries)
        self.retry_wait = float(retry_wait)
        self.with_probs = with_probs
        self.version = version
        self.vocabulary = vocabulary
        self.utils = require("tritonclient.utils", "triton", "the triton backend")
        self.module = require(f"tritonclient.{self.protocol}", "triton", "the triton backend")
        self.client = None
        self.connect()

    # -- connection -------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.url} ({self.protocol})"

    def connect(self) -> None:
        """(Re)connect and read the model's metadata; TritonUnavailable with one sentence when impossible."""
        exc_type = self.utils.InferenceServerException
        kwargs = {"network_timeout": self.timeout} if self.protocol == "http" else {}
        if self.protocol == "http":
            kwargs["connection_timeout"] = self.timeout
        self.client = self.module.InferenceServerClient(self.url, **kwargs)
        try:
            live = self._call(self.client.is_server_live)
        except (exc_type, OSError, ConnectionError) as exc:
            live = False
            reason = _short(exc)
        else:
            reason = "not live"
        if not live:
            raise TritonUnavailable(f"no Triton server answers at {self._where()} ({reason}): start one "
                                    f"(`radseg-edge serve` or a Triton container) or check --server")
        try:
            ready = self._call(self.client.is_model_ready, self.model, self.version)
        except exc_type as exc:
            raise TritonUnavailable(f"the Triton server at {self._where()} refused the model query ({_short(exc)}); "
                                    "if it was started with a token, pass --token") from exc
        if not ready:
            names = self._model_names()
            listed = "it does not list its models" if names is None else f"models: {', '.join(names) or 'none'}"
            raise TritonUnavailable(f"the Triton server at {self._where()} has no model '{self.model}' ready "
                                    f"({listed}): check --model")
        try:
            meta = self._metadata()
        except exc_type as exc:
            raise TritonUnavailable(f"the Triton server at {self._where()} refused the metadata of '{self.model}' "
                                    f"({_short(exc)}); if it was started with a token, pass --token") from exc
        self.input_shape = meta["frame"]  # [-1, H, W, 3]
        self.class_names = self._class_names()

    def _call(self, fn, *args, **kwargs):
        if self.protocol == "grpc":
            kwargs.setdefault("client_timeout", self.timeout)
        return fn(*args, headers=self.headers, **kwargs)

    def _model_names(self) -> list[str] | None:
        try:
            index = self._call(self.client.get_model_repository_index)
        except self.utils.InferenceServerException:  # e.g. PyTriton restricts the repository endpoint
            return None
        if self.protocol == "grpc":
            return sorted(m.name for m in index.models)
        return sorted(m["name"] for m in index)

    def _metadata(self) -> dict[str, list[int]]:
        meta = self._call(self.client.get_model_metadata, self.model, self.version)
        inputs = meta.inputs if self.protocol == "grpc" else meta["inputs"]
        shapes = {}
        for tensor in inputs:
            name = tensor.name if self.protocol == "grpc" else tensor["name"]
            shape = tensor.shape if self.protocol == "grpc" else tensor["shape"]
            shapes[name] = [int(s) for s in shape]
        if "frame" not in shapes:
            raise TritonUnavailable(f"model '{self.model}' at {self._where()} has no 'frame' input "
                                    f"(inputs: {', '.join(shapes)}): is it a radseg-edge model?")
        return shapes

    def _class_names(self) -> list[str] | None:
        if self.vocabulary is not None:
            return list(self.vocabulary.names)
        try:
            cfg = self._call(self.client.get_model_config, self.model, self.version)
        except self.utils.InferenceServerException:
            return None
        params = cfg.config.parameters if self.protocol == "grpc" else cfg.get("parameters", {})
        if "radseg_classes" not in params:
            return None
        value = params["radseg_classes"]
        text = value.string_value if self.protocol == "grpc" else value.get("string_value", "")
        return text.split(",") if text else None

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) the model takes, None when any size."""
        h, w = self.input_shape[-3:-1]
        return (h, w) if h > 0 and w > 0 else None

    # -- inference --------------------------------------------------------------------------------
    def infer_batch(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """frames: B x H x W x 3 uint8 RGB -> (labels B x H x W int64, probs B x K x H x W fp32 or None)."""
        frames = np.ascontiguousarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be B x H x W x 3 uint8 RGB, got {frames.dtype} {tuple(frames.shape)}")
        size = self.frame_size
        if size is not None and tuple(frames.shape[1:3]) != size:
            raise InputError(f"model '{self.model}' takes {size[0]}x{size[1]} frames, got {frames.shape[1]}x{frames.shape[2]}; "
                             "resize the frames or export the repository with another --imgsz")
        names = ["labels", "probs"] if self.with_probs else ["labels"]
        for attempt in range(self.retries + 1):
            try:
                inp = self.module.InferInput("frame", list(frames.shape), "UINT8")
                inp.set_data_from_numpy(frames)
                outputs = [self.module.InferRequestedOutput(n) for n in names]
                kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {"timeout": int(self.timeout * 1e6)}
                result = self.client.infer(self.model, [inp], model_version=self.version, outputs=outputs,
                                           headers=self.headers, **kwargs)
                labels = result.as_numpy("labels").astype(np.int64)  # copies: the response buffer is read-only
                probs = result.as_numpy("probs").copy() if self.with_probs else None
                return labels, probs
            except (self.utils.InferenceServerException, OSError, ConnectionError) as exc:
                if not _is_connection_error(exc) or attempt == self.retries:
                    raise EngineError(f"Triton request to '{self.model}' at {self._where()} failed: {_short(exc)}") from exc
                time.sleep(self.retry_wait * (attempt + 1))
                try:
                    self.connect()
                except TritonUnavailable:
                    if attempt + 1 == self.retries:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def __call__(self, image, text=None, channel_order: str = "rgb") -> BackendResult:
        names = list(getattr(text, "names", []) or [])
        if text is not None and not (self.class_names and names == self.class_names) and text is not self.vocabulary:
            raise InputError("the served model has its classes built in: re-export the repository with another --vocab "
                             "(a vocabulary can be passed only when it is the served one)")
        labels, probs = self.infer_batch(frame_uint8(image, channel_order))
        probs_t = torch.from_numpy(probs) if probs is not None else torch.empty(0)
        return BackendResult(probs_t, torch.from_numpy(labels), class_names=self.class_names, backend=self.describe())

    def describe(self) -> str:
        return f"triton[{self.model} @ {self.url}, {self.protocol}]"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def served_vocabulary(backend: TritonBackend, vocab_file: str | None = None, classes: str | None = None):
    """The class names of a served model as a Vocabulary (names only, K x 1 zero embeddings): from
    ``vocab_file`` or ``classes`` ("a,b,c") when given (checked against the server's names), else the server's.

    Raises:
        InputError: the names differ from the server's, or neither the server nor the user gives them.
    """
    from radseg_edge.models.text import Vocabulary, parse_class_list

    names = None
    if vocab_file:
        names = list(Vocabulary.load(vocab_file).names)
    elif classes:
        names = parse_class_list(classes)
    served = backend.class_names
    if names and served and names != served:
        raise InputError(f"the classes given ({', '.join(names[:5])}, ...) are not the served model's "
                         f"({', '.join(served[:5])}, ...): the vocabulary is built into the served model")
    names = names or served
    if not names:
        raise InputError("the server does not publish class names: pass the exported --vocab FILE to name them")
    backend.class_names = list(names)
    return Vocabulary.from_embeddings(names, torch.zeros(len(names), 1))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | ConnectionError):
        return True
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = str(exc).lower()
    return "unavailable" in status.lower() or any(s in text for s in ("unavailable", "connection", "failed to connect",
                                                                      "socket closed", "broken pipe", "reset by peer"))
