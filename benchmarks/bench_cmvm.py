"""
CMVM benchmark: adders of a constant Po2 matrix-vector product, naive (one adder per
nonzero weight beyond the first of each output) / po2-cse (`share_terms`) / da4ml 0.6.0
(optional: `pip install da4ml`; its column is skipped when absent), and their times, on

* random Po2 matrices (outputs x inputs, codes +-1..+-8 i.e. shifts 0..7, random signs,
  a given density of nonzeros; several seeds),
* the pointwise (1x1, groups 1) layers of the shipped MobileNetV2 32x32 at widths 0.25 and
  1.0 (the po2 IR `hashiflex import` builds; untrained, seed 0).

Times are CPU seconds of this process (`time.process_time`, fair on a shared machine; run
da4ml single-threaded with OMP_NUM_THREADS=1, its CPU time counts all its threads anyway)
and wall seconds. da4ml is slow on larger matrices, so it runs only where outputs x inputs
<= --da4ml-max-size (and on the first --da4ml-seeds seeds). da4ml is deterministic, so its
figures for a matrix already in --da4ml-cache (by default the cmvm.json this script wrote
before) are taken from there instead of running it again: such rows say
`"da4ml_cached": true` (their times are that earlier run's). Every row records its
matrix's fingerprint (`matrix_sha1`) for that lookup; rows of older files without one
match on model/layer or shape/density/seed plus nonzeros and naive adders.
With --baseline-rev REV the
po2-cse of that git revision (its passes/po2_cse.py) runs on every matrix too, in the same
process: `baseline` adders and `baseline_cpu_s` beside ours, the fair comparison of two
versions on a loaded machine. Writes benchmarks/results/cmvm.json. With --compile instead: the whole `hashiflex compile`
of MobileNetV2 w0.25 32x32 with and without po2-cse, each in a fresh process (adders,
register bits, latency, wall and CPU seconds), written to benchmarks/results/cmvm_compile.json.

    python benchmarks/bench_cmvm.py [--seeds 3] [--models w025,w1] [--no-da4ml] [--da4ml-cache F]
                                    [--baseline-rev REV]
    python benchmarks/bench_cmvm.py --compile
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from _harness import measure_in_subprocess, write_results

from hashiflex.passes.po2_cse import Terms, naive_adders, share_terms

HERE = Path(__file__).resolve().parent

SHAPES = [(32, 64), (64, 128), (128, 64), (64, 384), (384, 64), (256, 256)]
DENSITIES = [0.9, 0.5, 0.25]


def random_codes(rng: np.random.Generator, rows: int, cols: int, density: float) -> np.ndarray:
    """Po2 weight codes: 0 or +-(1..8), i.e. +-2^(0..7), nonzero with probability density."""
    codes = rng.integers(1, 9, (rows, cols)) * rng.choice([-1, 1], (rows, cols))
    return codes * (rng.random((rows, cols)) < density)


def terms_of(codes: np.ndarray) -> Terms:
    r, c = np.nonzero(codes)
    v = codes[r, c].astype(np.int64)
    return Terms(r.astype(np.int64), c.astype(np.int64), np.abs(v) - 1, np.sign(v))


def run_ours(codes: np.ndarray, baseline=None) -> dict:
    """po2-cse's `share_terms` on the matrix; `baseline`: also that module's (`load_baseline`)."""
    terms = terms_of(codes)
    cpu, wall = time.process_time(), time.perf_counter()
    sharing = share_terms(terms, codes.shape[1])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    entry = {"naive": naive_adders(terms), "ours": sharing.adders(), "ours_cpu_s": cpu,
             "ours_wall_s": wall, "ours_depth": int(sharing.depth.max(initial=0))}
    if baseline is not None:
        cpu = time.process_time()
        entry["baseline"] = baseline.share_terms(terms, codes.shape[1]).adders()
        entry["baseline_cpu_s"] = time.process_time() - cpu
    return entry


def load_baseline(rev: str):
    """passes/po2_cse.py as of git revision `rev`, as a module (the previous algorithm)."""
    import subprocess
    import types

    source = subprocess.run(["git", "show", f"{rev}:passes/po2_cse.py"], cwd=HERE.parent,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"po2_cse_{rev}")
    module.__file__ = f"po2_cse@{rev}"
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def fingerprint(codes: np.ndarray) -> str:
    """sha1 of the matrix (shape and int8 codes): the da4ml cache key."""
    data = np.ascontiguousarray(codes, dtype=np.int8)
    return hashlib.sha1(repr(codes.shape).encode() + data.tobytes()).hexdigest()


class Da4mlCache:
    """da4ml's figures of an earlier cmvm.json, found by fingerprint or by legacy fields."""

    FIELDS = ("da4ml", "da4ml_cpu_s", "da4ml_wall_s")

    def __init__(self, path: str) -> None:
        self.rows: list[dict] = []
        if path and Path(path).exists():
            data = json.loads(Path(path).read_text())
            rows = data.get("random", []) + data.get("mobilenetv2_pointwise", [])
            self.rows = [e for e in rows if "da4ml" in e]

    def lookup(self, entry: dict) -> dict | None:
        for e in self.rows:
            if "matrix_sha1" in e:
                same = e["matrix_sha1"] == entry["matrix_sha1"]
            else:
                ident = ("model", "layer") if "layer" in entry else ("shape", "density", "seed")
                same = all(e.get(k) == entry.get(k) for k in ident + ("nonzeros", "naive"))
            if same:
                return {**{k: e[k] for k in self.FIELDS if k in e}, "da4ml_cached": True}
        return None


