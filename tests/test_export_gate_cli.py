"""`radseg-edge export` end to end on the tiny checkpoint: the folder, its manifest (model, vocabulary
dimension, crop, precision, versions, gate figures), the ONNX Runtime backend chosen by name or "auto",
and the accuracy gate, which refuses a deliberately broken model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from radseg_edge.errors import EngineError
from radseg_edge.export.build import ExportOptions, check_export, parse_imgsz, synthetic_images
from radseg_edge.export.gate import DEFAULT_THRESHOLDS, GateThresholds, compare, enforce
from tests._export_helpers import CROP, FRAME_HW, STRIDE, tiny_export_folder, tiny_vocabulary

pytest.importorskip("onnxruntime")

IMGSZ = FRAME_HW


@pytest.fixture(scope="module")
def vocab():
    return tiny_vocabulary()


@pytest.fixture(scope="module")
def exported():
    """The CLI's export of the tiny checkpoint: split graphs + the 70x110 pipeline, gate on one sample image."""
    return tiny_export_folder()


def test_export_folder_has_artefacts_and_a_complete_manifest(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and manifest["precision"] == "fp32"
    assert set(manifest["artefacts"]) == {"backbone", "head", "pipeline", "vocabulary"}
    for art in manifest["artefacts"].values():
        assert (exported / art["file"]).is_file() and len(art["sha256"]) == 64
    assert manifest["artefacts"]["pipeline"]["imgsz"] == list(IMGSZ)
    assert manifest["model"]["embed_dim"] == 192 and manifest["vocabulary"]["dim"] == 64
    assert manifest["windows"]["crop"] == CROP and manifest["windows"]["stride"] == STRIDE
    assert {"torch", "onnx", "onnxruntime", "python"} <= set(manifest["versions"])
    gate = manifest["gate"]
    assert gate["passed"] is True
    for key in ("split", "pipeline"):
        assert gate[key]["num_images"] == 1
        assert gate[key]["label_agreement"] >= 0.999 and gate[key]["max_prob_error"] <= 1e-4
    assert gate["split"]["feature_cosine"] >= 0.9999


def test_onnxruntime_backend_is_chosen_by_name_and_by_auto(exported, tiny_radio, vocab):
    from radseg_edge.backends import available_backends, make_backend
    from radseg_edge.pipeline import RADSeg

    assert "onnxruntime" in available_backends() and available_backends()[-1] == "torch"
    seg = RADSeg(tiny_radio, crop=CROP, stride=STRIDE)
    auto = make_backend("auto", export_dir=exported)
    assert auto.name == "onnxruntime" and auto.providers[-1] == "CPUExecutionProvider"
    frame = synthetic_images(1, IMGSZ, seed=5)[0]
    fixed = auto(frame)  # the frame size of the pipeline graph: one session, the folder's vocabulary
    assert fixed.class_names == vocab.names and fixed.features is None
    ref = seg(frame, vocab)
    assert torch.equal(fixed.labels, ref.labels)
    other = synthetic_images(1, (50, 70), seed=6)[0]  # another size: split graphs
    split = make_backend("onnxruntime", export_dir=exported, providers="cpu")(other)
    ref = seg(other, vocab)
    assert torch.equal(split.labels, ref.labels) and (split.probs - ref.probs).abs().max() <= 1e-4
    assert make_backend("auto", radseg=seg).name == "torch"


def test_gate_refuses_a_deliberately_broken_model(exported, tiny_radio, tmp_path):
    import shutil

    from radseg_edge.pipeline import RADSeg
    from tests._malformed_helpers import rehash

    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    head = onnx.load(str(broken / "head.onnx"))
    for init in head.graph.initializer:  # negate the language head's weights
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(-arr, init.name))
    onnx.save(head, str(broken / "head.onnx"))
    rehash(broken, "head")  # a broken model, not a tampered folder (that is refused before the gate runs)
    seg = RADSeg(tiny_radio, crop=CROP, stride=STRIDE)
    opts = ExportOptions(gate_limit=1, progress=False)
    with pytest.raises(EngineError, match="accuracy gate failed .*split graphs.*label agreement"):
        check_export(seg, broken, options=opts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = check_export(seg, broken, options=ExportOptions(gate_limit=1, progress=False, force=True))
    assert figures["passed"] is False and any("--force" in str(w.message) for w in caught)


def test_gate_figures_and_thresholds():
    labels = torch.zeros(1, 4, 4, dtype=torch.int64)
    probs = torch.full((1, 2, 4, 4), 0.5)
    feats = torch.randn(1, 3, 2, 2)
    same = compare(lambda im: (labels, probs, feats), lambda im: (labels, probs, feats), [None])
    assert same.label_agreement == 1.0 and same.max_prob_error == 0.0 and same.feature_cosine == pytest.approx(1.0)
    enforce(same, DEFAULT_THRESHOLDS["fp32"])
    half = labels.clone()
    half[:, :2] = 1
    worse = compare(lambda im: (labels, probs, feats), lambda im: (half, probs + 0.2, -feats), [None, None])
    assert worse.num_images == 2 and worse.label_agreement == 0.5
    assert worse.max_prob_error == pytest.approx(0.2) and worse.feature_cosine == pytest.approx(-1.0)
    failures = worse.failures(GateThresholds(min_label_agreement=0.9, max_prob_error=0.1, min_feature_cosine=0.99))
    assert len(failures) == 3
    assert worse.failures(GateThresholds(min_label_agreement=0.5, max_prob_error=None)) == []


def test_imgsz_parsing():
    assert parse_imgsz("480x640") == (480, 640) and parse_imgsz("512") == (512, 512)
    with pytest.raises(Exception, match="HxW"):
        parse_imgsz("big")


def test_backend_options_for_commands(exported, tiny_radio):
    import argparse

    from radseg_edge.backends import add_backend_args, backend_from_args
    from radseg_edge.errors import InputError
    from radseg_edge.pipeline import RADSeg

    parser = argparse.ArgumentParser()
    add_backend_args(parser)
    seg = RADSeg(tiny_radio, crop=CROP, stride=STRIDE)
    ort_backend = backend_from_args(parser.parse_args(["--export-dir", str(exported), "--providers", "cpu"]), radseg=seg)
    assert ort_backend.name == "onnxruntime" and ort_backend.providers == ["CPUExecutionProvider"]
    assert backend_from_args(parser.parse_args([]), radseg=seg).name == "torch"
    with pytest.raises(InputError, match="export_dir"):
        backend_from_args(parser.parse_args(["--backend", "onnxruntime"]), radseg=seg)
    with pytest.raises(InputError, match="not in this onnxruntime"):
        backend_from_args(parser.parse_args(["--backend", "onnxruntime", "--export-dir", str(exported),
                                             "--providers", "tensorrt"]), radseg=seg)


def test_split_backend_refuses_images_smaller_than_the_window(exported):
    from radseg_edge.backends import make_backend
    from radseg_edge.errors import InputError

    backend = make_backend("onnxruntime", export_dir=exported, providers="cpu")
    small = synthetic_images(1, (32, 64), seed=1)[0]  # sides are multiples of the stride, one below the crop
    with pytest.raises(InputError, match="32x64 windows"):
        backend(small, tiny_vocabulary())
