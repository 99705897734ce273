"""`radseg-edge export --format triton` of the tiny checkpoint (tests/fixtures/tiny_radio.pth.tar): the repository
layout, every config.pbtxt parsed by tritonclient's model-config protobuf, and the batched fixed-size pipeline
(PyTorch module and ONNX graph) equal to the same frames run one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radseg_edge.export.build import synthetic_images
from radseg_edge.export.fixed import FixedResolutionPipeline
from radseg_edge.export.triton_repo import TritonRepoOptions, model_config_text
from tests._export_helpers import CROP, STRIDE, tiny_vocabulary
from tests._triton_helpers import FRAME_HW, MAX_BATCH, tiny_triton_repo

ort = pytest.importorskip("onnxruntime")


def _parse(text: str):
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(text, pb.ModelConfig())


def _frames(n: int, seed: int = 5) -> np.ndarray:
    return np.stack(synthetic_images(n, FRAME_HW, seed=seed))


def test_repository_layout_and_manifest_beside_the_versions():
    repo = tiny_triton_repo()
    model = repo / "radseg"
    assert sorted(p.name for p in repo.iterdir()) == ["radseg"]  # no tensorrt_plan model without a GPU
    for name in ("config.pbtxt", "labels.txt", "manifest.json", "vocabulary.safetensors", "1/model.onnx"):
        assert (model / name).is_file(), name
    assert (model / "labels.txt").read_text().split() == tiny_vocabulary().names
    manifest = json.loads((model / "manifest.json").read_text())
    art = manifest["artefacts"]["pipeline"]
    assert art["file"] == "1/model.onnx" and art["imgsz"] == list(FRAME_HW) and art["max_batch"] == MAX_BATCH
    gate = manifest["gate"]["pipeline"]
    assert gate["label_agreement"] == 1.0 and gate["max_prob_error"] <= 1e-4 and manifest["gate"]["passed"]


def test_config_pbtxt_parses_as_a_triton_model_config():
    repo = tiny_triton_repo()
    cfg = _parse((repo / "radseg" / "config.pbtxt").read_text())
    assert cfg.name == "radseg" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == MAX_BATCH
    (inp,) = cfg.input
    assert inp.name == "frame" and list(inp.dims) == [*FRAME_HW, 3]
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    assert inp.data_type == pb.TYPE_UINT8
    outs = {o.name: o for o in cfg.output}
    assert list(outs["labels"].dims) == list(FRAME_HW) and outs["labels"].data_type == pb.TYPE_INT64
    assert list(outs["probs"].dims) == [5, *FRAME_HW] and outs["probs"].label_filename == "labels.txt"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU and cfg.instance_group[0].count == 1
    assert cfg.version_policy.latest.num_versions == 1
    assert [w.batch_size for w in cfg.model_warmup] == [1, MAX_BATCH]
    assert all(w.inputs["frame"].zero_data for w in cfg.model_warmup)
    assert cfg.parameters["radseg_classes"].string_value == ",".join(tiny_vocabulary().names)


@pytest.mark.parametrize("platform,kind", [("tensorrt_plan", "gpu"), ("onnxruntime_onnx", "auto")])
def test_every_config_variant_parses(platform, kind):
    opts = TritonRepoOptions(model_name="cams", max_batch_size=16, instances=2, kind=kind, gpus=[0, 1],
                             warmup=kind == "gpu")
    cfg = _parse(model_config_text(platform, (480, 640), 3, opts, ["a", 'b "quoted"', "c"]))
    assert cfg.platform == platform and cfg.max_batch_size == 16 and cfg.instance_group[0].count == 2
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert cfg.parameters["radseg_classes"].string_value == 'a,b "quoted",c'
    if kind == "gpu":
        assert list(cfg.instance_group[0].gpus) == [0, 1] and len(cfg.model_warmup) == 2


def test_bad_repository_options_are_one_sentence():
    from radseg_edge.errors import InputError

    with pytest.raises(InputError, match="--max-batch"):
        TritonRepoOptions(max_batch_size=0).check()
    with pytest.raises(InputError, match="--triton-model"):
        TritonRepoOptions(model_name="../x").check()


def test_batched_graph_equals_frames_one_by_one():
    sess = ort.InferenceSession(str(tiny_triton_repo() / "radseg" / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    frames = _frames(3)
    labels, probs = sess.run(["labels", "probs"], {"frame": frames})
    assert labels.shape == (3, *FRAME_HW) and probs.shape == (3, 5, *FRAME_HW)
    for i in range(3):
        one_labels, one_probs = sess.run(["labels", "probs"], {"frame": frames[i : i + 1]})
        assert np.array_equal(labels[i : i + 1], one_labels)
        assert np.abs(probs[i : i + 1] - one_probs).max() <= 1e-5


def test_batched_module_equals_radseg_per_frame(tiny_radio):
    from radseg_edge.pipeline import RADSeg

    seg = RADSeg(tiny_radio, crop=CROP, stride=STRIDE)
    text = tiny_vocabulary().embeddings
    pipe = FixedResolutionPipeline(seg, text, *FRAME_HW).eval()
    frames = _frames(2, seed=9)
    with torch.no_grad():
        labels, probs = pipe(torch.from_numpy(frames))
    for i in range(2):
        ref = seg(frames[i], text)
        assert torch.equal(labels[i : i + 1], ref.labels)
        assert (probs[i : i + 1] - ref.probs).abs().max() <= 1e-4
