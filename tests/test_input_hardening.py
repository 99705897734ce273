"""The findings of issue 14 about hostile or careless input, one test each: verified exports, the pipeline graph
only with its own vocabulary, no checkpoint for exported backends, no silent NaN, checkpoint head counts,
vocabulary metadata, `segment` output names / bombs / output folder, and `eval` resuming."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from radseg_edge.cli import main
from radseg_edge.errors import CheckpointError, EngineError, InputError, VocabularyError
from radseg_edge.models.text import Vocabulary
from tests._export_helpers import CROP, FRAME_HW, STRIDE, TINY_CKPT, tiny_export_folder
from tests._malformed_helpers import (
    copy_export,
    edit_manifest,
    png_header,
    tiny_checkpoint_variant,
    vocab_file,
)

OTHER = Vocabulary.from_embeddings(["cat", "dog", "boat"], torch.randn(3, 64, generator=torch.Generator().manual_seed(9)))


@pytest.fixture(scope="module")
def export():
    pytest.importorskip("onnxruntime")
    return tiny_export_folder()


def _frame(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8)


def _ort(folder, **kw):
    from radseg_edge.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(folder, providers="cpu", **kw)


# -- exports are verified before they run ----------------------------------------------------------------------
def test_a_tampered_graph_is_refused_naming_the_file(export, tmp_path):
    folder = copy_export(export, tmp_path / "x")
    head = folder / json.loads((folder / "manifest.json").read_text())["artefacts"]["head"]["file"]
    head.write_bytes(head.read_bytes()[:-1] + b"\0")
    with pytest.raises(EngineError, match="SHA-256") as info:
        _ort(folder)
    assert str(head) in str(info.value)


@pytest.mark.parametrize("name", ["../vocab.safetensors", "/etc/hostname"])
def test_an_artefact_path_outside_the_folder_is_refused(export, tmp_path, name):
    folder = copy_export(export, tmp_path / "x")
    edit_manifest(folder, lambda d: d["artefacts"]["vocabulary"].update(file=name))
    with pytest.raises(EngineError, match="outside the export folder"):
        _ort(folder)


# -- the fixed-size pipeline graph runs only its own vocabulary ------------------------------------------------
def test_the_pipeline_graph_is_not_used_for_another_vocabulary(export):
    own = _ort(export)
    own(_frame())
    assert "pipeline" in own._sessions  # its own classes at its size: the one-session graph
    other = _ort(export, vocabulary=OTHER)
    got = other(_frame())
    assert got.class_names == OTHER.names and got.probs.shape[1] == 3  # the classes asked for, not the built-in 5
    split = _ort(export)(_frame(), OTHER)  # explicit text: the split graphs
    torch.testing.assert_close(got.probs, split.probs)
    assert "pipeline" not in other._sessions


def test_an_export_with_only_the_pipeline_graph_refuses_another_vocabulary(export, tmp_path):
    folder = copy_export(export, tmp_path / "x")
    edit_manifest(folder, lambda d: [d["artefacts"].pop(r) for r in ("backbone", "head")])
    with pytest.raises(InputError, match="fixed-size graph"):
        _ort(folder, vocabulary=OTHER)(_frame())


def test_segment_with_an_exported_backend_needs_no_checkpoint(export, tmp_path, capsys, monkeypatch):
    import radseg_edge.models.hub as hub

    def no_download(*a, **k):
        raise AssertionError("tried to download a checkpoint")

    monkeypatch.setattr(hub, "download_checkpoint", no_download)
    monkeypatch.setattr(hub, "download_hf_folder", no_download)
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), _frame())
    code = main(["segment", str(img), "--backend", "onnxruntime", "--export-dir", str(export),
                 "--vocab", str(export.parent / "vocab.safetensors"), "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "frame_labels.png").is_file()


# -- no silent NaN ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("stride", 96), ("scra_tau", -1.0), ("scga_tau", math.nan), ("scra_tau", math.inf), ("denoise", math.nan),
    ("denoise", 2.0), ("prediction_thresh", math.nan), ("prediction_thresh", -0.5),
])  # fmt: skip
def test_settings_that_make_nan_are_refused_where_the_pipeline_is_built(tiny_radio, option, value):
    from radseg_edge.pipeline import RADSeg

    with pytest.raises(InputError, match=option.replace("_", "-")):
        RADSeg(tiny_radio, kernels="reference", **{"crop": CROP, "stride": STRIDE, option: value})


def test_non_finite_embeddings_are_refused_by_every_entry_point(tiny_radio, export, tmp_path):
    from radseg_edge.pipeline import RADSeg
    from radseg_edge.runtime.segmenter import BackendSegmenter

    nan = torch.randn(5, 64)
    nan[2, 7] = math.nan
    with pytest.raises(VocabularyError, match="NaN"):
        RADSeg(tiny_radio, crop=CROP, stride=STRIDE, kernels="reference")(_frame(), nan)
    with pytest.raises(VocabularyError, match="NaN"):
        _ort(export)(_frame(), nan)
    path = vocab_file(tmp_path / "nan.safetensors", json.dumps(list("abcde")), nan)
    with pytest.raises(VocabularyError, match="nan.safetensors.*NaN"):
        Vocabulary.load(path)
    with pytest.raises(VocabularyError, match="NaN"):
        BackendSegmenter(_ort(export), Vocabulary.from_embeddings(list("abcde"), nan))


# -- checkpoints and vocabulary files ---------------------------------------------------------------------------
def test_a_checkpoint_naming_another_architecture_runs_with_the_head_count_of_its_tensors(tiny_radio, tmp_path):
    from radseg_edge.models import load_radio

    def huge(args):
        args.update(model="vit_huge_patch16_224")
        args.pop("model_kwargs")

    model = load_radio(tiny_checkpoint_variant(tmp_path / "huge.pth.tar", huge))
    assert model.config.num_heads == tiny_radio.config.num_heads == 3
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_spatial(x), tiny_radio.forward_spatial(x))


def test_a_checkpoint_whose_head_count_cannot_be_told_is_refused(tmp_path):
    from radseg_edge.models import load_radio

    def huge(args):
        args.update(model="vit_huge_patch16_224")
        args.pop("model_kwargs")

    path = tiny_checkpoint_variant(tmp_path / "odd.pth.tar", huge, drop_prefixes=("base_model.blocks.3.",))
    with pytest.raises(CheckpointError, match="vit_huge_patch16_224.*num_heads"):
        load_radio(path)


@pytest.mark.parametrize("meta, message", [
    ('"abcde"', "must be a JSON list of strings"), ("[sky, road", "not valid JSON"), (None, "without 'names'"),
    ("[1, 2, 3, 4, 5]", "must be a JSON list of strings"),
])  # fmt: skip
def test_vocabulary_names_metadata_must_be_a_json_list_of_strings(tmp_path, meta, message):
    path = vocab_file(tmp_path / "v.safetensors", meta)
    with pytest.raises(VocabularyError, match=message) as info:
        Vocabulary.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_truncated_checkpoint_is_reported_in_a_whole_short_sentence(tmp_path, capsys):
    bad = tmp_path / "cut.pth.tar"
    bad.write_bytes(TINY_CKPT.read_bytes()[: 100_000])
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("download it again.") and "PytorchStreamReader" not in err and len(err) < 160 + len(str(bad))


# -- segment: names, bombs, output folder, device ----------------------------------------------------------------
def _vocab(tmp_path):
    return str(Vocabulary.from_embeddings(["sky", "road", "car"], torch.randn(3, 64)).save(tmp_path / "v.safetensors"))


def _segment(tmp_path, images, *extra):
    return main(["segment", *map(str, images), "--checkpoint", str(TINY_CKPT), "--vocab", _vocab(tmp_path),
                 "--crop", str(CROP), "--stride", str(STRIDE), "--kernels", "reference", *extra])


def test_output_names_never_collide(tmp_path, capsys):
    for rel in ("a/x.png", "a/x.jpg", "b/x.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), _frame())
    out = tmp_path / "o"
    assert _segment(tmp_path, [tmp_path / "a/x.png", tmp_path / "a/x.jpg", tmp_path / "b/x.png"], "--out", str(out)) == 0
    assert "segmented 3/3" in capsys.readouterr().err
    labels = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_labels.png"))
    assert labels == ["a/x.jpg_labels.png", "a/x.png_labels.png", "b/x_labels.png"]


def test_a_decompression_bomb_is_a_per_file_error_and_later_images_still_run(tmp_path, capsys):
    bomb = png_header(tmp_path / "bomb.png", 60000, 60000)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), _frame())
    out = tmp_path / "o"
    assert _segment(tmp_path, [bomb, good], "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "segmented 1/2" in err and f"failed {bomb}: " in err and "decompression bomb" in err
    assert "Traceback" not in err and (out / "good_labels.png").is_file() and not list(out.glob("bomb*"))


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_output_folder_problems_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, kind):
    import radseg_edge.cli._common as _common

    monkeypatch.setattr(_common, "load_model_from_args", lambda *a: pytest.fail("loaded a model first"))
    if kind == "file":
        out = tmp_path / "taken"
        out.write_text("")
    else:
        out = tmp_path / "ro"
        out.mkdir()
        monkeypatch.setattr("tempfile.TemporaryFile", _read_only_fs)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _frame())
    assert _segment(tmp_path, [img], "--out", str(out)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out {out}") and err.count("\n") == 0


def _read_only_fs(*args, **kwargs):
    raise OSError(30, "Read-only file system")


def test_an_unknown_device_is_one_line(tmp_path, capsys):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _frame())
    assert _segment(tmp_path, [img], "--out", str(tmp_path / "o"), "--device", "tpu") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device tpu") and err.count("\n") == 0


def test_random_bytes_as_an_onnx_graph_are_one_line(export, tmp_path, capsys):
    from tests._malformed_helpers import rehash

    folder = copy_export(export, tmp_path / "x")
    backbone = folder / json.loads((folder / "manifest.json").read_text())["artefacts"]["backbone"]["file"]
    backbone.write_bytes(np.random.default_rng(0).bytes(4096))
    rehash(folder, "backbone")
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _frame()[:64, :96])  # not the pipeline size: the split graphs run
    code = main(["segment", str(img), "--backend", "onnxruntime", "--export-dir", str(folder), "--checkpoint",
                 str(TINY_CKPT), "--vocab", str(export.parent / "vocab.safetensors"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and f"failed {img}: {backbone}: onnxruntime cannot load this graph" in err and "Traceback" not in err


# -- eval resumes ------------------------------------------------------------------------------------------------
def test_eval_resumes_after_an_interruption(tmp_path, capsys, monkeypatch):
    import radseg_edge.eval.runner as runner
    from radseg_edge.eval.labelmaps import write_label_png
    from tests.eval_layouts import make_voc

    labels = {"2007_a": np.array([[0, 1], [15, 20]], np.uint8), "2007_b": np.full((3, 4), 8, np.uint8)}
    root = make_voc(tmp_path / "voc", labels)
    for name, gt in labels.items():
        write_label_png(tmp_path / "preds" / f"{name}.png", np.zeros(gt.shape, np.int64))
    argv = ["eval", "--dataset", "voc20", "--root", str(root), "--predictions", str(tmp_path / "preds"),
            "--json", str(tmp_path / "r.json"), "--no-progress", "--save-every", "1"]
    read, calls = runner.read_label_png, []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return read(path)

    monkeypatch.setattr(runner, "read_label_png", interrupted)
    assert main(argv) == 130
    assert (tmp_path / "r.json.state.json").is_file()
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["resumed_from"] == 1
    assert len(calls) == 3  # the first image was not read again
