"""End to end: the tiny RADIO checkpoint + random class embeddings through `radseg-edge eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radseg_edge import RADSeg, load_radio
from radseg_edge.cli import main
from radseg_edge.eval.datasets import load_class_names, open_dataset
from radseg_edge.eval.labelmaps import read_label_png
from radseg_edge.eval.metrics import ConfusionMatrix
from radseg_edge.eval.predictors import RADSegPredictor
from radseg_edge.eval.protocol import get_setting
from radseg_edge.models.text import Vocabulary
from radseg_edge.utils.precision import precision_supported
from tests.eval_layouts import make_voc

TINY = Path(__file__).parent / "fixtures" / "tiny_radio.pth.tar"


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    names = load_class_names("voc20")[::-1]  # reversed on purpose: the reader reorders by name
    emb = torch.randn(len(names), 64, generator=torch.Generator().manual_seed(0))
    return Vocabulary.from_embeddings(names, emb).save(tmp_path_factory.mktemp("vocab") / "voc20.safetensors")


@pytest.fixture
def voc_root(tmp_path):
    rng = np.random.default_rng(1)
    labels = {
        "2007_000001": rng.choice([0, 1, 15, 255], size=(30, 40)).astype(np.uint8),
        "2007_000002": rng.choice([0, 8, 12, 20], size=(45, 30)).astype(np.uint8),
    }
    return make_voc(tmp_path / "data", labels)


def test_cli_eval_with_the_tiny_checkpoint_matches_a_direct_score_of_its_predictions(voc_root, vocab_file, tmp_path):
    out = tmp_path / "r.json"
    code = main(
        ["eval", "--dataset", "voc20", "--root", str(voc_root), "--setting", "low", "--checkpoint", str(TINY),
         "--vocab", str(vocab_file), "--device", "cpu", "--json", str(out), "--save-predictions", str(tmp_path / "p"),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    result = report["results"]["torch:fp32"]
    assert report["run"]["protocol"] == {"scale": [2048, 336], "crop": 224, "stride": 112}
    assert result["images_per_s"] > 0
    ds = open_dataset("voc20", voc_root)
    cm = ConfusionMatrix(ds.num_classes)
    for sample in ds:
        gt = ds.load_label(sample)
        pred = read_label_png(tmp_path / "p" / f"{sample.name}.png")
        assert pred.shape == gt.shape  # predicted at the original size
        cm.update(pred, gt)
    assert result["miou"] == pytest.approx(cm.scores().miou * 100, abs=1e-4)
    assert result["pixel_accuracy"] == pytest.approx(cm.scores().pixel_accuracy * 100, abs=1e-4)


def test_predictor_equals_the_pipeline_when_no_resize_is_needed(vocab_file):
    setting = get_setting("voc20", "low")
    seg = RADSeg(load_radio(TINY), crop=setting.crop, stride=setting.stride)
    vocab = Vocabulary.load(vocab_file).subset(load_class_names("voc20"))
    image = np.random.default_rng(2).integers(0, 256, (336, 448, 3), dtype=np.uint8)  # already at scale
    expected = seg(image, vocab).labels[0].numpy()
    np.testing.assert_array_equal(RADSegPredictor(seg, vocab, setting)(image), expected)


def test_predictor_upsamples_low_resolution_probabilities_to_the_original_size(vocab_file):
    setting = get_setting("voc20", "low")
    seg = RADSeg(load_radio(TINY), crop=setting.crop, stride=setting.stride)
    vocab = Vocabulary.load(vocab_file).subset(load_class_names("voc20"))
    image = np.random.default_rng(3).integers(0, 256, (21, 37, 3), dtype=np.uint8)
    labels = RADSegPredictor(seg, vocab, setting)(image)
    assert labels.shape == (21, 37) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 20


def test_compare_fp32_and_bf16_in_one_pass(voc_root, vocab_file, tmp_path, capsys):
    """Runs where the library says this CPU supports bf16; elsewhere (AVX2-only x86, or
    ONEDNN_MAX_CPU_ISA=AVX2) one error line with the library's reason, exit 1, no report written."""
    out = tmp_path / "c.json"
    code = main(
        ["eval", "--dataset", "voc20", "--root", str(voc_root), "--setting", "low", "--checkpoint", str(TINY),
         "--vocab", str(vocab_file), "--device", "cpu", "--compare", "torch:fp32", "torch:bf16", "--limit", "1",
         "--json", str(out), "--no-progress"]
    )  # fmt: skip
    ok, reason = precision_supported("bf16", "cpu")
    if not ok:
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and not out.exists()
        assert err.count("error:") == 1 and reason in err and "bf16" in err
        return
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"torch:fp32", "torch:bf16"}
    agreement = report["agreement"]["torch:fp32 vs torch:bf16"]
    assert 0.0 <= agreement["all_pixels"] <= 100.0 and agreement["counts"][1] == 30 * 40


def test_missing_text_extra_or_vocab_is_one_clear_error(voc_root, tmp_path, capsys, monkeypatch):
    import radseg_edge.eval.predictors as predictors

    def no_transformers(module, extra, purpose):
        from radseg_edge.errors import MissingDependencyError

        raise MissingDependencyError(f"{purpose} needs the Python package '{module}': pip install 'radseg-edge[{extra}]'")

    monkeypatch.setattr(predictors, "require", no_transformers)
    code = main(["eval", "--dataset", "voc20", "--root", str(voc_root), "--checkpoint", str(TINY), "--device", "cpu",
                 "--json", str(tmp_path / "x.json"), "--no-progress"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "or pass --vocab FILE" in err and "radseg-edge[text]" in err