def run_da4ml(codes: np.ndarray) -> dict:
    from da4ml.cmvm import solve

    # da4ml computes vec @ kernel: kernel is (inputs, outputs). Inputs are unsigned 8-bit.
    kernel = np.where(codes != 0, np.sign(codes) * 2.0 ** (np.abs(codes) - 1), 0.0)
    kernel = np.ascontiguousarray(kernel.T, dtype=np.float32)
    cpu, wall = time.process_time(), time.perf_counter()
    pipeline = solve(kernel, qintervals=[(0.0, 255.0, 1.0)] * kernel.shape[0])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    adders = sum(1 for stage in pipeline.solutions for op in stage.ops if op.opcode in (0, 1))
    return {"da4ml": adders, "da4ml_cpu_s": cpu, "da4ml_wall_s": wall}


def pointwise_layers(spec: str) -> list[tuple[str, np.ndarray]]:
    """(layer name, codes (Cout, Cin)) of every 1x1, groups-1 conv of the model."""
    from hashiflex import api
    from hashiflex.dialects import po2

    module, _ = api.import_model(spec)
    layers = []
    for op in module.walk():
        if isinstance(op, po2.Conv2dOp) and op.kernel == (1, 1) and op.groups == 1:
            codes = op.weight_codes.reshape(op.weight_codes.shape[0], -1).astype(np.int64)
            layers.append((op.layer, codes))
    return layers


COMPILE_CODE = """
import shutil, tempfile
from hashiflex import api
out = tempfile.mkdtemp(prefix='bench_cmvm_')
try:
    t, c = time.perf_counter(), time.process_time()
    design = api.compile({spec!r}, out + '/design', cse={cse!r})
    total, cpu = time.perf_counter() - t, time.process_time() - c
    report = design.report
finally:
    shutil.rmtree(out, ignore_errors=True)
FIGURES = dict(model={name!r}, cse={cse!r}, compile_seconds=total, compile_cpu_seconds=cpu,
               adders=report['adders'], register_bits=report['register_bits'],
               latency_cycles=report['latency_cycles'],
               nonzero_weights=report['nonzero_weights'])
"""


