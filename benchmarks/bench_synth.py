"""
Synthesis benchmark: measured area and fmax per module with `hashiflex synth` (Yosys + ABC,
delay-driven, Nangate45 typical) for tiny_cnn (every module) and MobileNetV2 w0.25 (as many
modules as fit in a time budget, smallest first), each module's Yosys runtime, and the error
of the compile-time estimate (backends/cell_model.py via hashiflex/estimate.py) against the
measurement. Writes benchmarks/results/synth.json.

    python benchmarks/bench_synth.py [--jobs N] [--budget-s 1800] [--cpu-budget-s 900] [--cache DIR]
                                     [--tiny DIR] [--mnv2 DIR] [--no-mnv2]

--tiny/--mnv2 reuse compiled design directories (else they are compiled into a temporary
directory). Results are cached by content in --cache (default /tmp/hashiflex-synth-cache), so
a re-run only synthesises what changed; cached rows keep the runtime of the run that made
them. Note: the tiny_cnn modules are the calibration set of the cell model's whole-module
constants (REGISTER_RETENTION, OTHER_AREA_FRACTION, ADDER_AREA_PER_BIT_UM2), so its estimate
error is in-sample; the MobileNetV2 modules are out of sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hashiflex import api, synth
from hashiflex.estimate import estimated_section
from hashiflex.progress import Progress

RESULTS = Path(__file__).resolve().parent / "results"


def compiled(spec: str, given: Path | None, scratch: Path, name: str, **options) -> tuple[Path, float]:
    if given is not None:
        return given, 0.0
    out = scratch / name
    start = time.perf_counter()
    api.compile(spec, out, progress=Progress(enabled=False), **options)
    return out, time.perf_counter() - start


def estimate_errors(estimated: dict[str, dict], measured: list[dict]) -> list[dict]:
    rows = []
    for m in measured:
        e = estimated.get(m["module"])
        if e is None:
            continue
        rows.append({
            "module": m["module"],
            "area_um2_measured": m["area_um2"], "area_um2_estimated": e["area_um2"],
            "area_error_pct": round(100 * (e["area_um2"] - m["area_um2"]) / m["area_um2"], 1),
            "fmax_mhz_measured": m["fmax_mhz"], "fmax_mhz_estimated": e["fmax_mhz"],
            "fmax_error_pct": round(100 * (e["fmax_mhz"] - m["fmax_mhz"]) / m["fmax_mhz"], 1),
        })
    return rows


def error_summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    area = [abs(r["area_error_pct"]) for r in rows]
    fmax = [abs(r["fmax_error_pct"]) for r in rows]
    total_m = sum(r["area_um2_measured"] for r in rows)
    total_e = sum(r["area_um2_estimated"] for r in rows)
    return {
        "modules": len(rows),
        "area_abs_error_pct_median": round(statistics.median(area), 1),
        "area_abs_error_pct_max": round(max(area), 1),
        "area_total_error_pct": round(100 * (total_e - total_m) / total_m, 1),
        "fmax_abs_error_pct_median": round(statistics.median(fmax), 1),
        "fmax_abs_error_pct_max": round(max(fmax), 1),
    }


def run_design(design: Path, *, jobs: int | None, cache: Path, budget_s: float | None,
               cpu_budget_s: float | None = None) -> dict:
    """Synthesise the modules of `design` (all, or smallest first until a budget, wall time
    or Yosys CPU time, is spent)."""
    report = json.loads((design / "report.json").read_text())
    manifest = json.loads((design / "design.json").read_text())
    files = sorted((design / f for f in manifest["files"]["sv"]), key=lambda p: p.stat().st_size)
    # The estimate as the current cell model makes it (what `hashiflex compile` writes).
    estimate = estimated_section(report, [p.stem for p in files], synth.module_features(design))
    estimated = {r["module"]: r for r in estimate["modules"]}
    start = time.perf_counter()
    done: list[str] = []
    batch = max(1, jobs or 2)
    section = None
    for i in range(0, len(files), batch):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
        if cpu_budget_s is not None and section is not None and sum(
                r.get("cpu_seconds", 0) for r in section["modules"] if r["module"] in done) > cpu_budget_s:
            break
        names = [p.stem for p in files[i : i + batch]]
        section = synth.synth(design, jobs=jobs, modules=names, cache_dir=cache)
        done += names
    assert section is not None
    measured = [r for r in section["modules"] if not r["estimated"]]
    print(synth.summary(section, json.loads((design / "report.json").read_text())))
    errors = estimate_errors(estimated, measured)
    return {
        "design": manifest["name"], "modules_total": len(files), "modules_measured": len(measured),
        "clock_mhz_target": report.get("clock_mhz"), "cycles_per_image": report.get("cycles_per_image"),
        "area_um2_measured_modules": round(sum(r["area_um2"] for r in measured), 1),
        "fmax_mhz_measured_modules": min(r["fmax_mhz"] for r in measured),
        "area_um2_total_with_estimates": section["area_um2"],
        "area_um2_estimated_all_modules": estimate["area_um2"],
        "fmax_mhz_estimated_all_modules": estimate["fmax_mhz"],
        "yosys_seconds_total": round(sum(r.get("seconds", 0) for r in measured), 1),
        "yosys_cpu_seconds_total": round(sum(r.get("cpu_seconds", 0) for r in measured), 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "modules": measured,
        "estimate_error": errors,
        "estimate_error_summary": error_summary(errors),
        "synth": {k: v for k, v in section.items() if k != "modules"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=1800.0,
                        help="wall-time budget for the MobileNetV2 modules (default 1800)")
    parser.add_argument("--cpu-budget-s", type=float, default=900.0,
                        help="Yosys CPU-time budget for the MobileNetV2 modules (default 900)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hashiflex-synth-cache")
    parser.add_argument("--tiny", type=Path, help="a compiled tiny_cnn design to reuse")
    parser.add_argument("--mnv2", type=Path, help="a compiled MobileNetV2 w0.25 design to reuse")
    parser.add_argument("--no-mnv2", action="store_true",
                        help="tiny_cnn only; the MobileNetV2 section of an existing --out file "
                             "is kept as it was (with the date of its run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "synth.json")
    args = parser.parse_args(argv)

    yosys = synth.find_yosys()
    payload = {"benchmark": "synth", "tool": yosys.version, "flow": synth.ABC_SCRIPT,
               "liberty": str(synth.default_liberty()), "jobs": args.jobs,
               "budget_s_mnv2": args.budget_s, "cpu_budget_s_mnv2": args.cpu_budget_s, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="hashiflex-bench-synth-") as scratch:
        tiny, secs = compiled("tiny_cnn", args.tiny, Path(scratch), "tiny_cnn")
        print(f"== tiny_cnn ({tiny}; compiled in {secs:.1f} s)")
        payload["tiny_cnn"] = run_design(tiny, jobs=args.jobs, cache=args.cache, budget_s=None)
        if not args.no_mnv2:
            models = Path(__file__).resolve().parent / "models.py"
            mnv2, secs = compiled(f"{models}:mobilenetv2_w025", args.mnv2, Path(scratch),
                                  "mobilenetv2_w025", input_shape="3,32,32")
            print(f"== MobileNetV2 w0.25 ({mnv2}; compiled in {secs:.1f} s; budget {args.budget_s:.0f} s)")
            payload["mobilenetv2_w025"] = run_design(mnv2, jobs=args.jobs, cache=args.cache,
                                                     budget_s=args.budget_s,
                                                     cpu_budget_s=args.cpu_budget_s)
    for key in ("tiny_cnn", "mobilenetv2_w025"):
        if key in payload:
            d = payload[key]
            print(f"{key}: {d['modules_measured']}/{d['modules_total']} modules measured, "
                  f"{d['area_um2_measured_modules']:.0f} um^2, fmax {d['fmax_mhz_measured_modules']:.0f} MHz, "
                  f"Yosys {d['yosys_seconds_total']:.0f} s wall ({d['yosys_cpu_seconds_total']:.0f} s CPU where known); estimate error {d['estimate_error_summary']}")
    if args.no_mnv2 and args.out.is_file():
        previous = json.loads(args.out.read_text())
        if "mobilenetv2_w025" in previous:
            payload["mobilenetv2_w025"] = {**previous["mobilenetv2_w025"],
                                           "date": previous["mobilenetv2_w025"].get("date", previous.get("date"))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
