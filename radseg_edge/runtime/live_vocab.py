"""Changing the classes while streaming: an HTTP endpoint and a watched file feed one controller.

Requests are resolved to embeddings in the caller's thread (unknown names, empty lists and unreadable
files are rejected at once) and applied by the inference worker between two frames, so a frame is
never segmented with half a vocabulary. A rejected update keeps the old vocabulary and reports why.

HTTP (beside the MJPEG stream): ``POST /vocab`` with JSON ``{"classes": ["cat", "dog"]}`` (or
``"cat, dog"``), ``{"vocab": "/path/to/vocab_file"}``, or a text/plain body ``cat, dog``;
``GET /vocab`` lists the current and the cached classes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from radseg_edge.errors import RadsegError, VocabularyError
from radseg_edge.models.text import Vocabulary
from radseg_edge.runtime.vocab import EmbeddingBank, load_vocabulary_file, parse_class_names

#: extensions read as plain class-name lists (anything else is a vocabulary file with embeddings).
NAME_LIST_EXTENSIONS = ("", ".txt", ".names", ".csv")


class VocabularyController:
    """Queue of vocabulary updates for a segmenter, applied by :meth:`apply_pending` in the worker thread."""

    def __init__(self, segmenter: Any, bank: EmbeddingBank, log: Callable[[str], None] = print) -> None:
        self.segmenter = segmenter
        self.bank = bank
        self.log = log
        self.version = 0
        self.frame_index = 0  # frames segmented so far (set by the pipeline)
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pending: list[tuple[Vocabulary, Future, str]] = []

    # ----- caller side (HTTP thread, file watcher) -----
    def resolve(self, request: Sequence[str] | str | Path | Vocabulary) -> Vocabulary:
        """Names (list or 'a, b' text), a vocabulary file path, or a vocabulary -> a vocabulary (or VocabularyError)."""
        if isinstance(request, Vocabulary):
            return request
        if isinstance(request, Path):
            return self._from_file(request)
        if isinstance(request, str):
            return self.bank.resolve(parse_class_names(request))
        return self.bank.resolve(list(request))

    def _from_file(self, path: Path) -> Vocabulary:
        if path.suffix.lower() in NAME_LIST_EXTENSIONS:
            if not path.is_file():
                raise VocabularyError(f"class list {str(path)!r} does not exist")
            return self.bank.resolve(parse_class_names(path.read_text()))
        vocab = load_vocabulary_file(path)
        self.bank.add(vocab)
        return vocab

    def submit(self, request: Sequence[str] | str | Path | Vocabulary, origin: str = "api") -> Future:
        """Resolve now, apply at the next frame. The future's result is the new class names (or the error)."""
        fut: Future = Future()
        try:
            vocab = self.resolve(request)
        except RadsegError as exc:
            self._record(origin, None, str(exc))
            fut.set_exception(exc)
            return fut
        with self._lock:
            self._pending.append((vocab, fut, origin))
        return fut

    def update(self, request: Sequence[str] | str | Path | Vocabulary, origin: str = "api",
               timeout: float = 10.0) -> dict[str, Any]:
        """Submit and wait for the worker to apply it: a JSON-able reply ``{"ok", "classes", "error"?}``."""
        fut = self.submit(request, origin)
        try:
            names = fut.result(timeout=timeout)
        except FutureTimeout:
            return {"ok": True, "pending": True, "classes": list(self.segmenter.class_names)}
        except RadsegError as exc:
            return {"ok": False, "error": str(exc), "classes": list(self.segmenter.class_names)}
        return {"ok": True, "classes": list(names), "version": self.version, "frame": self.frame_index}

    # ----- worker side -----
    def apply_pending(self) -> None:
        """Apply queued updates in order (worker thread, between frames); a failing one changes nothing."""
        with self._lock:
            pending, self._pending = self._pending, []
        for vocab, fut, origin in pending:
            old = tuple(self.segmenter.class_names)
            try:
                self.segmenter.set_vocabulary(vocab)
            except RadsegError as exc:
                self._record(origin, vocab.names, f"{exc} (kept {list(old)})")
                fut.set_exception(exc)
                continue
            except Exception as exc:  # a backend bug: report it, keep streaming with the old classes
                err = VocabularyError(f"the model rejected the vocabulary ({type(exc).__name__}: {exc})")
                self._record(origin, vocab.names, str(err))
                fut.set_exception(err)
                continue
            self.version += 1
            self._record(origin, vocab.names, None)
            fut.set_result(vocab.names)

    def cancel_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for _, fut, _ in pending:
            fut.set_exception(VocabularyError("the stream ended before the vocabulary could be applied"))

    def _record(self, origin: str, names: Sequence[str] | None, error: str | None) -> None:
        entry = {"t": time.time(), "frame": self.frame_index, "origin": origin, "ok": error is None,
                 "classes": list(names) if names is not None else None}
        if error is not None:
            entry["error"] = error
            self.log(f"vocabulary update rejected ({origin}): {error}")
        else:
            self.log(f"vocabulary now {list(names or [])} (from frame {self.frame_index})")
        self.history.append(entry)

    # ----- HTTP routes (see MjpegSink.add_route) -----
    def http_post(self, body: bytes, content_type: str) -> tuple[int, object]:
        try:
            request = _parse_http_request(body, content_type)
        except VocabularyError as exc:
            self._record("http", None, str(exc))
            return 400, {"ok": False, "error": str(exc), "classes": list(self.segmenter.class_names)}
        reply = self.update(request, origin="http")
        return (200 if reply["ok"] else 400), reply

    def http_get(self, body: bytes, content_type: str) -> tuple[int, object]:
        return 200, {"classes": list(self.segmenter.class_names), "version": self.version,
                     "cached": self.bank.names, "encoder": self.bank.encoder is not None}


def _parse_http_request(body: bytes, content_type: str) -> Sequence[str] | str | Path:
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in content_type or text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VocabularyError(f"the request body is not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise VocabularyError('expected a JSON object {"classes": [...]} or {"vocab": "path"}')
        if "vocab" in data:
            return Path(str(data["vocab"]))
        classes = data.get("classes")
        if isinstance(classes, str):
            return classes
        if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
            return classes
        raise VocabularyError('expected "classes" as a list of names or a comma-separated string, or "vocab": path')
    if not text:
        raise VocabularyError("empty request: send class names (a, b, c) or JSON {\"classes\": [...]}")
    return text


class VocabularyFileWatcher:
    """Polls a file (class list or vocabulary file) and submits it whenever its mtime or size changed
    and then stayed the same for one polling interval."""

    def __init__(self, path: str | Path, controller: VocabularyController, interval: float = 0.5) -> None:
        self.path = Path(path)
        self.controller = controller
        self.interval = interval
        self._stop = threading.Event()
        self._last = self._stamp()
        self._thread = threading.Thread(target=self._run, name="vocab-watch")

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def start(self) -> VocabularyFileWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        seen = self._last
        while not self._stop.wait(self.interval):
            stamp = self._stamp()
            # submit once a change has been stable for one interval (editors write files in several steps)
            if stamp is not None and stamp == seen and stamp != self._last:
                self._last = stamp
                self.controller.submit(self.path, origin=f"watch:{self.path.name}")
            seen = stamp

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
