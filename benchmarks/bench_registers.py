"""
Register benchmark (issues 9 and 10): register bits, adders, latency and the deepest adder
path of `hashiflex compile` builds under several register rules, each a fresh CLI run.
Writes benchmarks/results/registers.json.

Configurations (name: compile options):
    levels2_nocse  --levels-per-stage 2 --no-cse   the naive placement (no po2-cse)
    levels2        --levels-per-stage 2            a register every 2 adder levels
    mhz1000        --clock-mhz 1000                the delay model's placement (default)
    mhz1000_nocse  --clock-mhz 1000 --no-cse
    mhz400         --clock-mhz 400
`--baseline-bin PATH` also runs another checkout's `hashiflex` (e.g. main's, before this
branch) with the same options, as `<config>@baseline`: the before/after in one run.

    python benchmarks/bench_registers.py [--models tiny_cnn,mobilenetv2_w025]
        [--configs levels2,mhz1000] [--baseline-bin /work/main/.venv/bin/hashiflex]
    python benchmarks/bench_registers.py --models mobilenetv2_w1 --configs mhz1000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = {
    "tiny_cnn": "tiny_cnn",
    "mobilenetv2_w025": f"{HERE / 'models.py'}:mobilenetv2_w025",
    "mobilenetv2_w1": f"{HERE / 'models.py'}:mobilenetv2_w1",  # ~10 min, 3.4 GB a compile
}
CONFIGS = {
    "levels2_nocse": ["--levels-per-stage", "2", "--no-cse"],
    "levels2": ["--levels-per-stage", "2"],
    "mhz1000": ["--clock-mhz", "1000"],
    "mhz1000_nocse": ["--clock-mhz", "1000", "--no-cse"],
    "mhz400": ["--clock-mhz", "400"],
}


def run(binary: str, spec: str, options: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_registers_") as tmp:
        out = Path(tmp) / "design"
        t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([binary, "compile", spec, "--out", str(out), *options], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the compile and its workers
        cpu_seconds = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        report = json.loads((out / "report.json").read_text())
    return {
        "register_bits": report["register_bits"],
        "adders": report["adders"],
        "latency_cycles": report["latency_cycles"],
        "cycles_per_image": report["cycles_per_image"],
        "max_comb_adder_levels": report["max_comb_adder_levels"],
        "compile_seconds": round(seconds, 1),
        "compile_cpu_seconds": round(cpu_seconds, 1),  # fair on a loaded machine
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--models", default="tiny_cnn,mobilenetv2_w025")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--baseline-bin", default=None)
    parser.add_argument("--baseline-only", action="store_true",
                        help="run only --baseline-bin (add its rows to the results)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "registers.json")
    args = parser.parse_args()
    binary = str(Path(sys.executable).parent / "hashiflex")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for model in args.models.split(","):
        rows = results.setdefault(model, {})
        for config in args.configs.split(","):
            runs = [] if args.baseline_only else [(config, binary)]
            if args.baseline_bin:
                runs.append((f"{config}@baseline", args.baseline_bin))
            for name, exe in runs:
                rows[name] = run(exe, SPECS[model], CONFIGS[config])
                print(model, name, json.dumps(rows[name]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