def compile_with_and_without_cse(name: str = "mobilenetv2_w025") -> None:
    runs = []
    for cse in (False, True):
        code = COMPILE_CODE.format(spec=f"{HERE / 'models.py'}:{name}", name=name, cse=cse)
        figures = measure_in_subprocess(code, timeout=3600)
        runs.append(figures)
        print(f"{name} cse={cse}: {figures['adders']:,} adders, {figures['register_bits']:,} "
              f"register bits, latency {figures['latency_cycles']}, "
              f"{figures['compile_seconds']:.1f} s ({figures['compile_cpu_seconds']:.1f} s cpu)")
    ratio = {k: runs[1][k] / runs[0][k] for k in ("adders", "register_bits", "compile_seconds")}
    print("with / without po2-cse: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    write_results("cmvm_compile", {"runs": runs, "with_over_without": ratio})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="w025,w1", help="MobileNetV2 widths (w025, w1), or ''")
    parser.add_argument("--no-da4ml", action="store_true")
    parser.add_argument("--da4ml-max-size", type=int, default=8192,
                        help="run da4ml only on matrices with outputs x inputs <= this")
    parser.add_argument("--da4ml-seeds", type=int, default=1)
    parser.add_argument("--shapes", default="", help="e.g. 32x64,64x128 (default: all)")
    parser.add_argument("--da4ml-cache", default=str(HERE / "results" / "cmvm.json"),
                        help="reuse da4ml's figures for matrices in this earlier cmvm.json ('' : never)")
    parser.add_argument("--baseline-rev", default="",
                        help="also run po2-cse's share_terms as of this git revision (same matrices, same run)")
    parser.add_argument("--compile", action="store_true",
                        help="instead: whole compile of MobileNetV2 w0.25 with and without po2-cse")
    args = parser.parse_args()
    if args.compile:
        compile_with_and_without_cse()
        return
    try:
        import da4ml  # noqa: F401

        have_da4ml = not args.no_da4ml
    except ImportError:
        have_da4ml = False
        print("da4ml not installed: its column is skipped (pip install da4ml)")
    cache = Da4mlCache("" if args.no_da4ml else args.da4ml_cache)
    baseline = load_baseline(args.baseline_rev) if args.baseline_rev else None
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")] \
        if args.shapes else SHAPES

    random_rows = []
    for rows, cols in shapes:
        for density in DENSITIES:
            for seed in range(args.seeds):
                codes = random_codes(np.random.default_rng([rows, cols, int(density * 100), seed]),
                                     rows, cols, density)
                entry = {"shape": f"{rows}x{cols}", "density": density, "seed": seed,
                         "nonzeros": int(np.count_nonzero(codes)),
                         "matrix_sha1": fingerprint(codes), **run_ours(codes, baseline)}
                if rows * cols <= args.da4ml_max_size and seed < args.da4ml_seeds:
                    _add_da4ml(entry, codes, cache, have_da4ml)
                random_rows.append(entry)
                _print_row(entry)

    layer_rows = []
    models = {"w025": "mobilenetv2_w025", "w1": "mobilenetv2_w1"}
    for width in filter(None, args.models.split(",")):
        for name, codes in pointwise_layers(f"{HERE / 'models.py'}:{models[width]}"):
            entry = {"model": f"mobilenetv2_{width}", "layer": name,
                     "shape": f"{codes.shape[0]}x{codes.shape[1]}",
                     "nonzeros": int(np.count_nonzero(codes)),
                     "matrix_sha1": fingerprint(codes), **run_ours(codes, baseline)}
            if codes.size <= args.da4ml_max_size:
                _add_da4ml(entry, codes, cache, have_da4ml)
            layer_rows.append(entry)
            _print_row(entry)

    summary = _summary(random_rows, layer_rows)
    if baseline is not None:
        summary["baseline_rev"] = args.baseline_rev
    for key, value in summary.items():
        print(f"{key}: {value}")
    write_results("cmvm", {"random": random_rows, "mobilenetv2_pointwise": layer_rows,
                           "summary": summary})


def _add_da4ml(entry: dict, codes: np.ndarray, cache: Da4mlCache, have_da4ml: bool) -> None:
    """da4ml's figures for this matrix: from the cache, else from a run if installed."""
    cached = cache.lookup(entry)
    if cached is not None:
        entry.update(cached)
    elif have_da4ml:
        entry.update(run_da4ml(codes))


def _print_row(e: dict) -> None:
    what = e.get("layer") or f"density {e['density']} seed {e['seed']}"
    da4ml = (f"  da4ml {e['da4ml']:7d} ({e['da4ml_cpu_s']:7.2f} s cpu"
             f"{', cached' if e.get('da4ml_cached') else ''})" if "da4ml" in e else "")
    print(f"{e.get('model', 'random'):18s} {e['shape']:>9s} {what:28s} naive {e['naive']:7d}  "
          f"ours {e['ours']:7d} ({e['ours'] / max(e['naive'], 1):.3f}, {e['ours_cpu_s']:6.2f} s cpu)"
          + da4ml + (f"  baseline {e['baseline']:7d} ({e['baseline_cpu_s']:6.2f} s cpu)"
                     if "baseline" in e else ""), flush=True)


def _summary(random_rows: list[dict], layer_rows: list[dict]) -> dict:
    both = [e for e in random_rows + layer_rows if "da4ml" in e]
    summary: dict = {}
    if both:
        summary["da4ml_compared_matrices"] = len(both)
        summary["da4ml_cached_matrices"] = sum(bool(e.get("da4ml_cached")) for e in both)
        summary["ours_over_da4ml_adders_median"] = float(np.median([e["ours"] / e["da4ml"] for e in both]))
        summary["ours_over_da4ml_adders_max"] = float(max(e["ours"] / e["da4ml"] for e in both))
        summary["ours_fewer_or_equal_count"] = sum(e["ours"] <= e["da4ml"] for e in both)
        summary["ours_fewer_count"] = sum(e["ours"] < e["da4ml"] for e in both)
        summary["ours_over_da4ml_adders_total"] = (sum(e["ours"] for e in both)
                                                  / sum(e["da4ml"] for e in both))
        summary["da4ml_over_ours_cpu_time_median"] = float(
            np.median([e["da4ml_cpu_s"] / max(e["ours_cpu_s"], 1e-3) for e in both]))
    summary["random_ours_over_naive_median"] = float(np.median([e["ours"] / e["naive"] for e in random_rows])) if random_rows else None
    for model in sorted({e["model"] for e in layer_rows}):
        rows = [e for e in layer_rows if e["model"] == model]
        summary[f"{model}_pointwise_naive"] = sum(e["naive"] for e in rows)
        summary[f"{model}_pointwise_ours"] = sum(e["ours"] for e in rows)
        summary[f"{model}_pointwise_ours_cpu_s"] = sum(e["ours_cpu_s"] for e in rows)
        summary[f"{model}_slowest_layer_cpu_s"] = max(e["ours_cpu_s"] for e in rows)
        if all("baseline" in e for e in rows):
            summary[f"{model}_pointwise_baseline"] = sum(e["baseline"] for e in rows)
            summary[f"{model}_pointwise_baseline_cpu_s"] = sum(e["baseline_cpu_s"] for e in rows)
    with_base = [e for e in random_rows + layer_rows if "baseline" in e]
    if with_base:
        summary["ours_over_baseline_adders_total"] = (sum(e["ours"] for e in with_base)
                                                     / sum(e["baseline"] for e in with_base))
        summary["ours_over_baseline_adders_max"] = float(max(e["ours"] / e["baseline"] for e in with_base))
        summary["baseline_over_ours_cpu_median"] = float(
            np.median([e["baseline_cpu_s"] / max(e["ours_cpu_s"], 1e-4) for e in with_base]))
        big = [e for e in with_base if e["baseline_cpu_s"] >= 5.0]
        if big:
            summary["baseline_over_ours_cpu_layers_over_5s"] = (
                sum(e["baseline_cpu_s"] for e in big) / sum(e["ours_cpu_s"] for e in big))
    return summary


if __name__ == "__main__":
    main()
