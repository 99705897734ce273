"""The C++ runtime (cpp/): built with CMake against the torch wheel's libtorch, run on an AOTInductor
package of the tiny fixture model (tests/fixtures/tiny_radio.pth.tar, coffee-photo vocabulary, 64x96),
compared with the Python pipeline; bad packages and bad frames give status codes, not crashes.

The build (build/cpp-test) and the package (build/cpp-test/export_64x96, keyed on the model weights,
radseg_edge sources and torch version) are reused between sessions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import cpp_runtime_support as support

pytestmark = pytest.mark.skipif(support.toolchain_missing() is not None, reason=f"C++ runtime not buildable: {support.toolchain_missing()}")

BUILD_DIR = support.REPO / "build" / "cpp-test"
PROB_TOL = 1e-4


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    try:
        return support.build_runtime(BUILD_DIR)
    except subprocess.CalledProcessError as exc:  # a real failure, not a skip: the toolchain is there
        pytest.fail(f"building cpp/ failed:\n{exc.stdout[-3000:]}\n{exc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def export(binaries):
    """(export folder, eager frame module) of the tiny 64x96 package."""
    return support.export_tiny_package(BUILD_DIR / f"export_{support.HEIGHT}x{support.WIDTH}")


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> tuple[np.ndarray, Path]:
    rgb = support.photo_frame()
    return rgb, support.write_ppm(tmp_path_factory.mktemp("photo") / "photo.ppm", rgb)


def _expect_create_failure(binaries, status: str, path: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(binaries["radseg_c_api_test"]), "--expect-create-failure", status, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _copy_export(export_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("manifest.json", "model.pt2"):
        shutil.copy(export_dir / name, dest / name)
    return dest


def test_manifest_records_input_size_classes_and_versions(export):
    export_dir, _ = export
    manifest = json.loads((export_dir / "manifest.json").read_text())
    aoti = manifest["artefacts"]["aoti"]
    assert aoti["file"] == "model.pt2" and aoti["device"] == "cpu"
    assert aoti["inputs"]["frame"] == {"shape": [1, 64, 96, 3], "dtype": "uint8", "layout": "NHWC", "color": "RGB"}
    assert aoti["outputs"]["probs"]["shape"] == [1, 7, 64, 96]
    assert manifest["vocabulary"]["names"][:2] == ["sky", "grass"] and manifest["vocabulary"]["num_classes"] == 7
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["format"] == "aoti" and manifest["manifest_version"] == 1
    assert manifest["gate"]["passed"] and manifest["gate"]["pipeline"]["label_agreement"] >= 0.999
    from radseg_edge.export.manifest import Manifest  # the other export formats' reader accepts it

    assert Manifest.read(export_dir).artefact_path(export_dir, "aoti") == export_dir / "model.pt2"


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_cpp_example_matches_python_pipeline(binaries, export, photo, tmp_path, order):
    export_dir, module = export
    rgb, ppm = photo
    labels, probs, stdout = support.run_segment_image(binaries["radseg_segment_image"], export_dir, ppm, tmp_path,
                                                      bgr=order == "bgr")
    ref_labels, ref_probs = support.python_reference(module, rgb)
    figures = support.compare(labels, probs, ref_labels, ref_probs)
    assert labels.dtype == np.int32 and labels.shape == (64, 96) and probs.shape == (7, 64, 96)
    assert figures["label_mismatches"] == 0, figures
    assert figures["max_prob_diff"] <= PROB_TOL, figures
    assert len(np.unique(ref_labels)) > 1  # the photo is not segmented into one class: the check has teeth
    assert "inference" in stdout and "aoti backend" in stdout
    pgm = (tmp_path / "labels.pgm").read_bytes()
    assert pgm.startswith(b"P5\n96 64\n255\n") and np.array_equal(np.frombuffer(pgm[-64 * 96:], np.uint8).reshape(64, 96), labels)


def test_cpp_example_matches_radseg_on_the_same_frame(binaries, export, photo, tmp_path):
    export_dir, _ = export
    rgb, ppm = photo
    seg, vocab = support.tiny_radseg()
    result = seg(rgb, vocab)
    labels, probs, _ = support.run_segment_image(binaries["radseg_segment_image"], export_dir, ppm, tmp_path)
    figures = support.compare(labels, probs, result.labels[0].numpy(), result.probs[0].numpy())
    assert figures["label_mismatches"] == 0 and figures["max_prob_diff"] <= PROB_TOL, figures


def test_c_program_using_only_the_c_header_passes_its_checks(binaries, export):
    source = (support.REPO / "cpp" / "tests" / "c_api_test.c").read_text()
    includes = [line for line in source.splitlines() if line.startswith("#include")]
    assert [i for i in includes if '"' in i] == ['#include "radseg_edge.h"']
    proc = subprocess.run([str(binaries["radseg_c_api_test"]), str(export[0])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and proc.stdout.strip().endswith("0 failed")
    for status in ("RADSEG_ERR_SIZE_MISMATCH", "RADSEG_ERR_BAD_STRIDE", "RADSEG_ERR_INVALID_ARGUMENT",
                   "RADSEG_ERR_PACKAGE_NOT_FOUND"):
        assert status in proc.stdout


def test_frame_loop_reuses_result_buffers_and_reports_stage_timing(binaries, export):
    proc = subprocess.run([str(binaries["radseg_frame_loop"]), str(export[0]), "--frames", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["frames"] == 5 and stats["result_buffers_reused"] is True
    assert set(stats) >= {"preprocess", "inference", "postprocess", "total"}
    assert stats["total"]["mean_ms"] >= stats["inference"]["mean_ms"] > 0


def test_missing_package_is_reported_as_not_found(binaries, export, tmp_path):
    folder = _copy_export(export[0], tmp_path / "no_model")
    (folder / "model.pt2").unlink()
    _expect_create_failure(binaries, "RADSEG_ERR_PACKAGE_NOT_FOUND", folder)
    _expect_create_failure(binaries, "RADSEG_ERR_PACKAGE_NOT_FOUND", tmp_path / "does_not_exist")
    (tmp_path / "empty").mkdir()
    proc = _expect_create_failure(binaries, "RADSEG_ERR_PACKAGE_NOT_FOUND", tmp_path / "empty")
    assert "manifest.json" in proc.stdout


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "zip_without_model"])
def test_corrupt_package_is_refused_without_crashing(binaries, export, tmp_path, damage):
    folder = _copy_export(export[0], tmp_path / damage)
    package = folder / "model.pt2"
    data = package.read_bytes()
    if damage == "truncated":
        package.write_bytes(data[: len(data) // 3])
    elif damage == "random_bytes":
        package.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        import zipfile

        with zipfile.ZipFile(package, "w") as z:
            z.writestr("model/readme.txt", "not a model")
    _expect_create_failure(binaries, "RADSEG_ERR_PACKAGE_CORRUPT", folder)


def test_manifest_of_another_resolution_or_vocabulary_is_refused(binaries, export, tmp_path):
    for name, edit in {
        "resolution": lambda m: m["artefacts"]["aoti"]["inputs"]["frame"].update(shape=[1, 128, 128, 3]),
        "classes": lambda m: m["vocabulary"].update(names=m["vocabulary"]["names"][:5], num_classes=5),
    }.items():
        folder = _copy_export(export[0], tmp_path / name)
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        proc = _expect_create_failure(binaries, "RADSEG_ERR_MANIFEST", folder)
        assert "compiled for" in proc.stdout


def test_unreadable_manifest_is_reported(binaries, export, tmp_path):
    folder = _copy_export(export[0], tmp_path / "bad_json")
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text[: len(text) // 2])
    proc = _expect_create_failure(binaries, "RADSEG_ERR_MANIFEST", folder)
    assert "invalid JSON" in proc.stdout


def test_image_of_another_resolution_is_refused_by_the_example(binaries, export, tmp_path):
    ppm = support.write_ppm(tmp_path / "big.ppm", support.photo_frame(80, 96))
    proc = subprocess.run([str(binaries["radseg_segment_image"]), str(export[0]), str(ppm), str(tmp_path / "l.pgm")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "status 5" in proc.stderr and "compiled for 96x64" in proc.stderr
