"""`radseg-edge info`: architecture, parameters per part, preferred resolution and licence of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from radseg_edge.models.configs import CONFIGS


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a RADIO model: architecture, parameter counts, licence",
                       description="Describe a checkpoint file/folder, or a model name (shown with random weights "
                                   "of its exact architecture, nothing downloaded).")
    p.add_argument("model", metavar="MODEL_OR_PATH", help=f"a checkpoint path or one of: {', '.join(CONFIGS)}")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--sam-checkpoint", metavar="PATH", help="also count the RADSeg+ SAM path (neck, prompt encoder, decoder)")
    p.add_argument("--sam-num-heads", type=int, default=8, help="attention heads of the SAM decoder (default 8)")
    p.set_defaults(func=run)


def describe(radio) -> dict:
    c = radio.config
    counts = radio.parameter_counts()
    lang = radio.language_adaptor
    return {
        "name": c.name,
        "architecture": {"width": c.embed_dim, "depth": c.depth, "heads": c.num_heads, "mlp": c.mlp_hidden,
                         "patch": c.patch_size, "cls_tokens": c.num_cls_tokens, "registers": c.num_registers,
                         "layer_scale": c.layer_scale, "cpe_grid": c.cpe_grid, "cpe_align_corners": c.align_corners},
        "teachers": [t.name for t in c.teachers],
        "loaded_heads": list(radio.heads),
        "language_head": lang,
        "text_model": radio.text_model_id,
        "parameters": counts,
        "parameters_radseg": counts["backbone"] + (counts.get(f"head:{lang}:summary", 0) if lang else 0),
        "preferred_resolution": c.preferred_resolution,
        "license": c.license or "see the checkpoint's model card",
    }


def run(args: argparse.Namespace) -> int:
    from radseg_edge.models import load_radio, radio_from_config

    if not Path(args.model).exists() and args.model.lower() in CONFIGS:
        radio, source = radio_from_config(args.model), "architecture (random weights, nothing downloaded)"
    else:
        radio, source = load_radio(args.model), "checkpoint"
    info = describe(radio)
    info["source"] = source
    if args.sam_checkpoint:
        from radseg_edge.models.sam_refiner import SamRefiner

        sam = SamRefiner.from_checkpoint(args.sam_checkpoint, num_heads=args.sam_num_heads, radio=radio).parameter_counts()
        info["parameters"].update(sam)
        info["parameters_radseg_plus"] = info["parameters_radseg"] + sum(sam.values()) + info["parameters"].get("head:sam:feature", 0)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    a = info["architecture"]
    console = Console()
    console.print(f"[bold]{info['name']}[/bold] ({source})")
    console.print(f"ViT width {a['width']}, depth {a['depth']}, {a['heads']} heads, MLP {a['mlp']}, patch {a['patch']}, "
                  f"prefix {a['cls_tokens']} cls + {a['registers']} registers, LayerScale {a['layer_scale']}, "
                  f"CPE grid {a['cpe_grid']}x{a['cpe_grid']} (align_corners={a['cpe_align_corners']})")
    console.print(f"teachers: {', '.join(info['teachers'])}; language head: {info['language_head']} -> text model {info['text_model']}")
    table = Table("part", "parameters")
    for k, v in info["parameters"].items():
        table.add_row(k, f"{v / 1e6:.2f}M")
    table.add_row("[bold]RADSeg (backbone + language head)[/bold]", f"{info['parameters_radseg'] / 1e6:.2f}M")
    if "parameters_radseg_plus" in info:
        table.add_row("[bold]RADSeg+ (+ sam feature head + SAM path)[/bold]", f"{info['parameters_radseg_plus'] / 1e6:.2f}M")
    console.print(table)
    console.print(f"preferred resolution: {info['preferred_resolution']}; weights licence: {info['license']}")
    return 0
