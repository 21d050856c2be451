"""
Shared plumbing of the benchmark scripts: run one measurement in a fresh subprocess (so its
peak memory is its own), collect wall time and peak RSS, print a table and write JSON.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure_in_subprocess(code: str, timeout: float = 1800) -> dict:
    """Run `code` (Python) in a child; it may print one JSON line of extra figures last."""
    wrapper = (
        "import json, resource, time\n"
        "_t0 = time.perf_counter()\n"
        f"{code}\n"
        "_extra = globals().get('FIGURES', {})\n"
        "_extra['seconds'] = time.perf_counter() - _t0\n"
        "_extra['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print('@@' + json.dumps(_extra))\n"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-4000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("@@")][-1]
    figures = json.loads(line[2:])
    figures["wall_seconds_with_startup"] = wall
    return figures


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path
