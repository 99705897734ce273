"""Changing the classes while streaming: an HTTP endpoint and a watched file feed one controller.

Requests are resolved to embeddings in the caller's thread (unknown names, empty lists and unreadable
files are rejected at once) and applied by the inference worker between two frames, so a frame is
never segmented with half a vocabulary. A rejected update keeps the old vocabulary and reports why.

HTTP (beside the MJPEG stream): ``POST /vocab`` with ``Content-Type: application/json`` and
``{"classes": ["cat", "dog"]}`` (or ``"cat, dog"``) or ``{"vocab": "file.safetensors"}``, or a
``text/plain`` body ``cat, dog``; ``GET /vocab`` lists the current and the cached classes.

Requests come from the network (HTTP, ROS 2), so the controller, not the adapter, decides what they
may reach: a file is read only when it lies inside one of the folders named at start (``vocab_dirs``,
``--vocab-dir``; none by default) or the operator named it (:meth:`VocabularyController.allow_file`:
``--vocab`` files, the watched file). Nothing read from a requested file is ever quoted in a reply,
the log or the history (errors name the file and the kind of problem only), error texts are cut to
:data:`MAX_ERROR_CHARS`, and the history keeps the last ``history_limit`` changes (counts of all).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from radseg_edge.errors import RadsegError, VocabularyError
from radseg_edge.models.text import Vocabulary
from radseg_edge.runtime.vocab import EmbeddingBank, load_vocabulary_file, parse_class_names

#: extensions read as plain class-name lists (anything else is a vocabulary file with embeddings).
NAME_LIST_EXTENSIONS = ("", ".txt", ".names", ".csv")

#: longest error text kept in a reply, the log or the history (a huge request must not grow them).
MAX_ERROR_CHARS = 400
#: class names of one change kept in the history (the count is always kept).
MAX_HISTORY_NAMES = 64
#: longest requested path considered (longer ones are refused unread).
MAX_PATH_CHARS = 1024
#: largest class-list file read for a request, in bytes.
MAX_CLASS_LIST_BYTES = 1 << 20


def _clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


class RequestedFile:
    """A vocabulary file named by a (remote) request: a path string, resolved and confined by the controller."""

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"RequestedFile({self.path!r})"


class VocabularyController:
    """Queue of vocabulary updates for a segmenter, applied by :meth:`apply_pending` in the worker thread."""

    def __init__(self, segmenter: Any, bank: EmbeddingBank, log: Callable[[str], None] = print,
                 vocab_dirs: Iterable[str | Path] = (), history_limit: int = 100) -> None:
        """``vocab_dirs``: folders whose files requests may name (none by default: only files the
        operator named with :meth:`allow_file`). ``history_limit``: changes kept in :attr:`history`."""
        self.segmenter = segmenter
        self.bank = bank
        self.log = log
        self.version = 0
        self.frame_index = 0  # frames segmented so far (set by the pipeline)
        self.history: deque[dict[str, Any]] = deque(maxlen=max(1, int(history_limit)))
        self.counts = {"accepted": 0, "rejected": 0}
        self.vocab_dirs: tuple[Path, ...] = ()
        for d in vocab_dirs:
            folder = Path(d).expanduser()
            if not folder.is_dir():
                raise VocabularyError(f"--vocab-dir {str(d)!r} is not a folder: name an existing folder of vocabulary files")
            self.vocab_dirs += (folder.resolve(),)
        self._allowed_files: set[Path] = set()
        self._lock = threading.Lock()
        self._pending: list[tuple[Vocabulary, Future, str]] = []

    def allow_file(self, path: str | Path) -> None:
        """Let requests name ``path`` (a file the operator gave: ``--vocab``, ``--vocab-watch``); errors
        about it are reported in full, as for any file the operator named."""
        self._allowed_files.add(Path(path).expanduser().resolve())

    # ----- caller side (HTTP thread, ROS 2 callback, file watcher) -----
    def resolve(self, request: Sequence[str] | str | Path | RequestedFile | Vocabulary) -> Vocabulary:
        """Names (list or 'a, b' text), a vocabulary file, or a vocabulary -> a vocabulary (or VocabularyError).

        A file (:class:`Path` or :class:`RequestedFile`) is confined (see :meth:`confine`): front ends
        pass what a client sent as is, and only the files the operator named or put in ``vocab_dirs``
        are read."""
        if isinstance(request, Vocabulary):
            return request
        if isinstance(request, (Path, RequestedFile)):
            path = self.confine(request.path if isinstance(request, RequestedFile) else str(request))
            return self._from_file(path, detailed=path in self._allowed_files)
        if isinstance(request, str):
            return self.bank.resolve(parse_class_names(request))
        return self.bank.resolve(list(request))

    def confine(self, requested: str) -> Path:
        """The file a request names, if it may be read: one the operator named, or one inside a
        ``vocab_dirs`` folder (relative names are looked up in each; symbolic links are followed before
        the check). Anything else -> VocabularyError, without touching the file."""
        text = str(requested)
        if not text or len(text) > MAX_PATH_CHARS or "\x00" in text:
            raise VocabularyError("the requested vocabulary file name is empty, too long or invalid")
        shown = _clip(text, 200)
        given = Path(text).expanduser()
        candidates = [given] if given.is_absolute() else [d / given for d in self.vocab_dirs] + [given]
        for candidate in candidates:
            try:
                real = candidate.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                continue
            if real in self._allowed_files or any(real.is_relative_to(d) for d in self.vocab_dirs):
                if real.is_file():
                    return real
        folders = ", ".join(str(d) for d in self.vocab_dirs) or "none were given (--vocab-dir)"
        raise VocabularyError(
            f"vocabulary file {shown!r} is not available: requests may name only files inside the vocabulary "
            f"folders ({folders}) or files given with --vocab"
        )

    def _from_file(self, path: Path, detailed: bool) -> Vocabulary:
        """Read a class list or vocabulary file. ``detailed=False`` (a requested file): errors name the
        file and the kind of problem, never anything read from it."""
        name = path.name
        if path.suffix.lower() in NAME_LIST_EXTENSIONS:
            if not path.is_file():
                raise VocabularyError(f"class list {str(path)!r} does not exist")
            if not detailed and path.stat().st_size > MAX_CLASS_LIST_BYTES:
                raise VocabularyError(f"class list {name!r} is larger than {MAX_CLASS_LIST_BYTES} bytes")
            try:
                names = parse_class_names(path.read_text(encoding="utf-8"))
                return self.bank.resolve(names)
            except (VocabularyError, UnicodeDecodeError, OSError) as exc:
                if detailed and isinstance(exc, VocabularyError):
                    raise
                raise VocabularyError(
                    f"class list {name!r} is not usable: it must be UTF-8 text with one valid class name per line "
                    "whose embeddings are cached (or a text encoder loaded)"
                ) from None
        try:
            vocab = load_vocabulary_file(path)
            self.bank.add(vocab)
        except VocabularyError:
            if detailed:
                raise
            raise VocabularyError(
                f"vocabulary file {name!r} is not usable: expected a radseg-edge vocabulary with finite "
                "embeddings from this model's text tower"
            ) from None
        return vocab

    def submit(self, request: Sequence[str] | str | Path | RequestedFile | Vocabulary, origin: str = "api") -> Future:
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

    def update(self, request: Sequence[str] | str | Path | RequestedFile | Vocabulary, origin: str = "api",
               timeout: float = 10.0) -> dict[str, Any]:
        """Submit and wait for the worker to apply it: a JSON-able reply ``{"ok", "classes", "error"?}``."""
        fut = self.submit(request, origin)
        try:
            names = fut.result(timeout=timeout)
        except FutureTimeout:
            return {"ok": True, "pending": True, "classes": list(self.segmenter.class_names)}
        except RadsegError as exc:
            return {"ok": False, "error": _clip(str(exc)), "classes": list(self.segmenter.class_names)}
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
        """One history entry (bounded: the last ``history_limit``, each with at most MAX_HISTORY_NAMES
        names and an error of at most MAX_ERROR_CHARS characters) and one log line."""
        kept = list(names)[:MAX_HISTORY_NAMES] if names is not None else None
        entry = {"t": time.time(), "frame": self.frame_index, "origin": _clip(origin, 80), "ok": error is None,
                 "classes": kept, "n_classes": len(names) if names is not None else None}
        if error is not None:
            entry["error"] = _clip(error)
            self.counts["rejected"] += 1
            self.log(f"vocabulary update rejected ({entry['origin']}): {entry['error']}")
        else:
            self.counts["accepted"] += 1
            more = f" and {len(names or []) - len(kept or [])} more" if len(names or []) > len(kept or []) else ""
            self.log(f"vocabulary now {kept}{more} (from frame {self.frame_index})")
        self.history.append(entry)

    def summary(self) -> dict[str, Any]:
        """Current classes, change counts and the kept history (JSON-ready, bounded)."""
        return {"classes": list(self.segmenter.class_names), "accepted": self.counts["accepted"],
                "rejected": self.counts["rejected"], "changes": list(self.history)}

    # ----- HTTP routes (see MjpegSink.add_route) -----
    def http_post(self, body: bytes, content_type: str) -> tuple[int, object]:
        """POST /vocab: 200 applied, 400 rejected (old classes kept), 415 wrong content type."""
        try:
            request = _parse_http_request(body, content_type)
        except UnsupportedMediaType as exc:
            return 415, {"ok": False, "error": str(exc), "classes": list(self.segmenter.class_names)}
        except VocabularyError as exc:
            self._record("http", None, str(exc))
            return 400, {"ok": False, "error": _clip(str(exc)), "classes": list(self.segmenter.class_names)}
        reply = self.update(request, origin="http")
        return (200 if reply["ok"] else 400), reply

    def http_get(self, body: bytes, content_type: str) -> tuple[int, object]:
        return 200, {"classes": list(self.segmenter.class_names), "version": self.version,
                     "cached": self.bank.names, "encoder": self.bank.encoder is not None}


class UnsupportedMediaType(VocabularyError):
    """A request body of a content type the endpoint does not read (HTTP 415)."""


def _parse_http_request(body: bytes, content_type: str) -> Sequence[str] | str | RequestedFile:
    """JSON only with ``Content-Type: application/json`` (browsers cannot send that cross-site without
    asking first); ``text/plain`` is a list of names and never a file."""
    media = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", errors="replace").strip()
    if media not in ("application/json", "text/plain"):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {_clip(media, 80)!r}: send application/json "
            '({"classes": [...]} or {"vocab": "file"}) or text/plain (a, b, c)'
        )
    if media == "text/plain" and text.startswith("{"):
        raise UnsupportedMediaType("a JSON body needs Content-Type: application/json")
    if media == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VocabularyError(f"the request body is not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise VocabularyError('expected a JSON object {"classes": [...]} or {"vocab": "path"}')
        if "vocab" in data:
            if not isinstance(data["vocab"], str):
                raise VocabularyError('"vocab" must be a file name (a string)')
            return RequestedFile(data["vocab"])
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
        controller.allow_file(self.path)  # the operator named it
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
