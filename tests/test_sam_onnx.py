"""The ONNX graph of SAM's neck + prompt encoder + mask decoder (dynamic number of prompts) matches PyTorch in
ONNX Runtime (<= 1e-4) for 1, 5 and 37 prompts, and for the real prompts of a fixture case."""

import pytest
import torch

from radseg_edge.backends.sam_onnx import SamDecoderOnnx, run_sam_decoder_onnx, sam_decoder_session
from radseg_edge.core.refine import RefineOptions
from radseg_edge.errors import InputError
from radseg_edge.export.sam_onnx import example_inputs, export_sam_decoder_onnx
from radseg_edge.models.sam import load_sam
from radseg_edge.models.sam_refiner import SamRefiner
from tests.sam_cases import (
    SAM_WEIGHTS,
    TINY_SAM_HEADS,
    coarse_probs,
    load_case,
    near0_pixels,
    refine_kwargs,
    refined,
    tiny_radio,
    tiny_refiner,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    sam = load_sam(SAM_WEIGHTS, num_heads=TINY_SAM_HEADS)
    path = export_sam_decoder_onnx(sam, tmp_path_factory.mktemp("onnx") / "sam_decoder.onnx")
    return sam, sam_decoder_session(path)


@pytest.mark.parametrize("num_prompts,num_masks", [(1, 1), (5, 3), (37, 5)])
def test_onnx_runtime_matches_pytorch(exported, num_prompts, num_masks):
    sam, path = exported
    x = example_inputs(sam, num_prompts, num_masks, seed=num_prompts)
    with torch.no_grad():
        want = sam(*x)
    got = run_sam_decoder_onnx(path, x)
    assert got[0].shape == (num_prompts, 1, 256, 256) and got[1].shape == (num_prompts, 1)
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max() <= 1e-4


def test_onnx_runtime_reproduces_the_refiner_on_fixture_prompts(exported):
    sam, path = exported
    info = refined("sam_smooth_120x160_full").images[0]
    classes = info.prompts.prompted_classes()
    index = torch.tensor([classes.index(c) for c in info.prompts.classes.tolist()])
    feats = torch.nn.functional.pad(info.sam_features, (0, 64 - info.sam_features.shape[-1], 0, 64 - info.sam_features.shape[-2]))
    labels = torch.ones(len(index), 1)
    low, iou = run_sam_decoder_onnx(path, (feats, info.point_coords, labels, info.boxes, info.mask_inputs, index))
    # these logits are ill-conditioned in fp32 (the un-batched mask-prompt LayerNorm divides by a variance
    # close to its eps): PyTorch fp32 itself is ~7e-5 from a float64 evaluation, ONNX Runtime ~1.6e-4.
    assert (low - info.low_res_logits).abs().max() <= 3e-4
    assert (iou[:, 0] - info.iou).abs().max() <= 1e-4
    thresh = load_case("sam_smooth_120x160_full")[0]["settings"]["sam_iou_thresh"]
    assert torch.equal(iou[:, 0] > thresh, info.valid)


def test_refiner_with_the_onnx_decoder_matches_the_reference_fixture(exported):
    sam, session = exported
    meta, t = load_case("sam_smooth_96x200_coarse0")
    res = tiny_refiner().with_decoder(SamDecoderOnnx(session)).refine(tiny_radio(), t["image"], coarse_probs(t), **refine_kwargs(meta))
    info = res.images[0]
    assert info.image_embeddings is None  # the graph ran the neck
    assert (info.iou - t["b0_sam_iou_predictions"][:, 0]).abs().max() <= 1e-4
    assert torch.equal(info.valid.to(torch.uint8), t["b0_sam_valid"])
    ok = ~near0_pixels(t, 0, res.labels.shape[-2:])
    assert torch.equal(res.labels[0][ok], t["final_seg_pred"][0, 0].long()[ok] - 1)
    assert (res.probs[0] - t["final_seg_probs"][0, 1:]).abs().amax(0)[ok].max() <= 1e-4
    with pytest.raises(InputError, match="un-batched"):
        SamRefiner(sam, RefineOptions.corrected(), decoder=SamDecoderOnnx(session))
