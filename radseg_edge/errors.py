"""Exceptions of radseg-edge. Each message says what was expected, what was found and what to do.

The CLI prints ``error: <message>`` (one line, no traceback) for any :class:`RadsegError`.
"""

from __future__ import annotations


class RadsegError(Exception):
    """Base class of every error radseg-edge raises on purpose."""


class CheckpointError(RadsegError):
    """A checkpoint is missing, truncated, not a RADIO/SAM file, unsafe to unpickle or has wrong tensors."""


class InputError(RadsegError, ValueError):
    """An image or tensor given to the model has the wrong shape, dtype, channels or size."""


class VocabularyError(RadsegError):
    """Class names or a vocabulary file are unusable (empty, duplicate, wrong text model or dimension)."""


class MissingDependencyError(RadsegError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EngineError(RadsegError):
    """An exported model or engine cannot be built or does not fit this machine."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise one clear sentence naming the pip extra.

    Example: ``ort = require("onnxruntime", "onnx", "the ONNX Runtime backend")``.
    """
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed: "
            f"pip install 'radseg-edge[{extra}]'"
        ) from exc
    return mod


def importable(module: str) -> bool:
    """True when ``module`` can be imported as real code (not just an empty namespace such as type stubs)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None
