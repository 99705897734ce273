"""Evaluation loop and CLI: known mIoU on a miniature VOC set, saved predictions, resume, compare."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radseg_edge.cli import main
from radseg_edge.errors import RadsegError
from radseg_edge.eval.datasets import open_dataset
from radseg_edge.eval.labelmaps import write_label_png
from radseg_edge.eval.predictors import PredictorOptions, make_predictor
from radseg_edge.eval.protocol import get_setting
from radseg_edge.eval.runner import LabelSource, evaluate, folder_source, model_source
from tests.eval_layouts import make_cityscapes, make_voc

# Stored VOC labels (palette indices): 0 background, 1 aeroplane, 8 cat, 15 person, 20 tvmonitor, 255 boundary.
GT_RAW = {
    "2007_a": np.array([[0, 1, 1], [15, 255, 20]], np.uint8),
    "2007_b": np.full((4, 5), 8, np.uint8),
}
# Predictions in VOC20 class ids (aeroplane 0, cat 7, person 14, tvmonitor 19); 5 and 7 at ignore pixels.
PRED = {
    "2007_a": np.array([[5, 0, 3], [14, 7, 14]]),
    "2007_b": np.array([[7] * 5, [7] * 5, [0] * 5, [0] * 5]),
}
# By hand, scored pixels only (a: 4, b: 20):
#   aeroplane (0): tp 1, gt 2, pred 1 + 10  -> 1/12
#   class 3:       tp 0, gt 0, pred 1       -> 0
#   cat (7):       tp 10, gt 20, pred 10    -> 1/2
#   person (14):   tp 1, gt 1, pred 2       -> 1/2
#   tvmonitor(19): tp 0, gt 1, pred 0       -> 0
#   the other 15 classes are absent from both -> excluded
EXPECTED_MIOU = 100 * (1 / 12 + 0 + 1 / 2 + 1 / 2 + 0) / 5  # 21.6667
EXPECTED_PIXEL_ACC = 100 * 12 / 24


def _dict_source(preds: dict[str, np.ndarray], name: str = "fake") -> LabelSource:
    return LabelSource(name, lambda sample, get_image: preds[sample.name], {"kind": "fake"})


@pytest.fixture
def voc(tmp_path):
    return open_dataset("voc20", make_voc(tmp_path / "data", GT_RAW))


def test_known_miou_on_a_miniature_voc_set(voc):
    report = evaluate(voc, [_dict_source(PRED)], progress=False)
    r = report["results"]["fake"]
    assert r["miou"] == pytest.approx(EXPECTED_MIOU, abs=1e-4)
    assert r["pixel_accuracy"] == pytest.approx(EXPECTED_PIXEL_ACC)
    assert r["per_class_iou"]["aeroplane"] == pytest.approx(100 / 12, abs=1e-4)
    assert r["per_class_iou"]["dog"] is None
    assert report["num_images"] == 2 and report["agreement"] == {}


def test_predictions_folder_reproduces_the_known_miou_through_the_cli(voc, tmp_path):
    for name, pred in PRED.items():
        write_label_png(tmp_path / "preds" / f"{name}.png", pred)
    out = tmp_path / "report.json"
    code = main(
        ["eval", "--dataset", "voc20", "--root", str(voc.root), "--predictions", str(tmp_path / "preds"),
         "--json", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    (result,) = report["results"].values()
    assert result["miou"] == round(EXPECTED_MIOU, 4)
    assert result["pixel_accuracy"] == EXPECTED_PIXEL_ACC
    assert not (tmp_path / "report.json.state.json").exists()


def test_saved_predictions_score_the_same_as_the_run_that_wrote_them(voc, tmp_path):
    first = evaluate(voc, [_dict_source(PRED)], progress=False, save_predictions=tmp_path / "saved")
    again = evaluate(voc, [folder_source(tmp_path / "saved")], progress=False)
    (r1,), (r2,) = first["results"].values(), again["results"].values()
    assert r1["miou"] == r2["miou"] and r1["per_class_iou"] == r2["per_class_iou"]


def test_interrupted_run_resumes_from_its_saved_state(voc, tmp_path):
    state = tmp_path / "run.state.json"
    calls = []

    def flaky(sample, get_image):
        calls.append(sample.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return PRED[sample.name]

    source = LabelSource("fake", flaky, {"kind": "fake"})
    with pytest.raises(KeyboardInterrupt):
        evaluate(voc, [source], state_path=state, save_every=100, progress=False)
    saved = json.loads(state.read_text())
    assert saved["done"] == 1  # saved on interrupt, not only every save_every images
    report = evaluate(voc, [source], state_path=state, progress=False)
    assert calls == ["2007_a", "2007_b", "2007_b"]  # the first image is not run again
    assert report["resumed_from"] == 1
    assert report["results"]["fake"]["miou"] == pytest.approx(EXPECTED_MIOU, abs=1e-4)
    assert not state.exists()


def test_interrupt_between_two_sources_does_not_count_the_image_twice(voc, tmp_path):
    state = tmp_path / "s.json"
    calls = []

    def flaky(sample, get_image):
        calls.append(sample.name)
        if len(calls) == 2:  # the second image, after source "p" has predicted it
            raise KeyboardInterrupt
        return PRED[sample.name]

    sources = [_dict_source(PRED, "p"), LabelSource("q", flaky, {"kind": "fake"})]
    with pytest.raises(KeyboardInterrupt):
        evaluate(voc, sources, state_path=state, save_every=100, progress=False)
    report = evaluate(voc, sources, state_path=state, progress=False)
    assert report["resumed_from"] == 1
    for name in ("p", "q"):
        assert report["results"][name]["scored_pixels"] == 24
        assert report["results"][name]["miou"] == pytest.approx(EXPECTED_MIOU, abs=1e-4)
    assert report["agreement"]["p vs q"]["all_pixels"] == 100.0


def test_state_of_a_different_run_is_refused_unless_restarted(voc, tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"version": 1, "fingerprint": {"dataset": "ade20k"}, "done": 1}))
    with pytest.raises(RadsegError, match="--restart"):
        evaluate(voc, [_dict_source(PRED)], state_path=state, progress=False)
    report = evaluate(voc, [_dict_source(PRED)], state_path=state, restart=True, progress=False)
    assert report["resumed_from"] == 0 and report["results"]["fake"]["miou"] == pytest.approx(EXPECTED_MIOU, abs=1e-4)


def test_compare_scores_both_sources_and_their_pixel_agreement(voc):
    other = {k: v.copy() for k, v in PRED.items()}
    other["2007_b"][:] = 7  # b: 10 more pixels differ, all scored
    loads = []
    original = voc.load_image
    voc.load_image = lambda sample: loads.append(sample.name) or original(sample)
    a = model_source("a", lambda image: np.zeros(image.shape[:2], np.int64))
    b = model_source("b", lambda image: np.full(image.shape[:2], 7, np.int64))
    report = evaluate(voc, [_dict_source(PRED, "p"), _dict_source(other, "q"), a, b], progress=False)
    assert loads == ["2007_a", "2007_b"]  # the image is read once per sample for all sources
    assert report["results"]["q"]["miou"] > report["results"]["p"]["miou"]
    pq = report["agreement"]["p vs q"]
    assert pq["all_pixels"] == pytest.approx(100 * 16 / 26, abs=1e-4)
    assert pq["scored_pixels"] == pytest.approx(100 * 14 / 24, abs=1e-4)
    assert report["agreement"]["a vs b"]["all_pixels"] == 0.0


def test_compare_two_prediction_folders_through_the_cli(voc, tmp_path):
    for name, pred in PRED.items():
        write_label_png(tmp_path / "p1" / f"{name}.png", pred)
        write_label_png(tmp_path / "p2" / f"{name}.png", pred)
    out = tmp_path / "cmp.json"
    assert main(["eval", "--dataset", "voc20", "--root", str(voc.root), "--compare", str(tmp_path / "p1"),
                 str(tmp_path / "p2"), "--json", str(out), "--no-progress"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert [r["miou"] for r in report["results"].values()] == [round(EXPECTED_MIOU, 4)] * 2
    assert report["agreement"]["predictions:p1 vs predictions:p2"]["all_pixels"] == 100.0


def test_limit_and_nested_cityscapes_prediction_names(tmp_path):
    labels = {f"aachen/aachen_{i:06d}_000019": np.full((2, 3), i, np.uint8) for i in range(3)}
    ds = open_dataset("cityscapes", make_cityscapes(tmp_path / "data", labels))
    write_label_png(tmp_path / "preds" / "aachen" / "aachen_000000_000019.png", np.zeros((2, 3)))
    write_label_png(tmp_path / "preds" / "aachen_000001_000019.png", np.ones((2, 3)))  # flat layout also found
    report = evaluate(ds, [folder_source(tmp_path / "preds")], limit=2, progress=False)
    (r,) = report["results"].values()
    assert report["num_images"] == 2 and r["miou"] == 100.0


def test_prediction_at_the_wrong_size_is_reported(voc):
    source = LabelSource("small", lambda s, g: np.zeros((1, 1), np.int64))
    with pytest.raises(RadsegError, match="original image size"):
        evaluate(voc, [source], progress=False)


def test_missing_saved_prediction_names_the_expected_file(voc, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RadsegError, match="empty/2007_a.png"):
        evaluate(voc, [folder_source(tmp_path / "empty")], progress=False)


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(RadsegError, match="available: torch"):
        make_predictor(PredictorOptions(backend="tensorrt"), ["a"], get_setting("voc20"))


def test_cli_reports_a_bad_root_in_one_line(tmp_path, capsys):
    code = main(["eval", "--dataset", "ade20k", "--root", str(tmp_path), "--predictions", str(tmp_path),
                 "--json", str(tmp_path / "o.json")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ADEChallengeData2016/{images/validation" in err and err.count("\n") == 1
