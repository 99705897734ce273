"""Time the exact C-RADIOv3-B RADSeg pipeline with random weights (no download), per stage.

    python examples/random_weights_timing.py [HEIGHT WIDTH]
"""

import sys

import torch

from radseg_edge import RADSeg, radio_from_config
from radseg_edge.utils.profiling import StageProfiler

h, w = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (336, 448)
device = "cuda" if torch.cuda.is_available() else "cpu"
prof = StageProfiler(device=device)
seg = RADSeg(radio_from_config("c-radio_v3-b", adaptors=["siglip2"], device=device), profiler=prof)
image, text = torch.rand(1, 3, h, w, device=device), torch.randn(20, 1152, device=device)
seg(image, text)  # warm-up
prof.reset()
for _ in range(3):
    seg(image, text)
for stage, s in prof.summary().items():
    print(f"{stage:12s} p50 {s['p50_ms']:8.1f} ms")
