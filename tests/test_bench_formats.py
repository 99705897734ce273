"""The --formats wiring: exported backends become candidates, and what cannot run here is skipped with a reason."""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch

from radseg_edge.bench import formats
from radseg_edge.bench.suite import BenchOptions, case_from_imgsz
from radseg_edge.errors import MissingDependencyError
from radseg_edge.models import load_radio

CASE = case_from_imgsz((64, 96), crop=64, stride=32, num_classes=3)


def _options(**kw):
    return BenchOptions(cases=[CASE], formats=True, **kw)


def test_formats_are_skipped_with_the_reason_when_the_export_modules_are_missing(monkeypatch):
    monkeypatch.setattr(formats, "_api", lambda: (None, "no module named radseg_edge.export.build"))
    cands, skipped = formats.format_candidates(None, CASE, torch.zeros(1, 3, 64, 96), torch.zeros(3, 64), _options())
    assert cands == []
    assert skipped == ["ONNX Runtime / TensorRT formats: no module named radseg_edge.export.build"]


def test_each_feasible_format_is_exported_once_and_run_through_make_backend(monkeypatch):
    radio = load_radio("tests/fixtures/tiny_radio.pth.tar", adaptors=["siglip2"])
    exported: list[tuple[str, str, tuple]] = []
    labels = torch.zeros(1, 64, 96, dtype=torch.long)

    def check_feasible(fmt):
        if fmt == "onnx-int8":
            raise MissingDependencyError("INT8 needs the Python package 'onnxruntime'")

    def export_model(seg, fmt, folder, vocabulary=None, options=None):
        exported.append((fmt, folder, options.imgsz))
        assert seg.crop == 64 and vocabulary.embeddings.shape == (3, 64)
        return SimpleNamespace(notes=["graph checked"])

    def make_backend(name, export_dir=None, **kw):
        assert kw == {"providers": "cpu"}
        return lambda image: SimpleNamespace(labels=labels)

    api = (lambda: ["onnxruntime", "torch"], make_backend, export_model, SimpleNamespace,
           {"onnx": "fp32", "onnx-int8": "int8"}, check_feasible)
    monkeypatch.setattr(formats, "_api", lambda: (api, ""))
    monkeypatch.setattr(formats, "FORMATS_CPU", {"onnxruntime": ("onnx", "onnx-int8"), "tensorrt": ("engine-fp16",)})
    cands, skipped = formats.format_candidates(radio, CASE, torch.zeros(1, 3, 64, 96), torch.randn(3, 64), _options())
    assert [c.name for c in cands] == ["onnxruntime fp32"]
    assert [fmt for fmt, _, _ in exported] == ["onnx"] and exported[0][2] == (64, 96)
    assert skipped == ["onnxruntime onnx-int8: INT8 needs the Python package 'onnxruntime'",
                       "tensorrt: not usable on this machine"]
    assert torch.equal(cands[0].run(), labels)
    folder = exported[0][1]
    assert os.path.isdir(folder)
    cands[0].cleanup()
    assert not os.path.exists(folder)
