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
    """What to evaluate: backend and precision, weights (file or model name), vocabulary, device, kernels."""

    backend: str = "torch"
    precision: str = "fp32"
    checkpoint: str | None = None
    model: str = DEFAULT_MODEL
    random_weights: bool = False
    align_corners: bool | None = None
    vocab: str | None = None
    text_model: str | None = None
    device: str = "cpu"
    kernels: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}"

    def describe(self) -> dict:
        weights = f"random:{self.model}" if self.random_weights else (self.checkpoint or self.model)
        return {"kind": "model", "backend": self.backend, "precision": self.precision, "weights": weights,
                "vocab": self.vocab, "device": self.device}  # fmt: skip

    def with_spec(self, spec: str) -> PredictorOptions:
        """``backend[:precision]`` (e.g. ``onnxruntime:fp16``) applied on top of these options."""
        backend, _, precision = spec.partition(":")
        if not backend:
            raise InputError(f"'{spec}' is not a backend[:precision] specification (e.g. torch:fp32)")
        return replace(self, backend=backend, precision=precision or self.precision)


def load_vocabulary(options: PredictorOptions, class_names: list[str], radio):
    """Class text embeddings in the dataset's class order.

    From ``options.vocab`` (reordered by name when it holds every class name; else used in its own order
    if it has exactly K classes), or built from ``class_names`` with the text tower (the text extra).
    """
    from radseg_edge.models.text import Vocabulary

    if options.vocab:
        vocab = Vocabulary.load(options.vocab)
        if set(class_names) <= set(vocab.names):
            vocab = vocab.subset(class_names)
        elif len(vocab.names) != len(class_names):
            raise VocabularyError(
                f"the vocabulary {options.vocab} has {len(vocab.names)} classes and lacks some of the dataset's "
                f"{len(class_names)}; build it from radseg_edge/data/classes_<dataset>.txt: "
                "radseg-edge vocab build --classes-file FILE -o VOCAB"
            )
    else:
        require("transformers", "text", "embedding the dataset's class names (or pass --vocab FILE)")
        model_id = options.text_model or radio.text_model_id
        if not model_id:
            raise VocabularyError("cannot tell which text model matches this checkpoint; pass --text-model or --vocab")
        vocab = Vocabulary.build(class_names, model_id, progress=True)
    vocab.check_compatible(radio)
    return vocab


class RADSegPredictor:
    """The torch RADSeg pipeline under the benchmark protocol.

    The image is resized to the setting's scale and segmented with the setting's crop/stride; the
    low-resolution class probabilities are upsampled to the ORIGINAL size before prompt denoising and
    argmax, as the reference does (``encode_image_to_feat_map(image, orig_img_size)``).
    """

    def __init__(self, seg, text, setting: Setting):
        self.seg = seg
        self.text = text
        self.setting = setting

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> H x W int64 class ids (-1 below the prediction threshold)."""
        result = self.seg(resize_keep_ratio(image, self.setting.scale), self.text, output_size=image.shape[:2])
        return result.labels_numpy()


def _torch_predictor(options: PredictorOptions, class_names: list[str], setting: Setting) -> PredictFn:
    from radseg_edge.models import load_radio, radio_from_config
    from radseg_edge.pipeline import RADSeg

    if options.random_weights:
        radio = radio_from_config(options.model, seed=0, device=options.device)
    else:
        radio = load_radio(options.checkpoint or options.model, align_corners=options.align_corners, device=options.device)
    vocab = load_vocabulary(options, class_names, radio)
    seg = RADSeg(radio, crop=setting.crop, stride=setting.stride, kernels=options.kernels, precision=options.precision)
    return RADSegPredictor(seg, vocab, setting)


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
