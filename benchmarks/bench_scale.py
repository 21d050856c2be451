"""
Full-scale check: compile MobileNetV2 (default w0.25, 32x32) and verify every one of its
layer modules on its own in Verilator (`hashiflex verify`) against the golden model's
activations, on local worker processes (one fresh process per module, so each module's
peak memory is its own) or a Dask cluster (--scheduler). Writes
benchmarks/results/scale_<model>.json after every finished module (a run cut short keeps
what it finished): per module its wall time, Verilator build and simulation seconds, peak
RSS (the worker and its children: Verilator, make, g++), output beats compared, cycles per
image; plus the compile's time and peak RSS, and totals.

    python benchmarks/bench_scale.py [--model mobilenetv2_w025] [--images 2] [--jobs 2]
        [--design DIR (reuse a compiled design; the compile is then not timed)]
        [--modules A,B] [--scheduler tcp://host:port] [--budget-s S]

`--budget-s S` verifies as many modules as finish within S seconds of verification (the
compile not counted): the rest are stopped and listed as not reached, e.g. for w1.0 on one
machine (`--model mobilenetv2_w1 --budget-s 1800`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import measure_in_subprocess, write_results

HERE = Path(__file__).resolve().parent

COMPILE = """
from hashiflex import api
api.compile({spec!r}, {out!r})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mobilenetv2_w025")
    parser.add_argument("--design", type=Path, help="a compiled design to reuse (no compile)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--modules", default=None)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop verifying after this many seconds (the compile not counted)")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a background job may ignore) stops the workers and their
    # builds through the runner's interrupt path; the JSON keeps the modules finished so far
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)

    from hashiflex.verify import module_line, verify

    scratch = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    payload: dict = {"model": args.model, "images": args.images, "modules": []}
    name = f"scale_{args.model}"
    try:
        if args.design is None:
            design = scratch / "design"
            spec = f"{HERE / 'models.py'}:{args.model}"
            figures = measure_in_subprocess(COMPILE.format(spec=spec, out=str(design)), timeout=7200)
            payload["compile"] = {"seconds": round(figures["seconds"], 1),
                                  "peak_rss_mb": round(figures["peak_rss_mb"], 1)}
            print(f"compile {args.model}: {figures['seconds']:.1f} s, peak {figures['peak_rss_mb']:.0f} MB",
                  flush=True)
        else:
            design = args.design
            payload["compile"] = {"seconds": None, "note": f"reused {design}"}
        import json
        shape = json.loads((Path(design) / "design.json").read_text())["input_shape"]
        images = np.random.default_rng(0).uniform(0, 1, (args.images, *shape)).astype(np.float32)
        started = time.perf_counter()

        def saved(row: dict) -> None:
            payload["modules"].append(row)
            payload["elapsed_seconds"] = round(time.perf_counter() - started, 1)
            print(module_line(row), flush=True)
            write_results(name, payload)

        summary = verify(design, images, jobs=args.jobs, scheduler=args.scheduler,
                         modules=args.modules.split(",") if args.modules else None,
                         fresh_worker_per_job=args.scheduler is None, on_row=saved,
                         deadline=args.budget_s)
        rows = [r for r in summary["modules"] if "error" not in r]
        payload.update(
            modules=summary["modules"], verified=summary["verified"], total=summary["total"],
            differ=summary["differ"], wall_seconds=summary["wall_seconds"],
            module_seconds_sum=round(sum(r["seconds"] for r in rows), 1),
            module_seconds_median=float(np.median([r["seconds"] for r in rows])) if rows else None,
            peak_rss_mb_max=max((r["peak_rss_mb"] for r in rows), default=None),
            executor=summary["executor"], jobs=args.jobs, budget_s=args.budget_s,
            not_reached=[r["module"] for r in summary["modules"] if "error" in r
                         and "deadline" in r["error"]],
        )
        write_results(name, payload)
        print(f"verified {summary['verified']} of {summary['total']} modules bit-exact in "
              f"{summary['wall_seconds']:.0f} s wall (sum of module times "
              f"{payload['module_seconds_sum']:.0f} s; largest peak {payload['peak_rss_mb_max']} MB)")
        # a module the budget did not reach is not a failure; one that ran and differs is
        failed = [m for m in summary["differ"] if m not in payload["not_reached"]]
        if payload["not_reached"]:
            print(f"{len(payload['not_reached'])} modules not reached within the "
                  f"{args.budget_s:g} s budget")
        sys.exit(0 if not failed else 1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
