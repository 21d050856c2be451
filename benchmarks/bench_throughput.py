"""
Throughput against area: MobileNetV2 (32x32x3, benchmarks/models.py; the CIFAR-style strides
of examples/mobilenetv2.py and torchvision's, the `_imagenet` models) compiled at several
input pixels per cycle P (`hashiflex compile --pixels-per-cycle P`), each compile in a fresh
subprocess. For each point: cycles per image and images/s at the clock (from report.json,
the NPU included), adders and register bits, the NPU's lanes, the input bandwidth in
Gbit/s (images/s x C*H*W*bits), compile time, per-layer lanes and adders, and the adders'
lower bound (`adders_lower_bound`: each layer of the P=1 point copied to its output rate).
P > W must be a multiple k*W of the width (k whole rows per beat, k dividing H; P = 64 is
2 rows of 32); a P the lowering refuses is recorded with its one-line error.

Writes benchmarks/results/throughput.json (after every point, so a partial run keeps what
it measured) and throughput.png (images/s against adders and register bits).

    .venv/bin/python benchmarks/bench_throughput.py                       # w0.25, P=1..64
    .venv/bin/python benchmarks/bench_throughput.py --models w025 w1 --pixels 1 4 16

MobileNetV2 w1.0 takes about 10 minutes and 3.4 GB per compile at P=1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS, measure_in_subprocess, write_results  # noqa: E402

# the CIFAR-style nets (stem stride 1, total stride 8) and torchvision's strides (stem stride
# 2, total stride 32: at P=4 the stem still makes one output pixel per cycle)
MODELS = {"w025": "mobilenetv2_w025", "w1": "mobilenetv2_w1",
          "w025_imagenet": "mobilenetv2_w025_imagenet", "w1_imagenet": "mobilenetv2_w1_imagenet"}
SPEC_FILE = Path(__file__).resolve().parent / "models.py"


def compile_point(model: str, p: int, clock_mhz: float, timeout: float) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"tp_{model}_p{p}_"))
    code = f"""
import json, shutil
from hashiflex import api
from hashiflex.errors import HashiflexError
try:
    design = api.compile({str(SPEC_FILE)!r} + ':' + {MODELS[model]!r}, {str(out / 'design')!r},
                         pixels_per_cycle={p}, clock_mhz={clock_mhz})
    r = design.report
    m = design.manifest
    c, h, w = m['input_shape']
    FIGURES = {{k: r[k] for k in ('cycles_per_image', 'pipeline_cycles_per_image',
        'npu_cycles_per_image', 'npu_is_bottleneck', 'images_per_second', 'npu_lanes',
        'adders', 'register_bits', 'line_buffer_bits', 'nonzero_weights', 'latency_cycles')}}
    FIGURES['input_gbit_per_s'] = r['images_per_second'] * c * h * w * m['input_format']['bits'] / 1e9
    FIGURES['layer_lanes'] = [l.get('lanes', 1) for l in r['layers'] if l['kind'] != 'npu']
    FIGURES['layers'] = [{{k: l.get(k) for k in ('layer', 'kind', 'lanes', 'input_lanes',
        'output_shape', 'stride', 'adders', 'register_bits')}} for l in r['layers']]
except HashiflexError as error:
    FIGURES = {{'refused': str(error)}}
