"""Peak resident memory of one piece of work, measured in a fresh process (Linux /proc).

torch's CPU allocations are invisible to tracemalloc, so the benchmarks run each case in its own
subprocess and read the kernel's high-water mark (VmHWM): it is reset after setup by writing "5"
to /proc/self/clear_refs, so ``peak - before`` is the extra memory of the measured work alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset VmHWM to the current RSS; returns the current RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def peak_kb() -> int:
    """VmHWM (peak RSS since the last reset) in KiB."""
    return _status_kb("VmHWM")


def run_case(module: str, args: list[str], cwd: Path, timeout: float = 3600) -> dict:
    """Run ``python -m module *args`` in a fresh process; it must print one JSON line last."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
