"""End to end: a tiny bench run (tiny checkpoint, 64x96 image, 1 run) and the shape of what it writes."""

from __future__ import annotations

import json

import pytest
import torch

from radseg_edge.bench import report
from radseg_edge.bench.runner import PeakMemory, label_agreement, parameters_per_part
from radseg_edge.bench.suite import BenchOptions, case_from_imgsz, prototype_embeddings, run_suite
from radseg_edge.cli import main
from radseg_edge.models import load_radio

TINY = "tests/fixtures/tiny_radio.pth.tar"


@pytest.fixture(scope="module")
def doc():
    case = case_from_imgsz((64, 96), crop=64, stride=32, num_classes=5)
    options = BenchOptions(cases=[case], checkpoint=TINY, runs=1, warmup=0, matmul=False, scga_sweep=[16, 48])
    return run_suite(options, log=lambda s: None)


def test_parameters_per_part_of_the_tiny_checkpoint():
    radio = load_radio(TINY, adaptors=["siglip2", "sam"])
    parts = parameters_per_part(radio)
    # patch embed 768*192 + pos-embed 32*32*192 + prefix 8*192 + 4 blocks * 445_248
    assert parts["backbone"] == 147_456 + 196_608 + 1_536 + 4 * 445_248 == 2_126_592
    # fc1 192*96+96, inner LN 2*96 + 96*96+96, final LN 2*96 + 96*64+64
    assert parts["language_head"] == 18_528 + 9_504 + 6_400 == 34_432
    assert "sam_path" not in parts and parts["text_tower"] is None
    assert parts["total"] == 2_126_592 + 34_432
    sam_like = torch.nn.Linear(10, 10)  # stands in for SAM's neck/decoder: 110 parameters
    with_sam = parameters_per_part(radio, sam=sam_like)
    assert with_sam["sam_path"] == radio.parameter_counts()["head:sam:feature"] + 110


def test_suite_document_has_machine_model_flops_and_one_row_per_candidate(doc):
    assert doc["schema"] == "radseg-edge-bench/1"
    assert {"cpu", "cpu_count", "date", "versions"} <= set(doc["machine"])
    assert doc["model"]["parameters"]["backbone"] == 2_126_592
    (case,) = doc["cases"]
    assert case["workload"]["windows"] == 2 and case["workload"]["scga_tokens"] == 24
    assert case["flops"]["total"] == case["flops"]["backbone"] + case["flops"]["scga"] + case["flops"]["head"]
    names = [r["name"] for r in case["rows"]]
    assert names == ["baseline fp32", "pytorch fp32"]
    for row in case["rows"]:
        assert row["runs"] == 1
        assert {"p50_ms", "p90_ms"} <= set(row["latency_ms"])
        assert {"backbone", "scga", "head"} <= set(row["stages_ms"])
        assert row["memory"]["kind"] in ("rss", "rss-lifetime", "cuda")
        assert row["speedup_vs_baseline"] > 0
    # the exact fp32 path gives the baseline's labels
    assert all(r["label_agreement"] == 1.0 for r in case["rows"])
    assert [r["n"] for r in doc["scga_memory"]] == [16, 48]


def test_json_round_trips_and_markdown_has_a_table_per_case(doc, tmp_path):
    path = report.write_json(doc, tmp_path / "bench.json")
    assert json.loads(path.read_text())["cases"][0]["label"] == "64x96"
    md = report.to_markdown(doc)
    assert "| candidate | p50 ms |" in md
    assert "| baseline fp32 |" in md and "| pytorch fp32 |" in md
    assert "SCGA working memory vs N" in md
    assert doc["machine"]["cpu"] in md


def test_plots_are_written_or_skipped_with_one_line(doc, tmp_path, capsys):
    files = report.write_plots(doc, tmp_path)
    if files:
        assert all(f.exists() and f.stat().st_size > 0 for f in files)
    else:
        assert "matplotlib" in capsys.readouterr().out


def test_peak_memory_sees_a_64_mib_allocation():
    with PeakMemory("cpu") as mem:
        x = torch.ones(16 * 2**20)  # 64 MiB, pages touched
        del x
    if mem.kind == "rss":
        assert mem.extra_bytes >= 60 * 2**20


def test_label_agreement_and_prototypes():
    a = torch.tensor([[0, 1, 2, 3]])
    assert label_agreement(a, torch.tensor([[0, 1, 0, 3]])) == 0.75
    feats = torch.zeros(1, 3, 2, 2)
    feats[0, :, 0, 0] = torch.tensor([1.0, 0, 0])
    feats[0, :, 0, 1] = torch.tensor([0.9, 0.1, 0])
    feats[0, :, 1, 0] = torch.tensor([0, 1.0, 0])
    feats[0, :, 1, 1] = torch.tensor([0, 0, 1.0])
    protos = prototype_embeddings(feats, 3)
    assert protos.shape == (3, 3)
    # three mutually far-apart patches: the two near-duplicates are never both chosen
    sims = protos @ protos.T
    assert (sims - torch.eye(3)).max() < 0.2


def test_cli_bench_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    rc = main([
        "bench", "--checkpoint", TINY, "--imgsz", "64x96", "--crop", "64", "--stride", "32", "--classes", "4",
        "--runs", "1", "--warmup", "0", "--no-matmul", "--quiet", "--json", str(out_json), "--markdown", str(out_md),
    ])
    assert rc == 0
    text = capsys.readouterr().out
    assert "baseline fp32" in text and "speed-up" in text
    assert json.loads(out_json.read_text())["cases"][0]["num_classes"] == 4
    assert out_md.read_text().startswith("## radseg-edge benchmark")


def test_cli_rejects_an_unknown_setting(capsys):
    assert main(["bench", "--setting", "voc20-ultra"]) == 1
    assert "unknown benchmark setting" in capsys.readouterr().err
