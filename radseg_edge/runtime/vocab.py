"""Cached class embeddings for streaming: switching vocabularies mid-stream without re-encoding.

A live vocabulary change names classes; their text embeddings come from the :class:`EmbeddingBank`
(every :class:`~radseg_edge.models.text.Vocabulary` loaded so far, plus an optional text encoder
for names never seen, itself backed by the on-disk per-class cache of ``Vocabulary.build``). A class
seen before costs one tensor copy.

Embeddings are K x D float32 tensors (one row per class, in the order of ``names``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from radseg_edge.errors import VocabularyError
from radseg_edge.models.text import UNSPECIFIED, Vocabulary, check_finite_embeddings, validate_names

#: encodes class names into K x D embeddings (e.g. the SigLIP2 text tower with prompt templates).
TextEncoderFn = Callable[[Sequence[str]], torch.Tensor]


def check_embeddings(vocab: Vocabulary, dim: int | None = None, text_model: str | None = None) -> None:
    """Raise :class:`VocabularyError` unless ``vocab`` has finite K x ``dim`` embeddings from ``text_model``."""
    if not isinstance(getattr(vocab, "embeddings", None), torch.Tensor) or not hasattr(vocab, "names"):
        raise VocabularyError(f"expected a Vocabulary (names + embeddings), found {type(vocab).__name__}")
    if dim is not None and vocab.embeddings.shape[1] != dim:
        raise VocabularyError(
            f"text embeddings have dimension {vocab.embeddings.shape[1]} but the model expects {dim}: "
            "the vocabulary was made with another text model"
        )
    if text_model and vocab.text_model not in (UNSPECIFIED, "", text_model):
        raise VocabularyError(
            f"vocabulary was built with text model {vocab.text_model} but the model expects {text_model}"
        )
    check_finite_embeddings(vocab.embeddings, names=list(vocab.names))


def parse_class_names(text: str) -> list[str]:
    """Class names from 'a, b, c' or one name per line ('#' comments and blank lines skipped)."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) == 1 and "," in lines[0]:
        lines = [p.strip() for p in lines[0].split(",") if p.strip()]
    return validate_names(lines)


def load_vocabulary_file(path: str | Path) -> Vocabulary:
    """A vocabulary file written by ``radseg-edge vocab build`` / ``Vocabulary.save``."""
    return Vocabulary.load(path)


class EmbeddingBank:
    """Class name -> D-dim text embedding, filled from vocabularies and (optionally) an encoder."""

    def __init__(self, encoder: TextEncoderFn | None = None, text_model: str = UNSPECIFIED) -> None:
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

    def add(self, vocab: Vocabulary) -> None:
        """Remember every class of ``vocab`` (all vocabularies of a bank share D and the text model)."""
        check_embeddings(vocab, self.dim, None if self.text_model == UNSPECIFIED else self.text_model)
        self.dim = int(vocab.embeddings.shape[1])
        if self.text_model == UNSPECIFIED:
            self.text_model = vocab.text_model
        for name, row in zip(vocab.names, vocab.embeddings, strict=True):
            self._cache[name] = row.detach().float().cpu().clone()

    def resolve(self, names: Sequence[str]) -> Vocabulary:
        """A vocabulary for ``names``: cached embeddings, the rest from the encoder (if there is one)."""
        names = validate_names(names)
        missing = [n for n in names if n not in self._cache]
        if missing:
            if self.encoder is None:
                known = ", ".join(sorted(self._cache)[:20]) or "none"
                raise VocabularyError(
                    f"no cached text embedding for {missing} and no text encoder is loaded; known classes: {known}. "
                    "Load a vocabulary file containing them (--vocab FILE, or POST {\"vocab\": path})"
                )
            encoded = torch.as_tensor(self.encoder(missing)).float()
            self.add(Vocabulary.from_embeddings(missing, encoded, self.text_model))
        return Vocabulary.from_embeddings(names, torch.stack([self._cache[n] for n in names]), self.text_model)


def lazy_text_encoder(model_id: str, device: str = "cpu") -> TextEncoderFn:
    """An encoder function that loads the Hugging Face text tower on first use and embeds names with the
    prompt templates of ``Vocabulary.build`` (its per-class disk cache makes repeated names free)."""
    state: dict[str, object] = {}

    def encode(names: Sequence[str]) -> torch.Tensor:
        from radseg_edge.models.text import TextEncoder

        if "encoder" not in state:
            state["encoder"] = TextEncoder.from_pretrained(model_id, device=device)
        return Vocabulary.build(list(names), state["encoder"]).embeddings  # type: ignore[arg-type]

    return encode
