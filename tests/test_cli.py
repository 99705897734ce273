"""The command line: help everywhere, one-line errors, `info`, `vocab show`, `segment` on many images."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from radseg_edge.cli import build_parser, main
from radseg_edge.models.text import Vocabulary
from tests.conftest import TINY_CKPT


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"info", "segment", "vocab"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name
        assert p.description or p.format_usage(), name


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "radseg_edge", "--help"], capture_output=True, text=True, check=True)
    assert "segment" in out.stdout and "info" in out.stdout


def test_info_reports_parameters_per_part(capsys):
    assert main(["info", str(TINY_CKPT), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"]["width"] == 192 and info["language_head"] == "siglip2"
    assert info["parameters"]["backbone"] > 0 and "head:siglip2:summary" in info["parameters"]
    assert main(["info", "c-radio_v3-b", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["parameters"]["backbone"] / 1e6 - 98.3) <= 0.1
    assert "Open Model License" in info["license"]


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all", "not a readable PyTorch checkpoint"),
    (TINY_CKPT.read_bytes()[:4000], "truncated or corrupt"),
])
def test_bad_checkpoint_gives_one_line_error_without_traceback(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(content)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "Traceback" not in err and err.count("\n") == 0


def _write_images(folder):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 255, (70, 100, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 255, (64, 80), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (64, 64, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (48, 64, 3), dtype=np.uint16))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")


def test_segment_writes_outputs_converts_explicitly_and_reports_failures(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _write_images(imgs)
    vocab = Vocabulary.from_embeddings(["sky", "road", "car"], torch.randn(3, 64, generator=torch.Generator().manual_seed(1)))
    vpath = vocab.save(tmp_path / "voc.safetensors")
    out = tmp_path / "out"
    code = main(["segment", str(imgs), "--checkpoint", str(TINY_CKPT), "--vocab", str(vpath), "--out", str(out),
                 "--crop", "64", "--stride", "32", "--save-probs"])
    err = capsys.readouterr().err
    assert code == 1  # one unreadable image
    assert "segmented 4/5" in err and "broken.jpg" in err
    assert "grayscale replicated" in err and "alpha channel dropped" in err and "16-bit converted" in err
    for stem, (h, w) in {"a": (70, 100), "gray": (64, 80), "rgba": (64, 64), "deep": (48, 64)}.items():
        labels = Image.open(out / f"{stem}_labels.png")
        assert labels.mode == "P" and labels.size == (w, h)
        assert np.asarray(labels).max() < 3
        assert cv2.imread(str(out / f"{stem}_overlay.png")).shape == (h, w, 3)
        probs = np.load(out / f"{stem}_probs.npz")["probs"]
        assert probs.shape == (3, h, w)
    assert not list(out.glob("broken*")) and not list(out.glob(".*tmp*"))


def test_vocab_show_and_missing_vocabulary(tmp_path, capsys):
    vpath = Vocabulary.from_embeddings(["sky", "road"], torch.randn(2, 64)).save(tmp_path / "v.safetensors")
    assert main(["vocab", "show", str(vpath)]) == 0
    assert "2 classes, 64-d" in capsys.readouterr().out
    code = main(["segment", str(vpath), "--checkpoint", str(TINY_CKPT), "--vocab", str(tmp_path / "nope.safetensors"),
                 "--out", str(tmp_path / "o")])
    assert code == 1 and "vocabulary file not found" in capsys.readouterr().err


def test_info_counts_the_radseg_plus_sam_path(capsys):
    from tests.conftest import FIXTURES

    sam = FIXTURES / "sam"
    assert main(["info", str(sam / "tiny_radio_sam_public.pth.tar"), "--json", "--sam-checkpoint",
                 str(sam / "tiny_sam_public.safetensors"), "--sam-num-heads", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    extra = sum(v for k, v in info["parameters"].items() if k.startswith("sam:")) + info["parameters"]["head:sam:feature"]
    assert info["parameters_radseg_plus"] == info["parameters_radseg"] + extra and extra > 0


def test_segment_with_sam_refinement_from_the_command_line(tmp_path, capsys):
    from tests.conftest import FIXTURES

    sam = FIXTURES / "sam"
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    vpath = Vocabulary.from_embeddings(["a", "b"], torch.randn(2, 40, generator=torch.Generator().manual_seed(0))).save(
        tmp_path / "v.safetensors")
    code = main(["segment", str(img), "--checkpoint", str(sam / "tiny_radio_sam_public.pth.tar"), "--vocab", str(vpath),
                 "--out", str(tmp_path / "o"), "--crop", "64", "--stride", "32", "--refine", "sam",
                 "--sam-checkpoint", str(sam / "tiny_sam_public.safetensors"), "--sam-num-heads", "2"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "a_labels.png").is_file()


def test_segment_runs_an_exported_onnx_folder_with_the_same_labels(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from tests._export_helpers import CROP, FRAME_HW, STRIDE, tiny_export_folder

    folder = tiny_export_folder()
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), np.random.default_rng(5).integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8))
    outs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        code = main(["segment", str(img), "--checkpoint", str(TINY_CKPT), "--vocab", str(folder.parent / "vocab.safetensors"),
                     "--out", str(out), "--crop", str(CROP), "--stride", str(STRIDE), "--backend", backend,
                     "--export-dir", str(folder)])
        err = capsys.readouterr().err
        assert code == 0, err
        assert backend in err
        outs[backend] = np.asarray(Image.open(out / "frame_labels.png"))
    assert (outs["torch"] == outs["onnxruntime"]).mean() == 1.0