shutil.rmtree({str(out)!r}, ignore_errors=True)
"""
    commit = source_revision()  # before the compile: the code it imports
    figures = measure_in_subprocess(code, timeout=timeout)
    return {"model": model, "pixels_per_cycle": p, "commit": commit, **figures}


def source_revision() -> str:
    """The compiler's git revision (with "+changes" when its tree has uncommitted edits):
    points measured in different runs say which code built them."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hashiflex", "passes",
                                "backends", "frontend", "golden", "dialects"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+changes" if dirty else "")


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in sorted({pt["model"] for pt in points}):
        pts = [pt for pt in points if pt["model"] == model and "refused" not in pt]
        for ax, key in zip(axes, ("adders", "register_bits")):
            xs = [pt[key] for pt in pts]
            ys = [pt["images_per_second"] / 1e6 for pt in pts]
            ax.plot(xs, ys, "o-", label=f"MobileNetV2 {model}")
            for pt, x, y in zip(pts, xs, ys):
                ax.annotate(f"P={pt['pixels_per_cycle']}\n{pt['input_gbit_per_s']:.0f} Gb/s",
                            (x, y), fontsize=7, textcoords="offset points", xytext=(4, -10))
    for ax, label in zip(axes, ("adders", "register bits")):
        ax.set_xlabel(label)
        ax.set_ylabel("M images/s at the clock")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("HaShiFlex: throughput against area (--pixels-per-cycle P)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def merge(points: list[dict], clock_mhz: float, fresh: bool) -> list[dict]:
    """This run's points over those already in throughput.json at the same clock (runs of
    single models or P values add up; w1.0 takes 10 minutes a point)."""
    path = RESULTS / "throughput.json"
    old = []
    if not fresh and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("clock_mhz") == clock_mhz:
            old = saved.get("points", [])
    mine = {(pt["model"], pt["pixels_per_cycle"]) for pt in points}
    keep = [pt for pt in old if (pt["model"], pt["pixels_per_cycle"]) not in mine]
    order = {m: i for i, m in enumerate(MODELS)}
    return sorted(keep + points, key=lambda pt: (order[pt["model"]], pt["pixels_per_cycle"]))


def adders_lower_bound(base: dict, p: int) -> int | None:
    """
    The fewest adders any design with hardened weights needs at P: every layer of the P=1
    point (`base`, its per-layer adders) copied as often as its output rate needs,
    max(1, P * OH*OW / (H*W)) output pixels per cycle (each copy a full datapath: the
    weights are constants, so two pixels in one cycle cannot share an adder); the NPU as is.
    """
    layers = base.get("layers")
    if not layers:
        return None
    frame = base["cycles_per_image"]  # pixels per image at P=1
    bound = 0.0
    for layer in layers:
        shape = layer["output_shape"]
        pixels = shape[1] * shape[2] if len(shape) == 3 else 1
        rate = 1.0 if layer["kind"] == "npu" else max(1.0, p * pixels / frame)
        bound += layer["adders"] * rate
    return round(bound)


def with_bounds(points: list[dict]) -> list[dict]:
    """Each measured point with `adders_lower_bound` from its model's P=1 point."""
    base = {pt["model"]: pt for pt in points
            if pt["pixels_per_cycle"] == 1 and "refused" not in pt}
    for pt in points:
        if pt["model"] in base and "refused" not in pt:
            bound = adders_lower_bound(base[pt["model"]], pt["pixels_per_cycle"])
            if bound is not None:
                pt["adders_lower_bound"] = bound
    return points


def markdown(points: list[dict]) -> str:
    """The README's table: one row per point, ratios against the model's P=1 point."""
    rows = ["| model | P | cycles/image | images/s at 1 GHz | adders | lower bound | "
            "register bits | NPU lanes | input |", "|---|---|---|---|---|---|---|---|---|"]
    base = {pt["model"]: pt for pt in points
            if pt["pixels_per_cycle"] == 1 and "refused" not in pt}
    for pt in points:
        if "refused" in pt:
            rows.append(f"| {pt['model']} | {pt['pixels_per_cycle']} | refused: "
                        f"{pt['refused']} | | | | | | |")
            continue
        b = base.get(pt["model"])

        def rel(key, value):
            return "" if b is None or pt is b else f" ({value / b[key] - 1:+.1%})"
        bound = pt.get("adders_lower_bound")
        rows.append(
            f"| {pt['model']} | {pt['pixels_per_cycle']} | {pt['cycles_per_image']} | "
            f"{pt['images_per_second'] / 1e6:.3g}M | {pt['adders']:,}{rel('adders', pt['adders'])} | "
            + (f"{bound:,}{rel('adders', bound)}" if bound is not None else "") + " | "
            f"{pt['register_bits']:,}{rel('register_bits', pt['register_bits'])} | "
            f"{pt['npu_lanes']} | {pt['input_gbit_per_s']:.0f} Gbit/s |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["w025"], choices=sorted(MODELS))
    parser.add_argument("--pixels", nargs="+", type=int, default=[1, 2, 4, 8, 16, 64])
    parser.add_argument("--clock-mhz", type=float, default=1000.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per compile")
    parser.add_argument("--fresh", action="store_true",
                        help="forget the points of throughput.json (default: merge into them)")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw throughput.png from throughput.json")
    parser.add_argument("--markdown", action="store_true",
                        help="only print the README's table from throughput.json")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(with_bounds(json.loads((RESULTS / "throughput.json").read_text())["points"])))
        return
    if args.plot_only:  # also fills in the adders' lower bounds from the P=1 points
        saved = json.loads((RESULTS / "throughput.json").read_text())
        points = with_bounds(saved["points"])
        write_results("throughput", {"clock_mhz": saved["clock_mhz"], "points": points})
        plot(points, RESULTS / "throughput.png")
        return
    points: list[dict] = []
    print(f"{'model':>6} {'P':>3} {'cycles':>7} {'Mimg/s':>8} {'adders':>9} {'reg bits':>10} "
          f"{'NPU lanes':>9} {'Gbit/s':>7} {'s':>6}")
    for model in args.models:
        for p in args.pixels:
            point = compile_point(model, p, args.clock_mhz, args.timeout)
            points.append(point)
            merged = merge(points, args.clock_mhz, args.fresh)
            if "refused" in point:
                print(f"{model:>6} {p:>3} refused: {point['refused']}")
            else:
                print(f"{model:>6} {p:>3} {point['cycles_per_image']:>7} "
                      f"{point['images_per_second'] / 1e6:>8.3f} {point['adders']:>9} "
                      f"{point['register_bits']:>10} {point['npu_lanes']:>9} "
                      f"{point['input_gbit_per_s']:>7.1f} {point['seconds']:>6.0f}")
            sys.stdout.flush()
            write_results("throughput", {"clock_mhz": args.clock_mhz, "points": merged})
    points = merge(points, args.clock_mhz, args.fresh)
    measured = [pt for pt in points if "refused" not in pt]
    if measured:
        plot(points, RESULTS / "throughput.png")
    base = {pt["model"]: pt for pt in measured if pt["pixels_per_cycle"] == 1}
    with_bounds(measured)
    for pt in measured:
        if pt["model"] in base and pt is not base[pt["model"]]:
            b = base[pt["model"]]
            print(f"{pt['model']} P={pt['pixels_per_cycle']}: {b['cycles_per_image'] / pt['cycles_per_image']:.2f}x "
                  f"images/s for {pt['adders'] / b['adders']:.3f}x adders, "
                  f"{pt['register_bits'] / b['register_bits']:.3f}x register bits"
                  + (f" (lower bound {pt['adders_lower_bound'] / b['adders']:.3f}x adders)"
                     if "adders_lower_bound" in pt else ""))


if __name__ == "__main__":
    main()
