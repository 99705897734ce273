"""Class vocabularies: class names -> text embeddings (RADSEG.md "Language alignment", RADIO.md "Text towers").

For every class, the 80 ImageNet prompt templates are filled in, canonicalised (lowercase, punctuation
removed, '_' -> space, whitespace collapsed), embedded by the text tower, L2-normalised per prompt and
averaged over templates (not re-normalised). An edge device never needs the text tower: a
:class:`Vocabulary` is saved to a file (safetensors + metadata) and loaded anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from radseg_edge.errors import VocabularyError, require

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
    "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
    "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
    "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)  # fmt: skip

#: text_model value of vocabularies whose embeddings came from elsewhere: only the width is checked.
UNSPECIFIED = "unspecified"
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def canonicalize(text: str) -> str:
    """SigLIP text canonicalisation: '_' -> space, lowercase, punctuation removed, whitespace collapsed."""
    text = _PUNCT.sub("", text.replace("_", " ").lower())
    return " ".join(text.split())


def templates_hash(templates: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16]


def validate_names(names: Sequence[str]) -> list[str]:
    """Strip names; refuse an empty list, empty names and duplicates (after canonicalisation)."""
    out = [str(n).strip() for n in names]
    if not out:
        raise VocabularyError("no class names given")
    empty = [i for i, n in enumerate(out) if not canonicalize(n)]
    if empty:
        raise VocabularyError(f"class name #{empty[0] + 1} is empty (or only punctuation)")
    seen: dict[str, str] = {}
    for n in out:
        key = canonicalize(n)
        if key in seen:
            raise VocabularyError(f"duplicate class name: {n!r} (same text as {seen[key]!r})")
        seen[key] = n
    return out


def parse_class_list(text: str) -> list[str]:
    """Comma-separated names ("sky, road, car")."""
    return validate_names([n for n in text.split(",") if n.strip()] or [""])


def read_class_file(path: str | Path) -> list[str]:
    """One class name per line; blank lines and lines starting with '#' are skipped."""
    p = Path(path)
    if not p.is_file():
        raise VocabularyError(f"class file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise VocabularyError(f"{p}: not a UTF-8 text file with one class name per line") from None
    return validate_names([ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")])


def check_finite_embeddings(embeddings: Tensor, source: str = "the class embeddings", names=None) -> None:
    """The one check every entry point runs (vocabulary files, RADSeg, the exported backends, the streaming
    runtime): NaN or infinite K x D embeddings would make every probability NaN and every label 0.

    Raises:
        VocabularyError: naming ``source`` (a file or "the class embeddings") and the first bad class.
    """
    bad = ~torch.isfinite(embeddings.detach()).reshape(embeddings.shape[0], -1).all(dim=1) if embeddings.dim() else None
    if bad is not None and bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        which = f"class {names[row]!r}" if names is not None and row < len(names) else f"row {row}"
        raise VocabularyError(
            f"{source}: text embeddings contain NaN or infinity ({int(bad.sum())} of {embeddings.shape[0]} classes, "
            f"first: {which}); rebuild the vocabulary"
        )


def same_embeddings(a, b) -> bool:
    """Whether two vocabularies (or K x D tensors) hold the same classes: equal names when both have names,
    and bit-identical embeddings. Decides whether an export's built-in vocabulary may stand in for ``a``."""
    if a is None or b is None:
        return a is b
    if hasattr(a, "names") and hasattr(b, "names") and list(a.names) != list(b.names):
        return False
    ea, eb = getattr(a, "embeddings", a), getattr(b, "embeddings", b)
    if not isinstance(ea, Tensor):
        ea = torch.as_tensor(ea)
    if not isinstance(eb, Tensor):
        eb = torch.as_tensor(eb)
    return ea.shape == eb.shape and torch.equal(ea.detach().float().cpu(), eb.detach().float().cpu())


