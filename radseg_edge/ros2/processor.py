"""One image message in, the output messages out, with per-stage timings: the part of the ROS 2 node
that does work, shared with ``radseg-edge bag`` and the overhead benchmark.

    proc = FrameProcessor(segmenter, rosbags_messages("humble"))
    out = proc(image_msg)            # sensor_msgs/Image or CompressedImage
    out.labels, out.overlay, out.confidence, out.timings   # messages carry image_msg.header

Stages (ms): ``decode`` (message -> RGB array), the model's own stages when its profiler reports them
(preprocess, windows, backbone, ...; the rest of the call is ``model_other``) or ``model``, then
``labels`` (label image + confidence messages), ``overlay`` (blend + rgb8 message). ``total`` is the
wall time of the whole call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radseg_edge.ros2.convert import (
    array_to_image,
    confidence_to_image,
    label_info,
    labels_to_image,
    message_to_rgb,
)
from radseg_edge.ros2.types import Messages
from radseg_edge.runtime.overlay import overlay
from radseg_edge.utils.profiling import StageProfiler


@dataclass
class FrameOutputs:
    """Messages made from one input message (all with its header) and the stage timings in ms."""

    labels: Any
    overlay: Any | None
    confidence: Any | None
    label_ids: np.ndarray  # H x W int64 class ids, -1 = no class
    class_names: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)


class FrameProcessor:
    """Segment image messages with a :class:`~radseg_edge.runtime.segmenter.Segmenter` and build the outputs.

    Args:
        segmenter: ``segmenter(rgb) -> SegmentResult`` with ``class_names``; its optional ``profiler``
            (a StageProfiler) splits the model time into stages.
        msgs: the message classes to build (rosbags or rclpy, see :mod:`radseg_edge.ros2.types`).
        publish_overlay / publish_confidence: build those messages too.
        alpha: overlay mask opacity in [0, 1].
    """

    def __init__(self, segmenter: Any, msgs: Messages, publish_overlay: bool = True,
                 publish_confidence: bool = False, alpha: float = 0.5) -> None:
        self.segmenter = segmenter
        self.msgs = msgs
        self.publish_overlay = publish_overlay
        self.publish_confidence = publish_confidence
        self.alpha = alpha

    def label_info(self, header: Any, threshold: float = 0.0) -> Any:
        """LabelInfo of the segmenter's current classes."""
        return label_info(self.msgs, self.segmenter.class_names, header, threshold)

    def __call__(self, msg: Any) -> FrameOutputs:
        t: dict[str, float] = {}
        start = time.perf_counter()
        rgb = message_to_rgb(msg)
        t1 = time.perf_counter()
        t["decode"] = (t1 - start) * 1e3
        prof = getattr(self.segmenter, "profiler", None)
        prof = prof if isinstance(prof, StageProfiler) and prof.enabled else None
        mark = prof.mark() if prof is not None else None
        res = self.segmenter(rgb)
        t2 = time.perf_counter()
        model_ms = (t2 - t1) * 1e3
        stages = prof.since(mark) if prof is not None and mark is not None else {}
        if stages:
            t.update(stages)
            t["model_other"] = max(0.0, model_ms - sum(stages.values()))
        else:
            t["model"] = model_ms
        names = tuple(res.class_names)
        labels_msg = labels_to_image(self.msgs, res.labels, len(names), msg.header)
        conf_msg = None
        if self.publish_confidence and res.extra.get("probs") is not None:
            conf_msg = confidence_to_image(self.msgs, res.extra["probs"], msg.header)
        t3 = time.perf_counter()
        t["labels"] = (t3 - t2) * 1e3
        over_msg = None
        if self.publish_overlay:
            over_msg = array_to_image(self.msgs, overlay(rgb, res.labels, names, alpha=self.alpha), "rgb8", msg.header)
            t["overlay"] = (time.perf_counter() - t3) * 1e3
        t["total"] = (time.perf_counter() - start) * 1e3
        return FrameOutputs(labels_msg, over_msg, conf_msg, res.labels, names, t)


def segmenter_from_params(params: Any, log: Any = print) -> tuple[Any, Any]:
    """The node's model and class bank from :class:`~radseg_edge.ros2.params.NodeParams`:
    ``(segmenter, EmbeddingBank)``, built as ``radseg-edge stream`` builds them
    (:func:`radseg_edge.runtime.segmenter.make_segmenter`), so that class changes go through the same
    :class:`~radseg_edge.runtime.live_vocab.VocabularyController` with the same restrictions."""
    from radseg_edge.errors import VocabularyError
    from radseg_edge.runtime.segmenter import make_segmenter
    from radseg_edge.runtime.vocab import (
        EmbeddingBank,
        lazy_text_encoder,
        load_vocabulary_file,
        parse_class_names,
    )

    radio = None
    if params.backend == "torch" or (params.backend == "auto" and not params.export_dir):
        from radseg_edge.models import load_radio

        radio = load_radio(params.checkpoint, device=_device(params.device))  # the text tower id comes with it
    text_model = params.text_model or (radio.text_model_id if radio is not None else "")
    text_model = "" if text_model.lower() == "none" else text_model
    bank = EmbeddingBank(encoder=lazy_text_encoder(text_model, device="cpu") if text_model else None)
    vocabs = [load_vocabulary_file(v) for v in params.vocab]
    for v in vocabs:
        bank.add(v)
    vocab = bank.resolve(parse_class_names(params.classes)) if params.classes else (vocabs[0] if vocabs else None)
    if vocab is None:
        raise VocabularyError("no classes: set the vocab or classes parameter")
    segmenter = make_segmenter(params.backend, params.checkpoint or None, vocab, device=_device(params.device),
                               profiler=StageProfiler(device=_device(params.device)), radio=radio,
                               export_dir=params.export_dir or None, **params.radseg_options())
    for reason in getattr(segmenter, "fallback_reasons", []):
        log(f"backend auto: {reason}")
    return segmenter, bank


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
