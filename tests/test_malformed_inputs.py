"""A corpus of malformed inputs run through `radseg-edge segment` in-process: checkpoints, images, vocabularies,
manifests and exports (tampered, traversal, garbage) and CLI values.

Every case asserts the exit code, a one-line message naming the file or option at fault, no traceback, and no
output file left behind. Fatal problems print one ``error:`` line; a bad image is a per-file ``failed <path>:``
line (the other images still run: tests/test_input_hardening.py).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from radseg_edge.cli import main
from tests._export_helpers import CROP, FRAME_HW, STRIDE, TINY_CKPT, tiny_export_folder
from tests._malformed_helpers import (
    copy_export,
    edit_manifest,
    png_header,
    rehash,
    tiny_checkpoint_variant,
    vocab_file,
)


@dataclass
class Env:
    """What a case builds on: a good image, a good vocabulary, the shared tiny export, and a fresh folder."""

    image: Path
    vocab: Path
    export: Path | None
    tmp: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def segment(self, image=None, checkpoint=None, vocab=None, *extra) -> list[str]:
        return ["segment", str(image or self.image), "--checkpoint", str(checkpoint or TINY_CKPT), "--vocab",
                str(vocab or self.vocab), "--out", str(self.out), "--crop", str(CROP), "--stride", str(STRIDE),
                "--kernels", "reference", *extra]

    def exported(self, folder: Path, *extra) -> list[str]:
        return ["segment", str(self.image), "--backend", "onnxruntime", "--export-dir", str(folder), "--vocab",
                str(self.vocab), "--out", str(self.out), *extra]

    def export_copy(self) -> Path:
        if self.export is None:
            pytest.skip("onnxruntime is not installed")
        return copy_export(self.export, self.tmp / "export")


@dataclass
class Case:
    """``build(env)`` -> (argv, text the message must contain); ``per_file``: a `failed <image>:` line."""

    name: str
    build: Callable[[Env], tuple[list[str], str]]
    per_file: bool = False


CASES: list[Case] = []


def case(name: str, per_file: bool = False):
    def register(build):
        CASES.append(Case(name, build, per_file))
        return build

    return register


def _file(env: Env, name: str, data: bytes) -> Path:
    path = env.tmp / name
    path.write_bytes(data)
    return path


# -- checkpoints: the message names the checkpoint ----------------------------------------------------------------
def _ckpt_case(name: str, make: Callable[[Env], Path]):
    @case(f"checkpoint-{name}")
    def build(env: Env):
        path = make(env)
        return env.segment(checkpoint=path), str(path)


_ckpt_case("garbage", lambda e: _file(e, "g.pth.tar", os.urandom(5000)))
_ckpt_case("truncated", lambda e: _file(e, "t.pth.tar", TINY_CKPT.read_bytes()[:200_000]))
_ckpt_case("empty", lambda e: _file(e, "e.pth.tar", b""))
_ckpt_case("missing", lambda e: e.tmp / "nowhere.pth.tar")
_ckpt_case("code-in-pickle", lambda e: _file(e, "p.pth.tar", pickle.dumps({"args": os.system, "state_dict": {}}, protocol=2)))
_ckpt_case("no-state-dict", lambda e: _save(e, "n.pth.tar", {"args": {}, "weights": torch.zeros(1)}))
_ckpt_case("no-args", lambda e: _save(e, "a.pth.tar", {"state_dict": {"x": torch.zeros(1)}}))
_ckpt_case("non-tensor-state", lambda e: _save(e, "s.pth.tar", {"args": {}, "state_dict": {"x": 3}}))
_ckpt_case("args-wrong-type", lambda e: _save(e, "w.pth.tar", {"args": [1, 2], "state_dict": {"x": torch.zeros(1)}}))
_ckpt_case("no-patch-embedder", lambda e: tiny_checkpoint_variant(e.tmp / "np.pth.tar",
                                                                  drop_prefixes=("base_model.patch_generator.embedder",)))
_ckpt_case("heads-not-dividing", lambda e: tiny_checkpoint_variant(
    e.tmp / "h.pth.tar", lambda a: a["model_kwargs"].update(num_heads=5)))
_ckpt_case("heads-unknowable", lambda e: tiny_checkpoint_variant(
    e.tmp / "u.pth.tar", lambda a: (a.update(model="vit_huge_patch16_224"), a.pop("model_kwargs")),
    drop_prefixes=("base_model.blocks.3.",)))
_ckpt_case("model-kwargs-list", lambda e: tiny_checkpoint_variant(
    e.tmp / "k.pth.tar", lambda a: a.update(model_kwargs=[1, 2])))
_ckpt_case("missing-block-tensor", lambda e: tiny_checkpoint_variant(
    e.tmp / "b.pth.tar", drop_prefixes=("base_model.blocks.2.mlp.fc2.weight",)))
_ckpt_case("foreign-zip", lambda e: _zip(e.tmp / "z.pth.tar"))
_ckpt_case("folder-without-config", lambda e: _mkdir(e.tmp / "hf_empty"))
_ckpt_case("hf-invalid-config", lambda e: _hf(e.tmp / "hf_bad", "{not json", b""))
_ckpt_case("hf-garbage-weights", lambda e: _hf(e.tmp / "hf_garbage", json.dumps({"args": {}}), os.urandom(300)))


def _save(env: Env, name: str, obj) -> Path:
    path = env.tmp / name
    torch.save(obj, path)
    return path


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _hf(folder: Path, config: str, weights: bytes) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(weights or b"\0" * 16)
    return folder


# -- images: a per-file failure naming the image ------------------------------------------------------------------
def _image_case(name: str, make: Callable[[Env], Path]):
    @case(f"image-{name}", per_file=True)
    def build(env: Env):
        path = make(env)
        return env.segment(image=path), str(path)


def _png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    return buf.tobytes()


_image_case("garbage", lambda e: _file(e, "g.png", os.urandom(2000)))
_image_case("empty", lambda e: _file(e, "e.jpg", b""))
_image_case("bomb-60000", lambda e: png_header(e.tmp / "bomb.png", 60000, 60000))
_image_case("bomb-20000", lambda e: png_header(e.tmp / "bomb2.png", 20000, 20000))
_image_case("truncated-png", lambda e: _file(e, "t.png", _png_bytes()[:120]))
_image_case("text-as-png", lambda e: _file(e, "notes.png", b"just some text\n" * 20))
_image_case("missing", lambda e: e.tmp / "absent.png")
_image_case("jpeg-header-only", lambda e: _file(e, "h.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF"))
_image_case("float-tiff", lambda e: _tiff(e.tmp / "f.tiff"))


def _tiff(path: Path) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(0).random((32, 32, 3), dtype=np.float32))
    return path


# -- vocabularies: the message names the vocabulary file ----------------------------------------------------------
def _vocab_case(name: str, make: Callable[[Env], Path]):
    @case(f"vocab-{name}")
    def build(env: Env):
        path = make(env)
        return env.segment(vocab=path), str(path)


NAMES5 = json.dumps(["sky", "road", "car", "tree", "person"])


def _nonfinite(value: float) -> torch.Tensor:
    emb = torch.randn(5, 64)
    emb[3, 1] = value
    return emb


_vocab_case("garbage", lambda e: _file(e, "g.safetensors", os.urandom(500)))
_vocab_case("missing", lambda e: e.tmp / "none.safetensors")
_vocab_case("names-json-string", lambda e: vocab_file(e.tmp / "s.safetensors", '"abcde"'))
_vocab_case("names-invalid-json", lambda e: vocab_file(e.tmp / "j.safetensors", "[sky, road"))
_vocab_case("names-missing", lambda e: vocab_file(e.tmp / "m.safetensors", None))
_vocab_case("names-not-strings", lambda e: vocab_file(e.tmp / "i.safetensors", "[1, 2, 3, 4, 5]"))
_vocab_case("nan-embeddings", lambda e: vocab_file(e.tmp / "nan.safetensors", NAMES5, _nonfinite(math.nan)))
_vocab_case("inf-embeddings", lambda e: vocab_file(e.tmp / "inf.safetensors", NAMES5, _nonfinite(math.inf)))
_vocab_case("wrong-width", lambda e: vocab_file(e.tmp / "w.safetensors", NAMES5, torch.randn(5, 32)))
_vocab_case("rows-not-names", lambda e: vocab_file(e.tmp / "r.safetensors", NAMES5, torch.randn(4, 64)))
_vocab_case("integer-embeddings", lambda e: vocab_file(e.tmp / "int.safetensors", NAMES5, torch.ones(5, 64, dtype=torch.int32)))
_vocab_case("foreign-format", lambda e: vocab_file(e.tmp / "f.safetensors", NAMES5, fmt="something-else/1"))
_vocab_case("duplicate-names", lambda e: vocab_file(e.tmp / "d.safetensors", json.dumps(["a", "b", "A", "c", "d"])))
_vocab_case("one-dimensional", lambda e: vocab_file(e.tmp / "o.safetensors", NAMES5, torch.randn(64)))


# -- exports and manifests: the message names the artefact or manifest.json ---------------------------------------
def _artefact(folder: Path, role: str) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["artefacts"][role]["file"]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _export_case(name: str, change: Callable[[Path], str], per_file: bool = False):
    """``change(folder)`` tampers with a private copy and returns the text the message must contain."""

    @case(f"export-{name}", per_file=per_file)
    def build(env: Env):
        folder = env.export_copy()
        return env.exported(folder), change(folder)


def _tamper(role: str) -> Callable[[Path], str]:
    def change(folder: Path) -> str:
        _flip_last_byte(_artefact(folder, role))
        return str(_artefact(folder, role))

    return change


def _manifest_edit(edit: Callable[[dict], object]) -> Callable[[Path], str]:
    def change(folder: Path) -> str:
        edit_manifest(folder, edit)
        return str(folder / "manifest.json")

    return change


def _manifest_text(text: str) -> Callable[[Path], str]:
    def change(folder: Path) -> str:
        (folder / "manifest.json").write_text(text)
        return str(folder / "manifest.json")

    return change


def _delete(role: str) -> Callable[[Path], str]:
    def change(folder: Path) -> str:
        _artefact(folder, role).unlink()
        return str(_artefact(folder, role))

    return change


def _random_onnx(folder: Path) -> str:
    path = _artefact(folder, "pipeline")  # the graph that runs the good frame (its size, its vocabulary)
    path.write_bytes(os.urandom(4096))
    rehash(folder, "pipeline")
    return str(path)


def _no_manifest(folder: Path) -> str:
    (folder / "manifest.json").unlink()
    return str(folder / "manifest.json")


for _role in ("backbone", "head", "pipeline", "vocabulary"):
    _export_case(f"tampered-{_role}", _tamper(_role))
_export_case("traversal", _manifest_edit(lambda d: d["artefacts"]["head"].update(file="../vocab.safetensors")))
_export_case("absolute-path", _manifest_edit(lambda d: d["artefacts"]["backbone"].update(file="/etc/hostname")))
_export_case("no-sha256", lambda f: (edit_manifest(f, lambda d: d["artefacts"]["head"].pop("sha256")),
                                     str(_artefact(f, "head")))[1])
_export_case("deleted-artefact", _delete("head"))
_export_case("manifest-invalid-json", _manifest_text("{ this is not json"))
_export_case("manifest-a-list", _manifest_text("[1, 2, 3]"))
_export_case("manifest-binary", lambda f: (_file_bytes(f / "manifest.json", os.urandom(300)), str(f / "manifest.json"))[1])
_export_case("manifest-unknown-field", _manifest_edit(lambda d: d.update(evil="x")))
_export_case("manifest-version", _manifest_edit(lambda d: d.update(manifest_version=99)))
_export_case("manifest-missing", _no_manifest)
_export_case("manifest-artefact-not-object", _manifest_edit(lambda d: d["artefacts"].update(head="head.onnx")))
_export_case("manifest-stride-over-crop", _manifest_edit(lambda d: d["windows"].update(stride=4 * CROP)))
_export_case("manifest-nan-tau", _manifest_edit(lambda d: d["windows"].update(scga_tau=float("nan"))))
_export_case("random-bytes-onnx", _random_onnx, per_file=True)


def _file_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@case("export-dir-is-a-file")
def _export_dir_file(env: Env):
    path = _file(env, "not_a_folder", b"x")
    return env.exported(path), "--export-dir"


@case("export-wrong-vocabulary-width")
def _export_vocab_width(env: Env):
    folder = env.export_copy()
    path = vocab_file(env.tmp / "narrow.safetensors", NAMES5, torch.randn(5, 16))
    argv = env.exported(folder)
    argv[argv.index("--vocab") + 1] = str(path)
    return argv, str(path)


# -- CLI values: the message names the option ---------------------------------------------------------------------
def _option_case(name: str, option: str, value: str, needle: str | None = None):
    @case(f"option-{name}")
    def build(env: Env):
        return env.segment(None, None, None, option, value), needle or option


_option_case("crop-negative", "--crop", "-64")
_option_case("crop-not-multiple", "--crop", "100")
_option_case("stride-zero", "--stride", "0")
_option_case("stride-over-crop", "--stride", "128")
_option_case("scra-tau-negative", "--scra-tau", "-1")
_option_case("scra-tau-nan", "--scra-tau", "nan")
_option_case("scga-tau-inf", "--scga-tau", "inf")
_option_case("scga-tau-zero", "--scga-tau", "0")
_option_case("denoise-nan", "--denoise", "nan")
_option_case("denoise-over-one", "--denoise", "1.5")
_option_case("prediction-thresh-negative", "--prediction-thresh", "-1")
_option_case("prediction-thresh-nan", "--prediction-thresh", "nan")
_option_case("device-tpu", "--device", "tpu")
_option_case("device-garbage", "--device", "cuda:x:y", "--device")
_option_case("window-batch-negative", "--window-batch", "-1", "window_batch")
_option_case("kernels-unknown", "--kernels", "magic", "kernels")


@case("option-out-is-a-file")
def _out_file(env: Env):
    (env.tmp / "out").write_text("")
    return env.segment(), "--out"


@case("option-out-below-a-file")
def _out_below_file(env: Env):
    blocker = _file(env, "blocker", b"")
    argv = env.segment()
    argv[argv.index("--out") + 1] = str(blocker / "sub")
    return argv, "--out"


@case("option-classes-empty")
def _classes_empty(env: Env):
    argv = env.segment()
    i = argv.index("--vocab")
    argv[i : i + 2] = ["--classes", " , , "]
    return argv, "--classes"


@case("option-classes-file-missing")
def _classes_file_missing(env: Env):
    argv = env.segment()
    i = argv.index("--vocab")
    argv[i : i + 2] = ["--classes-file", str(env.tmp / "no_classes.txt")]
    return argv, str(env.tmp / "no_classes.txt")


@case("option-providers-unknown")
def _providers(env: Env):
    return env.exported(env.export_copy(), "--providers", "bogus"), "'bogus'"


# -- the test ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[Path, Path, Path | None]:
    """One good image, the export's vocabulary and the tiny export, made once for the module."""
    root = tmp_path_factory.mktemp("malformed_shared")
    image = root / "frame.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        from tests._export_helpers import tiny_vocabulary

        return image, tiny_vocabulary().save(root / "vocab.safetensors"), None
    export = tiny_export_folder()
    vocab = root / "vocab.safetensors"
    shutil.copy(export.parent / "vocab.safetensors", vocab)
    return image, vocab, export


def test_the_corpus_is_large_and_covers_every_kind():
    kinds = {c.name.split("-")[0] for c in CASES}
    assert len(CASES) >= 50 and kinds == {"checkpoint", "image", "vocab", "export", "option"}
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("item", CASES, ids=[c.name for c in CASES])
def test_malformed_input_is_one_line_naming_it(item: Case, shared, tmp_path, capsys):
    image, vocab, export = shared
    env = Env(image, vocab, export, tmp_path)
    argv, needle = item.build(env)
    code = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    if item.per_file:
        failed = [ln for ln in lines if ln.startswith("failed ")]
        assert len(failed) == 1 and needle in failed[0], captured.err
        assert "segmented 0/1" in captured.err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        assert needle in lines[0], lines[0]
    if env.out.is_dir():
        assert not [p for p in env.out.rglob("*") if p.is_file()], "partial output left behind"
