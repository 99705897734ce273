"""Cost of RADSeg+ SAM refinement per image on this CPU, as a ratio to the coarse RADSeg pipeline.

Real architectures with seeded random weights (no downloads): RADIO ``c-radio_v3-b`` (siglip2 + sam heads)
and SAM ViT-H's neck + prompt encoder + mask decoder (written to a temporary official-layout .pth and loaded
through ``RADSeg(refine="sam", sam_checkpoint=...)``). Random weights give meaningless masks, so:

* the refinement workload is fixed by a synthetic coarse prediction with a known number of connected regions
  (one prompt each), and every mask is accepted (IoU threshold -inf) so that the merge always runs;
* the coarse pipeline and the refinement run on the same image, in the same process, one after the other.

    python benchmarks/bench_refine.py                    # 480 x 640 image, 4 and 16 prompts
    python benchmarks/bench_refine.py --size 512x683 --prompts 8 --repeat 3

Writes benchmarks/results/refine.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from radseg_edge.models import radio_from_config
from radseg_edge.models.sam import SAM_VIT_H, random_sam, to_official_state_dict
from radseg_edge.models.sam_refiner import SamRefiner
from radseg_edge.pipeline import RADSeg
from radseg_edge.utils.profiling import StageProfiler

RESULTS = Path(__file__).parent / "results"
SAM_STAGES = ("sam_prompts", "sam_backbone", "sam_decoder", "sam_merge")


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """1 x 3 x H x W RGB in [0,1]: large smooth colour regions."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 6, 8, generator=g)
    return F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def grid_probs(h: int, w: int, regions: int, classes: int = 8) -> torch.Tensor:
    """1 x C x H x W coarse probabilities whose argmax tiles the image into ``regions`` rectangles, neighbours
    of different classes (so each tile is one 8-connected region, i.e. one prompt), max probability 0.8."""
    rows = int(math.floor(math.sqrt(regions)))
    while regions % rows:
        rows -= 1
    cols = regions // rows
    ys = torch.arange(h) * rows // h
    xs = torch.arange(w) * cols // w
    tile = ys[:, None] * cols + xs[None, :]
    cls = (ys[:, None] * 3 + xs[None, :]) % classes
    probs = torch.full((classes, h, w), 0.2 / (classes - 1))
    probs.scatter_(0, cls[None], 0.8)
    assert int(tile.max()) + 1 == regions
    return probs[None]


