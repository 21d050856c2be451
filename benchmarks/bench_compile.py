"""
Compile benchmark: `hashiflex compile` (api.compile: quantise, po2 IR, the streaming
lowering of hashiflex/flow.py, hw IR, SystemVerilog, report) of MobileNetV2 32x32 at widths
0.25 and 1.0, each in a fresh process (its own peak RSS). Prints and writes
benchmarks/results/compile.json: wall time per phase, total, peak RSS, hw ops, adders,
register bits. Targets (tracker): width 0.25 under 5 min and 6 GB; width 1.0 measured.

    python benchmarks/bench_compile.py [--models mobilenetv2_w025,mobilenetv2_w1]

Section "cli" (`--cli`, issue 12): the `hashiflex compile` command itself, as a user runs it,
once per configuration: "before" (`--jobs 1 --emit-hw-ir`: one process, the hw IR printed,
as compile did before issue 12) and "after" (the defaults: `--jobs` = the cores, no hw IR),
each: wall time to exit (so the teardown counts), the peak RSS of the process tree (the
parent and its workers sampled together every 0.2 s from /proc), the design directory's size
without the hw IR and the hw IR's, the phase lines it printed, and the load average. Written
to benchmarks/results/compile.json under "cli_runs".

    python benchmarks/bench_compile.py --cli [--models mobilenetv2_w025] [--configs before,after]

Section "cpu" (`--cpu`, issue 12): CPU seconds per phase of the flow (this machine is shared,
so wall time says more about the neighbours than about the code), old code against new in
the same run: `--baseline-python` is the interpreter of an untouched build of the old code
(e.g. /work/main/.venv/bin/python); each model is compiled `--repeat` times with each
interpreter, alternately, in one process (`--jobs 1`, no hw IR), with the flow's clock
(hashiflex/flow.py's `time.perf_counter`) replaced by `time.process_time`; medians per
phase and the old/new ratios are printed and written to compile.json under "cpu_runs",
with whether every run wrote the same rtl/ files (sha256), old and new.

    python benchmarks/bench_compile.py --cpu --baseline-python /work/main/.venv/bin/python \
        [--models mobilenetv2_w025] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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
    hw = design.path / 'model.hw.mlir'
    hw_mb = hw.stat().st_size / 2**20 if hw.exists() else 0.0
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


CONFIGS = {
    "before": ["--jobs", "1", "--emit-hw-ir"],  # one process, the hw IR printed
    "after": [],  # the defaults: --jobs = the cores, no hw IR
}


def _tree_rss_mb(root: int) -> float:
    """The summed resident memory of `root` and its descendants, now (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree and pid not in tree}
        tree |= new
        grew = bool(new)
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


def _dir_mb(path: Path, skip: str | None = None) -> float:
    return sum(f.stat().st_size for f in path.rglob("*")
               if f.is_file() and f.name != skip) / 2**20