def _names_from_metadata(path: Path, meta: dict) -> list[str]:
    """The ``names`` metadata of a vocabulary file: a JSON list of strings, else one clear error."""
    raw = meta.get("names")
    if raw is None:
        raise VocabularyError(f"{path}: vocabulary file without 'names' metadata; rebuild it with `radseg-edge vocab build`")
    try:
        names = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        raise VocabularyError(f"{path}: the 'names' metadata is not valid JSON; rebuild the vocabulary file") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise VocabularyError(
            f"{path}: the 'names' metadata must be a JSON list of strings, found a JSON {type(names).__name__}; "
            "rebuild the vocabulary file"
        )
    return names


class TextEncoder:
    """A text tower: prompts -> P x D embeddings. Wraps a transformers model and tokenizer.

    Args:
        model: a transformers model with ``get_text_features`` (SigLIP/SigLIP2) or a text model whose
            output has ``pooler_output``.
        tokenizer: its tokenizer (padding to max_length, truncation).
        model_id: the identifier recorded in vocabularies and cache keys.
    """

    def __init__(self, model, tokenizer, model_id: str, max_length: int = 64, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, model_id: str, device: str = "cpu") -> TextEncoder:
        """Load a Hugging Face text tower (downloaded on the user's machine; HF_HUB_OFFLINE honoured)."""
        transformers = require("transformers", "text", "building a vocabulary from class names")
        if model_id.startswith("open_clip:"):
            raise VocabularyError(f"{model_id} is an open_clip text tower; compute its embeddings with open_clip and "
                                  "save them with Vocabulary.from_embeddings(...).save(path)")
        try:
            tok = transformers.AutoTokenizer.from_pretrained(model_id)
            config = transformers.AutoConfig.from_pretrained(model_id)
            # a text-only checkpoint (e.g. SiglipTextConfig) has no AutoModel entry: use its own class
            text_only = getattr(transformers, type(config).__name__.replace("Config", "Model"), None)
            loader = text_only if type(config).__name__.endswith("TextConfig") and text_only else transformers.AutoModel
            model = loader.from_pretrained(model_id).to(device)
        except Exception as exc:
            raise VocabularyError(f"could not load text model {model_id} ({type(exc).__name__}: {str(exc)[:160]})") from None
        return cls(model, tok, model_id)

    @torch.inference_mode()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        """P prompts (already canonicalised) -> P x D fp32."""
        outs = []
        device = next(self.model.parameters()).device
        for i in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                list(prompts[i : i + self.batch_size]), padding="max_length", max_length=self.max_length,
                truncation=True, return_tensors="pt",
            )
            ids = batch["input_ids"].to(device)
            if hasattr(self.model, "get_text_features"):
                out = self.model.get_text_features(input_ids=ids)
            else:
                out = self.model(input_ids=ids)
            if not isinstance(out, Tensor):
                out = out.pooler_output
            outs.append(out.float().cpu())
        return torch.cat(outs)


def default_cache_dir() -> Path:
    return Path(os.environ.get("RADSEG_EDGE_CACHE", Path.home() / ".cache" / "radseg_edge")) / "text"