def interleaved(fns: dict, repeat: int, after_warmup=None) -> dict[str, list[float]]:
    """Run every function once as a warm-up, then ``repeat`` rounds of all of them in turn (so that load
    changes on a shared machine hit them alike). Returns ms per round and name."""
    for fn in fns.values():
        fn()
    if after_warmup is not None:
        after_warmup()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def markdown(result: dict) -> str:
    """The results table of one run (``result`` as saved in refine.json)."""
    h, w = result["image_hw"]
    sam_h, sam_w = result["sam_input_hw"]
    md = [
        "# RADSeg+ refinement cost (CPU)",
        "",
        f"{result['model']}, image {h}x{w} (SAM pass at {sam_h}x{sam_w}), crop {result['crop']}/{result['stride']}, "
        f"{result['threads']} threads, torch {result['torch']}, median of {result['repeat']} interleaved rounds after "
        "a warm-up. Random weights (timings only); every mask accepted so the merge always runs.",
        "",
        f"Coarse RADSeg pipeline: **{result['coarse_ms']:.0f} ms** per image.",
        "",
        "| prompts | refinement ms | x coarse (median) | x coarse (rounds) | " + " | ".join(SAM_STAGES) + " |",
        "|---|---|---|---|" + "---|" * len(SAM_STAGES),
    ]
    for r in result["refine"]:
        spread = ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])
        md.append(f"| {r['prompts']} | {r['refine_ms']:.0f} | {r['ratio_to_coarse']:.2f} | {spread} | "
                  + " | ".join(f"{r['stages_p50_ms'].get(s, 0):.0f}" for s in SAM_STAGES) + " |")
    p = result["sam_path_parameters"]
    once = result["pipeline_once"]
    md += [
        "",
        f"SAM-path parameters: SAM neck + prompt encoder + mask decoder "
        f"{p['sam_neck_prompt_encoder_mask_decoder'] / 1e6:.2f}M, RADIO sam feature head "
        f"{p['radio_sam_feature_head'] / 1e6:.2f}M.",
        "",
        f"`RADSeg(refine='sam')` once through the pipeline ({once['prompts']} prompts from the random model's "
        "coarse output), stage ms: " + ", ".join(f"{k} {v:.0f}" for k, v in once["stages_ms"].items()) + ".",
        "",
        f"Load average during the run: {result.get('load_average', 'not recorded')} "
        f"({result.get('note', '')}). Absolute times on a shared machine are inflated and noisy; the ratio is "
        "measured round by round on the same image.",
        "",
    ]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="c-radio_v3-b")
    ap.add_argument("--size", default="480x640", help="image H x W")
    ap.add_argument("--prompts", default="4,16", help="comma-separated numbers of prompts (regions)")
    ap.add_argument("--crop", type=int, default=336)
    ap.add_argument("--stride", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds after a warm-up (median reported)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default=str(RESULTS / "refine"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    image = smooth_image(h, w)

    radio = radio_from_config(args.model, seed=0, adaptors=["siglip2", "sam"])
    sam = random_sam(SAM_VIT_H, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sam_vit_h_random.pth"
        torch.save(to_official_state_dict(sam), ckpt)
        seg = RADSeg(radio, crop=args.crop, stride=args.stride, refine="sam", sam_checkpoint=str(ckpt),
                     sam_iou_thresh=-math.inf, coarse_thresh=0.1, minimal_area=225)
    refiner: SamRefiner = seg.refiner
    text = torch.nn.functional.normalize(torch.randn(8, seg.embedding_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    coarse_seg = RADSeg(radio, crop=args.crop, stride=args.stride)

    counts = [int(v) for v in args.prompts.split(",")]
    profs = {n: StageProfiler() for n in counts}
    results = {}

    def refine_fn(n):
        probs = grid_probs(h, w, n)

        def run():
            results[n] = refiner.refine(radio, image, probs, scra_tau=seg.scra_tau, coarse_thresh=0.1,
                                        minimal_area=225, iou_thresh=-math.inf, profiler=profs[n])
        return run

    fns = {"coarse": lambda: coarse_seg(image, text)} | {n: refine_fn(n) for n in counts}
    times = interleaved(fns, max(args.repeat, 1), after_warmup=lambda: [p.reset() for p in profs.values()])
    coarse_ms = median(times["coarse"])
    rows = []
    for n in counts:
        ratios = [r / c for r, c in zip(times[n], times["coarse"], strict=True)]
        stages = {k: v["p50_ms"] for k, v in profs[n].summary().items() if k in SAM_STAGES}
        refine_ms = median(times[n])
        rows.append({
            "prompts": results[n].num_regions, "valid_masks": results[n].num_valid_masks, "refine_ms": refine_ms,
            "ratio_to_coarse": median(ratios), "ratio_per_round": ratios, "stages_p50_ms": stages,
        })
        print(f"{n:3d} prompts: refinement {refine_ms:8.0f} ms = {median(ratios):.2f} x coarse ({coarse_ms:.0f} ms) "
              f"({', '.join(f'{k} {v:.0f}' for k, v in stages.items())})")

    # the wired pipeline once, for the stage table (prompts come from the random model's coarse output)
    prof = StageProfiler()
    seg.profiler = prof
    full = seg(image, text)
    pipeline_stages = {k: v["p50_ms"] for k, v in prof.summary().items()}

    sam_h, sam_w = (1024, int(w * 64 / h) * 16) if h >= w else (int(h * 64 / w) * 16, 1024)
    result = {
        "what": "RADSeg+ SAM refinement cost per image vs the coarse RADSeg pipeline, same process, CPU",
        "model": args.model, "sam": "SAM ViT-H neck + prompt encoder + mask decoder (random weights)",
        "image_hw": [h, w], "sam_input_hw": [sam_h, sam_w], "crop": args.crop, "stride": args.stride,
        "threads": args.threads, "repeat": args.repeat, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "coarse_ms": coarse_ms, "refine": rows,
        "sam_path_parameters": {
            "sam_neck_prompt_encoder_mask_decoder": refiner.num_parameters,
            "radio_sam_feature_head": sum(p.numel() for p in radio.heads["sam"].feature_head.parameters()),
        },
        "pipeline_once": {"prompts": full.extras["refine"].num_regions, "refined": full.refined,
                          "stages_ms": pipeline_stages},
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "note": "random weights: timings only; the machine may be shared, compare ratios measured in one run",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(f"wrote {out.with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
