"""The naive baseline every benchmark compares against (the reference's behaviour, eager fp32).

The implementation lives in the package, :mod:`radseg_edge.bench.baseline`, so that an installed
``radseg-edge bench`` can measure it in the same process as the optimized path; this script re-exports it
and checks, on the official fixtures, that it still reproduces the official release's outputs:

    python benchmarks/baseline.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from radseg_edge.bench.baseline import NaiveRADSeg  # noqa: E402

__all__ = ["NaiveRADSeg"]

FIXTURES = [("seg_slide64s32_100x150", 64, 32), ("seg_slide112s48_70x110", 112, 48), ("seg_single_80x112", 0, 0)]


def main() -> int:
    from safetensors.torch import load_file

    from radseg_edge.models import load_radio

    radio = load_radio(ROOT / "tests/fixtures/tiny_radio.pth.tar", adaptors=["siglip2"])
    worst = 0.0
    for case, crop, stride in FIXTURES:
        ref = load_file(ROOT / f"tests/fixtures/{case}.safetensors")
        out = NaiveRADSeg(radio, crop=crop, stride=stride)(ref["image"], ref["text_embeds"])
        diff = float((out.probs - ref["seg_probs"][:, 1:]).abs().max())
        same = bool((out.labels + 1 == ref["seg_pred"][:, 0]).all())
        worst = max(worst, diff)
        print(f"{case}: max |probs - official| = {diff:.2e}, labels identical: {same}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
