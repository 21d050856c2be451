"""
Compile benchmark: `hashiflex compile` (api.compile: quantise, po2 IR, the streaming
lowering of hashiflex/flow.py, hw IR, SystemVerilog, report) of MobileNetV2 32x32 at widths
0.25 and 1.0, each in a fresh process (its own peak RSS). Prints and writes
benchmarks/results/compile.json: wall time per phase, total, peak RSS, hw ops, adders,
register bits. Targets (tracker): width 0.25 under 5 min and 6 GB; width 1.0 measured.

    python benchmarks/bench_compile.py [--models mobilenetv2_w025,mobilenetv2_w1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _harness import measure_in_subprocess, write_results

HERE = Path(__file__).resolve().parent

CODE = """
import shutil, tempfile
from hashiflex import api, compiler
import hashiflex.flow as flow

_times = {{}}
_orig_import, _orig_flow = compiler.import_model, flow.lower_and_emit

def _import(*args, **kwargs):
    t = time.perf_counter()
    result = _orig_import(*args, **kwargs)
    _times['import'] = time.perf_counter() - t
    return result

def _flow(*args, **kwargs):
    result = _orig_flow(*args, **kwargs)
    _times['flow'] = result
    return result

compiler.import_model, flow.lower_and_emit = _import, _flow
out = tempfile.mkdtemp(prefix='bench_compile_')
try:
    t = time.perf_counter()
    design = api.compile({spec!r}, out + '/design')
    total = time.perf_counter() - t
    report = design.report
    hw_mb = (design.path / 'model.hw.mlir').stat().st_size / 2**20
finally:
    shutil.rmtree(out, ignore_errors=True)
res = _times['flow']
phases = {{'import (quantise + po2 IR)': _times['import'], **res.phases}}
phases['other (po2 IR text, params, report)'] = total - sum(phases.values())
FIGURES = dict(model={name!r}, compile_seconds=total, phases=phases, hw_ops=res.hw_ops,
               modules=res.modules, hw_mlir_mb=hw_mb, adders=report['adders'],
               register_bits=report['register_bits'],
               nonzero_weights=report['nonzero_weights'])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenetv2_w025,mobilenetv2_w1")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        spec = f"{HERE / 'models.py'}:{name}"
        figures = measure_in_subprocess(CODE.format(spec=spec, name=name), timeout=args.timeout)
        rows.append(figures)
        print(
            f"{name}: {figures['compile_seconds']:7.1f} s  peak {figures['peak_rss_mb']:7.0f} MB  "
            f"{figures['hw_ops']:,} hw ops  {figures['adders']:,} adders  "
            f"{figures['register_bits']:,} register bits  ({figures['hw_mlir_mb']:.0f} MB hw IR)"
        )
        for phase, seconds in figures["phases"].items():
            print(f"    {phase:38s} {seconds:7.1f} s")
    # Keep the runs of the models not measured this time (one model per invocation is
    # common: width 1.0 takes long).
    previous = HERE / "results" / "compile.json"
    if previous.exists():
        measured = {r["model"] for r in rows}
        old = json.loads(previous.read_text()).get("runs", [])
        rows = [r for r in old if r.get("model") not in measured] + rows
    write_results("compile", {"runs": rows})


if __name__ == "__main__":
    main()
