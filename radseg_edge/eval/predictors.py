"""Building the model under evaluation: one factory, :func:`make_predictor`, for every backend.

A predictor is a callable ``predict(image) -> labels``: H x W x 3 uint8 RGB at the original size in,
H x W int64 class ids (0..K-1, -1 = no class) at the original size out. It applies the protocol's
keep-ratio resize and the setting's crop/stride (:mod:`radseg_edge.eval.protocol`).

Backends register a builder in :data:`BACKENDS` (``name -> builder(options, class_names, setting)``);
``torch`` (the reference RADSeg pipeline) is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from radseg_edge.errors import InputError, RadsegError, VocabularyError, require
from radseg_edge.eval.protocol import Setting, resize_keep_ratio
from radseg_edge.eval.runner import PredictFn

#: the model evaluated when neither --checkpoint nor --model is given.
DEFAULT_MODEL = "c-radio_v3-b"


@dataclass(frozen=True)
class PredictorOptions:
    """What to evaluate: backend and precision, weights (file or model name), vocabulary file, device."""

    backend: str = "torch"
    precision: str = "fp32"
    checkpoint: str | None = None
    model: str | None = None
    vocab: str | None = None
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}"

    def describe(self) -> dict:
        return {
            "kind": "model",
            "backend": self.backend,
            "precision": self.precision,
            "weights": self.checkpoint or self.model or DEFAULT_MODEL,
            "vocab": self.vocab,
            "device": self.device,
        }

    def with_spec(self, spec: str) -> PredictorOptions:
        """``backend[:precision]`` (e.g. ``onnxruntime:fp16``) applied on top of these options."""
        backend, _, precision = spec.partition(":")
        if not backend:
            raise InputError(f"'{spec}' is not a backend[:precision] specification (e.g. torch:fp32)")
        return replace(self, backend=backend, precision=precision or self.precision)


def load_vocabulary(options: PredictorOptions, class_names: list[str], language_model: str | None = None):
    """Class text embeddings: the ``--vocab`` file, or embed ``class_names`` with the text tower (text extra).

    Raises :class:`VocabularyError` when the file's class count differs from the dataset's.
    """
    from radseg_edge import Vocabulary

    if options.vocab:
        vocab = Vocabulary.load(options.vocab)
        if len(vocab.names) != len(class_names):
            raise VocabularyError(
                f"the vocabulary {options.vocab} has {len(vocab.names)} classes, the dataset {len(class_names)}; "
                "build it from the dataset's class list (radseg_edge/data/classes_<dataset>.txt) in the same order"
            )
        return vocab
    require("transformers", "text", "embedding the dataset's class names (or pass --vocab FILE)")
    build = getattr(Vocabulary, "from_names", None)
    if build is None:
        raise VocabularyError("this installation cannot embed class names yet; pass a vocabulary file with --vocab")
    return build(class_names, language_model) if language_model else build(class_names)


class RADSegPredictor:
    """The torch RADSeg pipeline under the benchmark protocol.

    ``seg``: a RADSeg with the setting's crop/stride; ``text``: K x D embeddings or a Vocabulary.
    The image is resized to the setting's scale, segmented, and the probabilities are upsampled to the
    ORIGINAL size before prompt denoising and argmax (``output_size`` of the pipeline).
    """

    def __init__(self, seg, text, setting: Setting, autocast_dtype=None):
        self.seg = seg
        self.text = text
        self.setting = setting
        self.autocast_dtype = autocast_dtype

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        resized = resize_keep_ratio(image, self.setting.scale)
        device = next(self.seg.parameters()).device if hasattr(self.seg, "parameters") else torch.device("cpu")
        with torch.inference_mode(), torch.autocast(
            device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            result = self.seg(resized, self.text, output_size=image.shape[:2])
        return result.labels[0].cpu().numpy()


_TORCH_DTYPES = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}


def _torch_predictor(options: PredictorOptions, class_names: list[str], setting: Setting) -> PredictFn:
    import torch

    from radseg_edge import RADSeg, load_radio

    if options.precision not in _TORCH_DTYPES:
        raise InputError(f"the torch backend runs fp32, fp16 or bf16 (autocast), not '{options.precision}'")
    radio = load_radio(options.checkpoint or options.model or DEFAULT_MODEL, device=options.device)
    vocab = load_vocabulary(options, class_names, getattr(radio, "language_adaptor", None))
    seg = RADSeg(radio, crop=setting.crop, stride=setting.stride)
    dtype = _TORCH_DTYPES[options.precision]
    return RADSegPredictor(seg, vocab, setting, getattr(torch, dtype) if dtype else None)


#: backend name -> builder(options, class_names, setting) -> predictor. Other backends add themselves here.
BACKENDS: dict[str, Callable[[PredictorOptions, list[str], Setting], PredictFn]] = {"torch": _torch_predictor}


def make_predictor(options: PredictorOptions, class_names: list[str], setting: Setting) -> PredictFn:
    """The one place a predictor is built from the command-line options (see :data:`BACKENDS`)."""
    try:
        builder = BACKENDS[options.backend]
    except KeyError:
        raise RadsegError(
            f"the backend '{options.backend}' cannot be evaluated in this installation; available: {', '.join(BACKENDS)}"
        ) from None
    return builder(options, class_names, setting)
