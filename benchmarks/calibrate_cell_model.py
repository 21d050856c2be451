"""
Calibration runs for backends/cell_model.py: synthesise small registered adder trees (2**L
inputs of W bits, L levels of two-input adders, enable-gated input and output registers: the
shape of one pipeline stage of a layer) with the same Yosys + ABC flow as `hashiflex synth`
(hashiflex/synth.py) and print, per (levels, width), ABC's longest path and the area split
into flip-flops, enable multiplexers and adder logic. The numbers in cell_model.py are copied
from this script's output (benchmarks/results/cell_model_calibration.json).

    python benchmarks/calibrate_cell_model.py [--jobs N] [--target-ps 1]

--target-ps 1 (default) asks ABC for its fastest mapping: the delay a pipeliner can count
on. Area is then measured a second time at a relaxed 1 GHz target (the mapping a real
module at 1 GHz gets, see hashiflex synth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from hashiflex.jobs import Job, run_jobs
from hashiflex.liberty import read_library
from hashiflex.synth import default_liberty, find_yosys, measured_row, synthesise_module

LEVELS = (1, 2, 3, 4)
WIDTHS = (8, 12, 16, 20, 24, 32)


def adder_tree_sv(levels: int, width: int) -> str:
    n = 2**levels
    lines = [f"module tree_l{levels}_w{width} (input wire clk, input wire en,",
             f"  input wire [{n * width - 1}:0] in_data, output logic [{width - 1}:0] out_data);"]
    lines.append(f"  logic [{width - 1}:0] r [0:{n - 1}];")
    lines.append("  always_ff @(posedge clk) if (en) begin")
    lines += [f"    r[{i}] <= in_data[{(i + 1) * width - 1}:{i * width}];" for i in range(n)]
    lines.append("  end")
    # The sum tree: level k adds pairs of level k-1 (wrap-around at W bits, like the
    # compiler's fixed-width accumulators).
    names = [f"r[{i}]" for i in range(n)]
    for level in range(levels):
        nxt = []
        for j in range(0, len(names), 2):
            wire = f"s{level}_{j // 2}"
            lines.append(f"  wire [{width - 1}:0] {wire} = {names[j]} + {names[j + 1]};")
            nxt.append(wire)
        names = nxt
    lines.append(f"  always_ff @(posedge clk) if (en) out_data <= {names[0]};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--target-ps", type=float, default=1.0)
    parser.add_argument("--relaxed-ps", type=float, default=1000.0)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "cell_model_calibration.json")
    args = parser.parse_args(argv)
    liberty = default_liberty()
    library = read_library(str(liberty))
    yosys = find_yosys()
    jobs = []
    for levels in LEVELS:
        for width in WIDTHS:
            name = f"tree_l{levels}_w{width}"
            sv = adder_tree_sv(levels, width)
            for tag, target in (("fast", args.target_ps), ("relaxed", args.relaxed_ps)):
                jobs.append(Job(f"{name}:{tag}", synthesise_module,
                                (name, sv, {}, str(liberty), target, yosys.command)))
    start = time.perf_counter()
    outcome = run_jobs(jobs, workers=args.jobs, label="calibrate")
    for failure in outcome.failures.values():
        print(f"FAILED {failure.name}: {failure.message}", file=sys.stderr)
    rows = []
    mux_area = 1.862  # MUX2_X1 (Nangate45): the enable multiplexer in front of each flip-flop
    for levels in LEVELS:
        for width in WIDTHS:
            name = f"tree_l{levels}_w{width}"
            fast, relaxed = outcome.results.get(f"{name}:fast"), outcome.results.get(f"{name}:relaxed")
            if fast is None or relaxed is None:
                continue
            mf, mr = measured_row(fast.value, library), measured_row(relaxed.value, library)
            adder_bits = (2**levels - 1) * width
            reg_bits = (2**levels + 1) * width
            comb_area = relaxed.value["area_um2"] - mr["ff_area_um2"]
            row = {
                "levels": levels, "width": width,
                "comb_delay_ns_fast": round(fast.value["abc_delay_ps"] / 1000, 4),
                "critical_path_ns_fast": mf["critical_path_ns"],
                "comb_delay_ns_relaxed": round(relaxed.value["abc_delay_ps"] / 1000, 4),
                "area_um2_relaxed": mr["area_um2"], "area_um2_fast": mf["area_um2"],
                "ff_area_um2": mr["ff_area_um2"], "flip_flops": mr["flip_flops"],
                "adder_bits": adder_bits, "register_bits": reg_bits,
                "adder_area_per_bit_relaxed": round((comb_area - reg_bits * mux_area) / adder_bits, 3),
                "adder_area_per_bit_fast": round((relaxed.value["area_um2"] * 0 + fast.value["area_um2"]
                                                  - mf["ff_area_um2"] - reg_bits * mux_area) / adder_bits, 3),
                "seconds": round(fast.seconds + relaxed.seconds, 1),
            }
            rows.append(row)
            print(f"L={levels} W={width:>2}: comb {row['comb_delay_ns_fast']:.3f} ns fastest, "
                  f"{row['comb_delay_ns_relaxed']:.3f} ns at {args.relaxed_ps:.0f} ps; "
                  f"adder area/bit {row['adder_area_per_bit_relaxed']:.2f} (relaxed) "
                  f"{row['adder_area_per_bit_fast']:.2f} (fast) um^2; FFs {mr['flip_flops']}/{reg_bits}")
    summary = {
        "median_adder_area_per_bit_relaxed": statistics.median(r["adder_area_per_bit_relaxed"] for r in rows),
        "median_adder_area_per_bit_fast": statistics.median(r["adder_area_per_bit_fast"] for r in rows),
        "flip_flop": {n: vars(f) for n, f in library.flip_flops.items() if n in ("DFF_X1",)},
    }
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "cell_model_calibration", "library": library.name, "corner": library.corner,
        "tool": yosys.version, "target_ps_fast": args.target_ps, "target_ps_relaxed": args.relaxed_ps,
        "rows": rows, "summary": summary, "seconds": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
