"""benchmarks/gpu_acceptance.py: its --dry-run runs every step's plumbing on the CPU (tiny sizes) and writes
the JSON + Markdown with every step and a status; the item-5 target lines and the AGX Orin estimate are
computed from measured rows (checked here on hand-made rows, never on timings of this machine)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"
STATUSES = {"ok", "failed", "skipped", "timeout", "error"}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acceptance():
    return _module()


def test_dry_run_writes_json_and_markdown_with_every_step(tmp_path, acceptance):
    out = tmp_path / "dry"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "gpu_acceptance.json").read_text())
    md = (out / "gpu_acceptance.md").read_text()
    assert doc["dry_run"] is True and "DRY RUN" in md
    names = [s["name"] for s in doc["steps"]]
    assert names == [s.name for s in acceptance.all_steps()]
    for step in doc["steps"]:
        assert step["status"] in STATUSES, step
        assert f"| {step['name']} | {step['status']} |" in md
    by_name = {s["name"]: s for s in doc["steps"]}
    # the CPU-runnable steps really ran and produced rows
    for name in ("kernel_parity", "fixtures", "scga_bench", "pipeline_eager", "pipeline_compile", "pipeline_aoti"):
        assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["rows"], name
    assert by_name["mapping_fusion"]["status"] == "skipped"  # dry run: imported, not run (C-RADIOv3-B on a CPU)
    eager = [r for r in by_name["pipeline_eager"]["rows"] if r.get("status") == "ok"]
    assert {r["name"] for r in eager} >= {"baseline fp32", "eager fp32"}
    assert all(r["speedup_vs_baseline"] > 0 for r in eager)
    # no GPU figures: the targets are not measured and the Orin estimate is not computed
    assert [t["verdict"] for t in doc["targets"]] == ["NOT MEASURED", "NOT MEASURED"]
    assert doc["orin_estimate"]["status"] == "not computed"
    assert "TARGET NOT MEASURED" in done.stdout
    assert "steps:" in done.stdout and "RERUN" not in done.stdout  # every step finished or was skipped by design
    assert (out / "steps" / "kernel_parity.log").exists()  # each step's own output


def _doc(acceptance, fused_ms, fused_peak, fp16_speedup, agreement, gpu="NVIDIA H200"):
    scga = [
        {"n": 14112, "dtype": "fp16", "impl": "materialized", "time_ms": 30.0, "peak_bytes": 2_000_000_000, "status": "ok"},
        {"n": 14112, "dtype": "fp16", "impl": "triton", "time_ms": fused_ms, "peak_bytes": fused_peak, "status": "ok",
         "speedup_vs_materialized": 30.0 / fused_ms, "memory_fraction_of_materialized": fused_peak / 2_000_000_000},
    ]
    pipe = [{"case": "cityscapes-mid", "setting": "cityscapes-mid", "name": "eager fp16", "precision": "fp16",
             "p50_ms": 40.0, "speedup_vs_baseline": fp16_speedup, "label_agreement_vs_eager_fp32": agreement,
             "status": "ok"}]
    return {"dry_run": False, "machine": {"gpu": gpu},
            "steps": [{"name": "scga_bench", "rows": scga}, {"name": "pipeline_eager", "rows": pipe}]}


def test_targets_are_met_or_not_from_the_measured_rows(acceptance):
    met = acceptance.evaluate_targets(_doc(acceptance, 5.0, 50_000_000, 6.0, 0.995))
    assert [t["verdict"] for t in met] == ["MET", "MET"]
    slow = acceptance.evaluate_targets(_doc(acceptance, 15.0, 50_000_000, 4.0, 0.995))
    assert [t["verdict"] for t in slow] == ["NOT MET", "NOT MET"]
    memory = acceptance.evaluate_targets(_doc(acceptance, 5.0, 500_000_000, 6.0, 0.98))
    assert [t["verdict"] for t in memory] == ["NOT MET", "NOT MET"]  # 1/4 of the peak; 98% labels


def test_orin_estimate_scales_by_the_larger_datasheet_ratio(acceptance):
    est = acceptance.orin_estimate(_doc(acceptance, 5.0, 50_000_000, 6.0, 0.995))
    assert est["status"] == "estimate" and est["measured_on"] == "H200" and "ESTIMATE" in est["method"]
    h200, orin = acceptance.DEVICE_SPECS["H200"], acceptance.DEVICE_SPECS[acceptance.ORIN]
    row = next(r for r in est["rows"] if r["what"] == "cityscapes-mid eager fp16")
    bw, tc = h200["bandwidth_gbs"] / orin["bandwidth_gbs"], h200["fp16_tflops"] / orin["fp16_tflops"]
    assert row["estimate_ms"] == pytest.approx(40.0 * max(bw, tc))
    assert row["bandwidth_bound_ms"] == pytest.approx(40.0 * bw) and row["compute_bound_ms"] == pytest.approx(40.0 * tc)
    assert acceptance.device_spec("NVIDIA H200 NVL")[0] == "H200 NVL"
    unknown = acceptance.orin_estimate(_doc(acceptance, 5.0, 50_000_000, 6.0, 0.995, gpu="NVIDIA A100"))
    assert unknown["status"] == "not computed"


def test_report_is_embedded_in_results_md_between_markers(tmp_path, acceptance):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nCPU tables.\n")
    acceptance.embed_in_results("# GPU acceptance (H200)\n\nfirst\n", results)
    acceptance.embed_in_results("# GPU acceptance (H200)\n\nsecond\n", results)
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nCPU tables.")
    assert text.count(acceptance.RESULTS_BEGIN) == 1 and "second" in text and "first" not in text
    assert "## GPU acceptance (H200)" in text  # headings one level down


def test_only_keeps_the_other_steps_of_the_earlier_run(tmp_path, acceptance):
    earlier = {"dry_run": False, "date": "D1", "steps": [{"name": "build", "status": "ok"},
                                                         {"name": "scga_bench", "status": "timeout", "rows": []}]}
    (tmp_path / "gpu_acceptance.json").write_text(json.dumps(earlier))
    doc = {"dry_run": False, "machine": {}, "steps": [{"name": "scga_bench", "status": "ok", "rows": []}]}
    acceptance.merge_earlier(doc, tmp_path / "gpu_acceptance.json")
    assert [(s["name"], s["status"]) for s in doc["steps"]] == [("build", "ok"), ("scga_bench", "ok")]
    assert doc["steps"][0]["from_earlier_run"] == "D1" and "from_earlier_run" not in doc["steps"][1]


def test_rerun_lists_steps_cut_by_time_or_crash_not_those_skipped_by_design(acceptance):
    doc = {"steps": [{"name": "build", "status": "ok"},
                     {"name": "aoti_cpp", "status": "skipped", "reason": "cmake is not installed"},
                     {"name": "gpu_tests", "status": "timeout", "reason": "out of time after 90 s (1 rows kept)"},
                     {"name": "pipeline_compile", "status": "error", "reason": "the step's process exited with -9"},
                     {"name": "pipeline_aoti", "status": "skipped", "reason": "overall budget: 12 s left of 450 s"},
                     {"name": "mapping_fusion", "status": "skipped", "reason": "the run was stopped (SIGTERM) before"}]}
    assert acceptance.rerun_steps(doc) == ["gpu_tests", "pipeline_compile", "pipeline_aoti", "mapping_fusion"]


def test_a_step_out_of_time_is_killed_with_its_whole_process_group(tmp_path, acceptance):
    import time

    marker = tmp_path / "grandchild_survived"
    # the grandchild keeps the output open and would outlive a plain kill of the step's process
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
             f"'import time, pathlib; time.sleep(3); pathlib.Path(r\"{marker}\").touch()']); print('started', flush=True); time.sleep(60)"
    t0 = time.perf_counter()
    code, output, timed_out = acceptance._run_child([sys.executable, "-c", script], {}, 1.5, tmp_path / "step.log")
    assert timed_out and code is None and "started" in output
    assert time.perf_counter() - t0 < 10
    time.sleep(2.5)
    assert not marker.exists()


def test_report_only_rebuilds_the_markdown_from_the_json(tmp_path, acceptance):
    doc = _doc(acceptance, 5.0, 50_000_000, 6.0, 0.995)
    doc.update(command="python3 benchmarks/gpu_acceptance.py --out x", date="D1", wall_s=400.0, budget_s=450.0,
               machine={"gpu": "NVIDIA H200", "torch": "2.11", "cuda": "13.0"})
    doc["steps"] = [{"name": s["name"], "title": s["name"], "status": "ok", **s} for s in doc["steps"]]
    (tmp_path / "gpu_acceptance.json").write_text(json.dumps(doc))
    results = tmp_path / "RESULTS.md"
    assert acceptance.main(["--report-only", "--out", str(tmp_path), "--results-md", str(results)]) == 0
    md = (tmp_path / "gpu_acceptance.md").read_text()
    assert "**MET** - fused SCGA fp16" in md and "AGX Orin: ESTIMATE" in md
    assert acceptance.RESULTS_BEGIN in results.read_text()
