"""Class vocabularies for streaming: names + text embeddings, and a bank of cached embeddings.

A live vocabulary change names classes; their text embeddings come from the :class:`EmbeddingBank`
(every vocabulary file loaded so far, plus an optional text encoder). Nothing is re-encoded when a
class was seen before, so switching vocabularies mid-stream costs one tensor copy.

Embeddings are K x D float32 tensors (one row per class, in the order of ``names``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from radseg_edge.errors import VocabularyError

#: encodes class names into K x D embeddings (e.g. the SigLIP2 text tower with prompt templates).
TextEncoder = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class ClassVocabulary:
    """K class names and their K x D text embeddings (fp32). Duck-compatible with ``radseg_edge.Vocabulary``."""

    names: tuple[str, ...]
    embeddings: torch.Tensor
    text_model: str = ""

    def __post_init__(self) -> None:
        validate(self.names, self.embeddings)

    @classmethod
    def from_any(cls, vocab: object) -> ClassVocabulary:
        """Wrap anything with ``.names`` and ``.embeddings`` (e.g. ``radseg_edge.Vocabulary``)."""
        if isinstance(vocab, cls):
            return vocab
        names = getattr(vocab, "names", None)
        emb = getattr(vocab, "embeddings", None)
        if names is None or emb is None:
            raise VocabularyError(
                f"expected a vocabulary with .names and .embeddings, found {type(vocab).__name__}"
            )
        return cls(tuple(str(n) for n in names), torch.as_tensor(emb).float(), str(getattr(vocab, "text_model", "")))


def validate(names: Sequence[str], embeddings: torch.Tensor, dim: int | None = None) -> None:
    """Raise :class:`VocabularyError` unless names and K x D embeddings form a usable vocabulary."""
    if len(names) == 0:
        raise VocabularyError("the vocabulary is empty: give at least one class name")
    blank = [i for i, n in enumerate(names) if not str(n).strip()]
    if blank:
        raise VocabularyError(f"class names must not be blank (positions {blank})")
    seen: set[str] = set()
    dups = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dups:
        raise VocabularyError(f"duplicate class names {dups}: each class must be named once")
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise VocabularyError(
            f"expected {len(names)} x D text embeddings for {len(names)} classes, found shape {tuple(embeddings.shape)}"
        )
    if dim is not None and embeddings.shape[1] != dim:
        raise VocabularyError(
            f"text embeddings have dimension {embeddings.shape[1]} but the model expects {dim}: "
            "the vocabulary was made with another text model"
        )
    if not torch.isfinite(embeddings).all():
        raise VocabularyError("text embeddings contain NaN or infinity: rebuild the vocabulary file")


def parse_class_names(text: str) -> list[str]:
    """Class names from 'a, b, c' or one name per line (blank lines and '#' comments skipped)."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) == 1 and "," in lines[0]:
        lines = [p.strip() for p in lines[0].split(",")]
    return [n for n in lines if n]


def load_vocabulary_file(path: str | Path) -> ClassVocabulary:
    """Load a vocabulary file (names + embeddings) with ``radseg_edge.Vocabulary.load`` when available.

    Without it, a ``.json`` file ``{"names": [...], "embeddings": [[...], ...], "text_model": "..."}``
    or a ``.pt``/``.safetensors`` file with an ``embeddings`` tensor and a ``names`` list are read.
    """
    p = Path(path)
    if not p.is_file():
        raise VocabularyError(f"vocabulary file {str(p)!r} does not exist")
    try:
        from radseg_edge import Vocabulary  # type: ignore[attr-defined]
    except ImportError:
        Vocabulary = None  # noqa: N806 - the lead's class, not yet present on every branch
    if Vocabulary is not None:
        try:
            return ClassVocabulary.from_any(Vocabulary.load(p))
        except VocabularyError:
            raise
        except Exception as exc:  # a foreign format: fall through to the plain readers
            if p.suffix.lower() not in (".json", ".pt"):
                raise VocabularyError(f"cannot read vocabulary file {str(p)!r}: {exc}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text())
        elif p.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), "pt") as f:
                meta = f.metadata() or {}
                data = {
                    "embeddings": f.get_tensor("embeddings"),
                    "names": json.loads(meta.get("names", "[]")),
                    "text_model": meta.get("text_model", ""),
                }
        else:
            data = torch.load(p, map_location="cpu", weights_only=True)
        return ClassVocabulary(
            tuple(str(n) for n in data["names"]),
            torch.as_tensor(data["embeddings"], dtype=torch.float32),
            str(data.get("text_model", "")),
        )
    except VocabularyError:
        raise
    except Exception as exc:
        raise VocabularyError(
            f"cannot read vocabulary file {str(p)!r} ({type(exc).__name__}: {exc}); expected names and embeddings"
        ) from exc


class EmbeddingBank:
    """Cache of class-name -> D-dim text embedding, filled from vocabulary files and an optional encoder."""

    def __init__(self, encoder: TextEncoder | None = None, text_model: str = "") -> None:
        self.encoder = encoder
        self.text_model = text_model
        self.dim: int | None = None
        self._cache: dict[str, torch.Tensor] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def names(self) -> list[str]:
        return list(self._cache)

    def add(self, vocab: ClassVocabulary) -> None:
        """Remember every class of ``vocab`` (all vocabularies in one bank must share D and text model)."""
        if self.dim is not None and vocab.embeddings.shape[1] != self.dim:
            raise VocabularyError(
                f"vocabulary has {vocab.embeddings.shape[1]}-dim embeddings but earlier ones had {self.dim}: "
                "all vocabularies of a stream must come from the same text model"
            )
        if self.text_model and vocab.text_model and vocab.text_model != self.text_model:
            raise VocabularyError(
                f"vocabulary was encoded with {vocab.text_model!r} but the stream uses {self.text_model!r}"
            )
        self.dim = int(vocab.embeddings.shape[1])
        self.text_model = self.text_model or vocab.text_model
        for name, row in zip(vocab.names, vocab.embeddings, strict=True):
            self._cache[name] = row.detach().float().cpu().clone()

    def resolve(self, names: Sequence[str]) -> ClassVocabulary:
        """A vocabulary for ``names``: cached embeddings, the rest from the encoder (if there is one)."""
        names = [str(n).strip() for n in names]
        if not names:
            raise VocabularyError("the vocabulary is empty: give at least one class name")
        missing = [n for n in names if n not in self._cache]
        if missing:
            if self.encoder is None:
                known = ", ".join(sorted(self._cache)[:20]) or "none"
                raise VocabularyError(
                    f"no cached text embedding for {missing} and no text encoder is loaded; "
                    f"known classes: {known}. Load a vocabulary file containing them (--vocab / POST {{'vocab': path}})"
                )
            encoded = torch.as_tensor(self.encoder(missing)).float()
            validate(missing, encoded, self.dim)
            self.add(ClassVocabulary(tuple(missing), encoded, self.text_model))
        emb = torch.stack([self._cache[n] for n in names])
        return ClassVocabulary(tuple(names), emb, self.text_model)
