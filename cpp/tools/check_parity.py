"""CI check of the C++ runtime: build it, export the tiny model, compare C++ with the Python pipeline.

    python cpp/tools/check_parity.py [--build-dir build/cpp-ci] [--export-dir build/cpp-ci/export]

Exits 1 if the labels differ anywhere or a probability differs by more than 1e-4 (or if the C API
test fails); prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests import cpp_runtime_support as support  # noqa: E402

PROB_TOL = 1e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "cpp-ci")
    parser.add_argument("--export-dir", type=Path, default=None)
    args = parser.parse_args()
    export_dir = args.export_dir or args.build_dir / f"export_{support.HEIGHT}x{support.WIDTH}"

    missing = support.toolchain_missing()
    if missing:
        print(f"cannot build the C++ runtime: {missing}", file=sys.stderr)
        return 1
    try:
        binaries = support.build_runtime(args.build_dir)
    except subprocess.CalledProcessError as exc:
        print(f"C++ build failed:\n{exc.stdout}\n{exc.stderr}", file=sys.stderr)
        return 1
    export_dir, module = support.export_tiny_package(export_dir)
    seg, vocab = support.tiny_radseg()
    rgb = support.photo_frame()
    ref_labels, ref_probs = support.python_reference(module, rgb)
    pipe = seg(rgb, vocab)  # RADSeg itself, on the same uint8 frame
    pipe_labels, pipe_probs = pipe.labels[0].numpy(), pipe.probs[0].numpy()

    report: dict = {"size": [support.HEIGHT, support.WIDTH], "classes": len(vocab.names)}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ppm = support.write_ppm(Path(tmp) / "photo.ppm", rgb)
        for order in ("rgb", "bgr"):
            labels, probs, stdout = support.run_segment_image(
                binaries["radseg_segment_image"], export_dir, ppm, Path(tmp), bgr=order == "bgr"
            )
            for ref_name, (rl, rp) in {"frame_module": (ref_labels, ref_probs), "radseg": (pipe_labels, pipe_probs)}.items():
                figures = support.compare(labels, probs, rl, rp)
                report[f"cpp_{order}_vs_{ref_name}"] = figures
                ok &= figures["label_mismatches"] == 0 and figures["max_prob_diff"] <= PROB_TOL
            report[f"cpp_{order}_timing"] = stdout.splitlines()[0]
    api = subprocess.run([str(binaries["radseg_c_api_test"]), str(export_dir)], capture_output=True, text=True, timeout=300)
    report["c_api_test"] = api.stdout.strip().splitlines()[-1] if api.stdout.strip() else api.stderr.strip()
    ok &= api.returncode == 0
    if api.returncode != 0:
        print(api.stdout, api.stderr, file=sys.stderr)
    report["passed"] = bool(ok)
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
