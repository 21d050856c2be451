"""
The Python hw simulator (interpreters/hw.py, `po2-run`) against Verilator on whole designs.

For each shipped example compiled by `hashiflex compile`: the simulator's build time
(flatten, schedule, compile to Python) and run time on a stream of random images, against
Verilator's build (SystemVerilog to a binary, runtime objects cached) and run time on the
same stream through backends/verilator.py's harness; the outputs of both are compared
record for record (cycle and every output). Medians of `--repeats` runs. Prints a table and
writes benchmarks/results/hw_sim.json.

    python benchmarks/bench_hw_sim.py [--images 20] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import write_results  # noqa: E402


def timed(function, repeats: int):
    """(median seconds, last result) of `repeats` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def measure(spec: str, work: Path, images: int, repeats: int) -> dict:
    import numpy as np
    from xdsl.dialects import hw
    from xdsl.parser import Parser

    from hashiflex import api
    from hashiflex.backends import verilator
    from hashiflex.interpreters.hw import HwSimulator, run_stream
    from hashiflex.tools.registry import make_context

    design = api.compile(spec, work / spec)
    manifest = design.manifest
    fmt = manifest["input_format"]
    lo, hi = (-(1 << (fmt["bits"] - 1)), (1 << (fmt["bits"] - 1)) - 1) if fmt["signed"] else (
        0, (1 << fmt["bits"]) - 1)
    x = np.random.default_rng(0).integers(lo, hi + 1, size=(images, *manifest["input_shape"]))
    pixels = api.pack_pixels(x, fmt["bits"])
    top = manifest["top"]
    text = (design.path / manifest["files"]["hw"]).read_text()

    start = time.perf_counter()
    module = Parser(make_context(), text).parse_module()
    parse_seconds = time.perf_counter() - start
    python_build, simulator = timed(lambda: HwSimulator(module, top), repeats)
    runs = []
    for _ in range(repeats):  # a fresh simulator each time: the same power-up state
        fresh = HwSimulator(module, top)
        start = time.perf_counter()
        python_records = run_stream(fresh, pixels, drain_outputs=images)
        runs.append(time.perf_counter() - start)
    python_run = statistics.median(runs)
    cycles = fresh.cycle

    sv_files = [design.path / f for f in manifest["files"]["sv"]]
    ports = next(op for op in module.ops if isinstance(op, hw.HWModuleOp)
                 and op.sym_name.data == top)
    verilator_build = time.perf_counter()
    rtl = verilator.build(sv_files, top, ports, work / f"{spec}.obj")
    verilator_build = time.perf_counter() - verilator_build
    verilator_run, rtl_records = timed(lambda: rtl.run(pixels, drain_outputs=images), repeats)
    return {
        "design": spec,
        "images": images,
        "cycles": cycles,  # reset included
        "ops_per_cycle": simulator.ops_per_cycle,
        "registers": len(simulator.state),
        "ir_parse_seconds": parse_seconds,
        "python_build_seconds": python_build,
        "python_run_seconds": python_run,
        "python_ns_per_op_cycle": 1e9 * python_run / max(1, cycles * simulator.ops_per_cycle),
        "python_cycles_per_second": cycles / python_run,
        "verilator_build_seconds": verilator_build,
        "verilator_run_seconds": verilator_run,
        # from hw IR in memory to outputs (both need the IR; Verilator also the SV)
        "time_to_first_result_ratio": (verilator_build + verilator_run)
        / (python_build + python_run),
        "records_equal": python_records == rtl_records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, help="where designs go (default: a temporary folder)")
    args = parser.parse_args()
    work_ctx = tempfile.TemporaryDirectory(prefix="bench_hw_sim.") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    rows = [measure(spec, work, args.images, args.repeats) for spec in ("small_net", "tiny_cnn")]
    print(f"{'design':10} {'cycles':>7} {'ops/cyc':>8} {'parse':>7} {'py build':>9} {'py run':>8} "
          f"{'ns/op':>6} {'vl build':>9} {'vl run':>7} {'ratio':>6} {'equal':>6}")
    for r in rows:
        print(f"{r['design']:10} {r['cycles']:7} {r['ops_per_cycle']:8} {r['ir_parse_seconds']:6.1f}s "
              f"{r['python_build_seconds']:8.2f}s {r['python_run_seconds']:7.2f}s "
              f"{r['python_ns_per_op_cycle']:6.0f} {r['verilator_build_seconds']:8.2f}s "
              f"{r['verilator_run_seconds']:6.2f}s {r['time_to_first_result_ratio']:6.1f} "
              f"{str(r['records_equal']):>6}")
    write_results("hw_sim", {"images": args.images, "repeats": args.repeats, "designs": rows})


if __name__ == "__main__":
    main()