@dataclass
class Vocabulary:
    """K class names and their K x D text embeddings, with the text model that made them."""

    names: list[str]
    embeddings: Tensor
    text_model: str = UNSPECIFIED
    templates_hash: str = ""

    def __post_init__(self) -> None:
        self.names = validate_names(self.names)
        if self.embeddings.dim() != 2 or self.embeddings.shape[0] != len(self.names):
            raise VocabularyError(f"{len(self.names)} names but embeddings of shape {tuple(self.embeddings.shape)}")
        self.embeddings = self.embeddings.float()

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_embeddings(cls, names: Sequence[str], embeddings: Tensor, text_model: str = UNSPECIFIED) -> Vocabulary:
        return cls(list(names), embeddings, text_model, "")

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        encoder: TextEncoder | str,
        templates: Sequence[str] = IMAGENET_TEMPLATES,
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> Vocabulary:
        """Embed class names: per class, the mean of the L2-normalised embeddings of its prompts.

        Embeddings are cached on disk per (text model, templates, class name), so adding a class to a
        vocabulary later costs one class. ``cache_dir=False`` disables the cache.
        """
        names = validate_names(names)
        if isinstance(encoder, str):
            encoder = TextEncoder.from_pretrained(encoder)
        th = templates_hash(templates)
        cache = None if cache_dir is False else Path(cache_dir or default_cache_dir())
        rows = []
        iterator = names
        if progress:
            from tqdm import tqdm

            iterator = tqdm(names, desc="embedding classes", unit="class")
        for name in iterator:
            rows.append(_embed_class(name, encoder, templates, th, cache))
        embeddings = torch.stack(rows)
        check_finite_embeddings(embeddings, f"text model {encoder.model_id}", names)
        return cls(names, embeddings, encoder.model_id, th)

    def subset(self, names: Sequence[str]) -> Vocabulary:
        """The vocabulary restricted to (and reordered as) ``names``; unknown names are an error."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise VocabularyError(f"class(es) {missing} are not in this vocabulary")
        idx = torch.tensor([index[n] for n in names])
        return Vocabulary(list(names), self.embeddings[idx], self.text_model, self.templates_hash)

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (tensor 'embeddings', metadata: names, text model, templates hash)."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(path.suffix + ".safetensors") if path.suffix else path.with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": "radseg-edge-vocabulary/1", "names": json.dumps(self.names), "text_model": self.text_model,
                "templates_hash": self.templates_hash, "dim": str(self.dim)}
        tmp = path.with_name(path.name + ".tmp")
        save_file({"embeddings": self.embeddings.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary file written by :meth:`save` (no text tower needed)."""
        from safetensors import SafetensorError, safe_open

        p = Path(path)
        if not p.is_file():
            raise VocabularyError(f"vocabulary file not found: {p}")
        try:
            with safe_open(str(p), "pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings")
        except (SafetensorError, OSError, KeyError) as exc:
            raise VocabularyError(f"{p}: not a radseg-edge vocabulary file ({exc})") from None
        if meta.get("format", "").split("/")[0] != "radseg-edge-vocabulary":
            raise VocabularyError(f"{p}: safetensors file without radseg-edge vocabulary metadata")
        names = _names_from_metadata(p, meta)
        if emb.dim() != 2 or emb.shape[0] != len(names):
            raise VocabularyError(f"{p}: {len(names)} class names but embeddings of shape {tuple(emb.shape)}; "
                                  "rebuild the vocabulary file")
        if not emb.is_floating_point():
            raise VocabularyError(f"{p}: embeddings of dtype {emb.dtype}, expected floating point; rebuild the vocabulary file")
        check_finite_embeddings(emb, str(p), names)
        try:
            return cls(names, emb, meta.get("text_model", UNSPECIFIED), meta.get("templates_hash", ""))
        except VocabularyError as exc:
            raise VocabularyError(f"{p}: {exc}") from None

    def check_compatible(self, radio) -> None:
        """Refuse a vocabulary whose width or text model does not match the model's language head."""
        name = radio.language_adaptor
        head_dim = radio.heads[name].summary_head.out_dim if name else None
        if head_dim is not None and self.dim != head_dim:
            raise VocabularyError(
                f"vocabulary embeddings are {self.dim}-d ({self.text_model}) but the model's language head ({name}) "
                f"outputs {head_dim}-d; rebuild it with {radio.text_model_id or 'the matching text model'}"
            )
        expected = radio.text_model_id
        if expected and self.text_model != UNSPECIFIED and self.text_model != expected:
            raise VocabularyError(
                f"vocabulary was built with text model {self.text_model} but this checkpoint's language head was "
                f"distilled from {expected}; rebuild it: radseg-edge vocab build --text-model {expected}"
            )


def _embed_class(name: str, encoder: TextEncoder, templates: Sequence[str], th: str, cache: Path | None) -> Tensor:
    key = hashlib.sha256(f"{encoder.model_id}\n{th}\n{canonicalize(name)}".encode()).hexdigest()
    file = cache / f"{key}.pt" if cache else None
    if file is not None and file.is_file():
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception:
            file.unlink(missing_ok=True)  # corrupt cache entry: recompute
    prompts = [canonicalize(t.format(name)) for t in templates]
    emb = F.normalize(encoder.encode(prompts), dim=-1).mean(dim=0)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        torch.save(emb.clone(), tmp)
        os.replace(tmp, file)
    return emb