def run_cli(spec: str, config: str, timeout: float) -> dict:
    """One `hashiflex compile` as a user runs it: wall to exit, peak tree RSS, sizes."""
    out = Path(tempfile.mkdtemp(prefix="bench_compile_cli_")) / "design"
    cli = Path(sys.executable).parent / "hashiflex"
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen([str(cli), "compile", spec, "--out", str(out), *CONFIGS[config]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"hashiflex compile failed:\n{stderr[-4000:]}")
        hw = out / "model.hw.mlir"
        return {
            "config": config,
            "flags": CONFIGS[config],
            "wall_seconds": round(wall, 1),
            "peak_tree_rss_mb": round(peak[0]),
            "design_mb_without_hw_ir": round(_dir_mb(out, skip="model.hw.mlir"), 1),
            "hw_ir_mb": round(hw.stat().st_size / 2**20, 1) if hw.exists() else None,
            "phase_lines": [line for line in stderr.splitlines() if "phases" in line],
            "loadavg_at_start": [round(x, 1) for x in load],
            "loadavg_at_end": [round(x, 1) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def main_cli(args: argparse.Namespace) -> None:
    rows = []
    for name in args.models.split(","):
        spec = f"{HERE / 'models.py'}:{name}"
        for config in args.configs.split(","):
            row = {"model": name, **run_cli(spec, config, args.timeout)}
            rows.append(row)
            _save_cli_rows([row])  # each run kept at once (a w1.0 run is long)
            print(f"{name} {config:6s} {' '.join(row['flags']):24s} {row['wall_seconds']:7.1f} s  "
                  f"peak {row['peak_tree_rss_mb']:6d} MB  design {row['design_mb_without_hw_ir']:.0f} MB"
                  f" + hw IR {row['hw_ir_mb'] or 0:.0f} MB  (load {row['loadavg_at_start'][0]})",
                  flush=True)
        before = [r for r in rows if r["model"] == name and r["config"] == "before"]
        after = [r for r in rows if r["model"] == name and r["config"] == "after"]
        if before and after:
            print(f"{name}: after/before wall {after[-1]['wall_seconds'] / before[-1]['wall_seconds']:.2f}")


def _save_cli_rows(rows: list[dict]) -> None:
    """Merge `rows` into compile.json's "cli_runs" (replacing the same model and config)."""
    path = HERE / "results" / "compile.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    measured = {(r["model"], r["config"]) for r in rows}
    old = [r for r in payload.get("cli_runs", []) if (r["model"], r["config"]) not in measured]
    payload = {k: v for k, v in payload.items() if k not in ("benchmark", "python", "machine", "date")}
    write_results("compile", {**payload, "cli_runs": old + rows})


CPU_CODE = """
import hashlib, resource, shutil, statistics, tempfile, types
from pathlib import Path
import time as _time
from hashiflex import api
import hashiflex.flow as flow

flow.time = types.SimpleNamespace(perf_counter=_time.process_time)  # CPU seconds per phase
_result = {{}}
_orig_flow = flow.lower_and_emit


def _flow(*args, **kwargs):
    _result['flow'] = _orig_flow(*args, **kwargs)
    return _result['flow']


flow.lower_and_emit = _flow
out = tempfile.mkdtemp(prefix='bench_compile_cpu_')
try:
    cpu = _time.process_time()
    api.compile({spec!r}, out + '/design', jobs=1)
    cpu = _time.process_time() - cpu
    sv = {{p.name: hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(Path(out, 'design', 'rtl').iterdir())}}
finally:
    shutil.rmtree(out, ignore_errors=True)
FIGURES = dict(cpu_seconds=cpu, phases=dict(_result['flow'].phases), sv_sha256=sv)
"""


def _in_python(python: str, code: str, timeout: float) -> dict:
    """measure_in_subprocess with another interpreter (the old code's venv)."""
    import _harness

    saved = _harness.sys.executable
    _harness.sys.executable = python
    try:
        return measure_in_subprocess(code, timeout=timeout)
    finally:
        _harness.sys.executable = saved


def main_cpu(args: argparse.Namespace) -> None:
    import statistics

    pythons = {"old": args.baseline_python, "new": sys.executable}
    rows = []
    for name in args.models.split(","):
        code = CPU_CODE.format(spec=f"{HERE / 'models.py'}:{name}")
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for repeat in range(args.repeat):
            for which, python in pythons.items():
                figures = _in_python(python, code, args.timeout)
                runs[which].append(figures)
                print(f"{name} {which} run {repeat + 1}: {figures['cpu_seconds']:.1f} CPU s",
                      flush=True)
        medians = {}
        for which, figures in runs.items():
            phases = sorted({p for f in figures for p in f["phases"]})
            medians[which] = {p: statistics.median(f["phases"].get(p, 0.0) for f in figures)
                              for p in phases}
            medians[which]["total (process CPU)"] = statistics.median(
                f["cpu_seconds"] for f in figures)
        hashes = [f["sv_sha256"] for fs in runs.values() for f in fs]
        identical = all(h == hashes[0] for h in hashes)
        print(f"{name}: rtl/ of every run byte-identical (sha256 of {len(hashes[0])} files): "
              f"{identical}")
        print(f"{name}: CPU seconds, medians of {args.repeat} (old: {pythons['old']})")
        for phase in medians["new"]:
            old, new = medians["old"].get(phase, 0.0), medians["new"][phase]
            ratio = f"{old / new:5.2f}x" if new > 0.05 else "     "
            print(f"    {phase:24s} old {old:7.1f}  new {new:7.1f}  {ratio}")
        rows.append({"model": name, "repeat": args.repeat, "old_python": pythons["old"],
                     "sv_identical": identical, "medians": medians,
                     "sv_sha256": hashes[0] if identical else None,
                     "runs": {w: [{k: v for k, v in f.items() if k != "sv_sha256"} for f in fs]
                              for w, fs in runs.items()}})
    path = HERE / "results" / "compile.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    measured = {r["model"] for r in rows}
    kept = [r for r in payload.get("cpu_runs", []) if r["model"] not in measured]
    payload = {k: v for k, v in payload.items() if k not in ("benchmark", "python", "machine", "date")}
    write_results("compile", {**payload, "cpu_runs": kept + rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenetv2_w025,mobilenetv2_w1")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--cli", action="store_true", help="the section 'cli' (see above)")
    parser.add_argument("--configs", default="before,after")
    parser.add_argument("--cpu", action="store_true", help="the section 'cpu' (see above)")
    parser.add_argument("--baseline-python", help="--cpu: the old code's interpreter")
    parser.add_argument("--repeat", type=int, default=3, help="--cpu: runs per interpreter")
    args = parser.parse_args()
    if args.cli:
        main_cli(args)
        return
    if args.cpu:
        if not args.baseline_python:
            parser.error("--cpu needs --baseline-python (the old code's interpreter)")
        main_cpu(args)
        return
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
    kept = {}
    if previous.exists():
        measured = {r["model"] for r in rows}
        kept = json.loads(previous.read_text())
        rows = [r for r in kept.get("runs", []) if r.get("model") not in measured] + rows
    write_results("compile", {"cli_runs": kept.get("cli_runs", []),
                              "cpu_runs": kept.get("cpu_runs", []), "runs": rows})


if __name__ == "__main__":
    main()
