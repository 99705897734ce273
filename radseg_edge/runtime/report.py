"""Writing a stream profile (JSON + CSV) and printing its summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("stage", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms", "share")


def write_profile(profile: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON, the whole profile) and the same name with ``.csv`` (one row per stage,
    then ``end_to_end``). Returns both paths."""
    json_path = Path(path)
    if json_path.suffix.lower() != ".json":
        json_path = json_path.with_suffix(json_path.suffix + ".json") if json_path.suffix else json_path.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(profile, indent=2, default=str) + "\n")
    csv_path = json_path.with_suffix(".csv")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        rows = dict(profile.get("stages", {}))
        if "end_to_end" in profile:
            rows["end_to_end"] = {**profile["end_to_end"], "share": 1.0}
        for name, st in rows.items():
            writer.writerow([name] + [f"{st.get(c, 0.0):.4f}" for c in CSV_COLUMNS[1:]])
    return json_path, csv_path


def format_summary(profile: dict[str, Any]) -> str:
    """A few lines for the terminal: frames, FPS, end-to-end latency, per-stage p50/p90/p99, telemetry."""
    fr = profile["frames"]
    lines = [
        f"frames: {fr['processed']} processed, {fr['dropped']} dropped (stale), {fr['captured']} captured"
        f" ({fr['unprocessed_at_stop']} left at stop) - {profile.get('stop_reason', '')}"
    ]
    if "end_to_end" in profile:
        e2e = profile["end_to_end"]
        fps = profile.get("fps")
        lines.append(
            f"throughput: {fps:.2f} FPS   end-to-end latency p50/p90/p99: "
            f"{e2e['p50_ms']:.1f} / {e2e['p90_ms']:.1f} / {e2e['p99_ms']:.1f} ms"
            if fps else "throughput: -"
        )
        lines.append(f"  {'stage':<14}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}  share")
        for name, st in profile["stages"].items():
            lines.append(
                f"  {name:<14}{st['p50_ms']:>9.2f}{st['p90_ms']:>9.2f}{st['p99_ms']:>9.2f}{st['mean_ms']:>9.2f}"
                f"  {100 * st['share']:5.1f}%"
            )
    tel = profile.get("telemetry")
    if tel:
        if tel.get("available"):
            j = tel["jtop"]
            tot = j.get("power_mw", {}).get("TOT", {})
            parts = [f"power {tot.get('mean', 0) / 1e3:.2f} W mean" if tot else "power: no total rail"]
            if "energy_per_frame_mj" in j:
                parts.append(f"{j['energy_per_frame_mj']:.1f} mJ/frame")
            if j.get("nvpmodel"):
                parts.append(f"nvpmodel {j['nvpmodel']}")
            if j.get("jetson_clocks"):
                parts.append(f"jetson_clocks {j['jetson_clocks']}")
            lines.append("telemetry: " + ", ".join(parts))
        else:
            lines.append(f"telemetry: {tel.get('reason')}")
    vocab = profile.get("vocabulary")
    if vocab and vocab.get("changes"):
        ok = vocab.get("accepted", sum(1 for c in vocab["changes"] if c["ok"]))
        bad = vocab.get("rejected", len(vocab["changes"]) - ok)
        classes = vocab["classes"]
        shown = f"{classes[:20]} and {len(classes) - 20} more" if len(classes) > 20 else f"{classes}"
        lines.append(f"vocabulary: {ok} change(s) applied, {bad} rejected; now {shown}")
    return "\n".join(lines)
