"""
NPU benchmark (issue 5): is the reprogrammable classifier a bottleneck?

For each network: the pipeline's cycles per image (the hardened layers: one input pixel per
cycle), the default NPU lane count (the smallest that keeps up), the NPU's cycles per image,
and images/s at the clock with and without the NPU. MobileNetV2 (width 1.0 and 0.25, 32x32,
10 classes) by the throughput model only (passes/npu_hw.py); the digits example
(tiny_cnn) and a small 8x8 net (whose default NPU has 2 lanes) also measured in Verilator
with the default and a 1-lane NPU. Prints a table and writes benchmarks/results/npu.json.

    python benchmarks/bench_npu.py [--clock-mhz 1000] [--work DIR] [--images 360]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import write_results  # noqa: E402

def model_row(name: str, k: int, n: int, pipeline: int, clock_mhz: float) -> dict:
    from hashiflex.passes.to_hw import npu as npu_hw

    lanes = npu_hw.default_lanes(k, n, pipeline)
    npu = npu_hw.npu_cycles_per_image(k, n, lanes)
    one = npu_hw.npu_cycles_per_image(k, n, 1)
    lc, lk = npu_hw.lane_organisation(k, n, lanes)
    return {
        "network": name,
        "features": k,
        "classes": n,
        "pipeline_cycles_per_image": pipeline,
        "default_lanes": lanes,
        "lane_organisation": [lc, lk],
        "npu_cycles_per_image": npu,
        "npu_latency_cycles": npu_hw.npu_latency(k, n, lanes),
        "images_per_second": clock_mhz * 1e6 / max(pipeline, npu),
        "images_per_second_without_npu": clock_mhz * 1e6 / pipeline,
        "one_lane_npu_cycles_per_image": one,
        "one_lane_images_per_second": clock_mhz * 1e6 / max(pipeline, one),
    }


def mobilenet_rows(clock_mhz: float) -> list[dict]:
    import torch

    from hashiflex.examples.mobilenetv2 import mobilenetv2

    rows = []
    for width in (1.0, 0.25):
        model = mobilenetv2(width_mult=width, input_size=32, num_classes=10, in_channels=3)
        fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        # the pipeline takes one 32x32 input pixel per cycle (docs/microarchitecture.md)
        rows.append(model_row(f"mobilenetv2 w{width} 32x32", fc.in_features, fc.out_features,
                              32 * 32, clock_mhz))
    return rows


def measured(spec: str, design_dir: Path, images, clock_mhz: float, npu_lanes: int = 0) -> dict:
    from hashiflex import api

    design = api.compile(spec, design_dir, clock_mhz=clock_mhz, npu_lanes=npu_lanes)
    report = design.report
    result = api.simulate(design.path, images, check=True)
    return {
        "npu_lanes": report["npu_lanes"],
        "pipeline_cycles_per_image": report["pipeline_cycles_per_image"],
        "npu_cycles_per_image": report["npu_cycles_per_image"],
        "report_cycles_per_image": report["cycles_per_image"],
        "npu_is_bottleneck": report["npu_is_bottleneck"],
        "images": len(images),
        "measured_cycles_per_image": result.cycles_per_image,
        "measured_images_per_second": clock_mhz * 1e6 / result.cycles_per_image,
        "stall_cycles": result.stalls,
        "bit_exact": f"{result.compared - result.mismatches}/{result.compared}",
    }


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clock-mhz", type=float, default=1000.0)
    parser.add_argument("--work", type=Path, help="where designs go (default: a temporary folder)")
    parser.add_argument("--images", type=int, default=360, help="digits test images to simulate")
    parser.add_argument("--no-rtl", action="store_true", help="throughput model only")
    args = parser.parse_args()
    clock = args.clock_mhz
    from hashiflex.examples.digits import load_digits_split

    rows = mobilenet_rows(clock)
    rows.insert(0, model_row("tiny_cnn (digits) 16x16", 24, 10, 16 * 16, clock))
    rows.insert(1, model_row("small 8x8 net (stress test)", 8, 10, 8 * 8, clock))
    print(f"throughput model at {clock:g} MHz")
    print(f"{'network':30} {'K':>5} {'N':>4} {'pipeline':>9} {'lanes':>6} {'NPU cyc':>8} "
          f"{'img/s':>10} {'w/o NPU':>10} {'1-lane cyc':>10} {'1-lane img/s':>12}")
    for r in rows:
        print(f"{r['network']:30} {r['features']:5} {r['classes']:4} {r['pipeline_cycles_per_image']:9} "
              f"{r['default_lanes']:6} {r['npu_cycles_per_image']:8} {r['images_per_second']:10.3g} "
              f"{r['images_per_second_without_npu']:10.3g} {r['one_lane_npu_cycles_per_image']:10} "
              f"{r['one_lane_images_per_second']:12.3g}")
    payload: dict = {"clock_mhz": clock, "throughput_model": rows}
    if not args.no_rtl:
        work_ctx = tempfile.TemporaryDirectory(prefix="bench_npu.") if args.work is None else None
        work = Path(work_ctx.name) if work_ctx else args.work
        x_digits = load_digits_split(size=16)[2].numpy()[: args.images]
        runs = {}
        # tiny_cnn's default NPU already has 1 lane (24*10 = 240 <= 256 cycles): the 1-lane
        # design is the default design, measured once
        runs["tiny_cnn default (= 1 lane)"] = measured("tiny_cnn", work / "tiny_cnn", x_digits, clock)
        x_small = np.random.default_rng(0).random((200, 1, 8, 8), dtype=np.float32)
        runs["small 8x8 default"] = measured("small_net", work / "small", x_small, clock)
        runs["small 8x8 1 lane"] = measured("small_net", work / "small1", x_small, clock, npu_lanes=1)
        print("\nmeasured in Verilator")
        print(f"{'design':28} {'lanes':>5} {'pipeline':>9} {'NPU':>5} {'report':>7} {'measured':>9} "
              f"{'stalls':>7} {'img/s':>10} bit-exact")
        for name, r in runs.items():
            print(f"{name:28} {r['npu_lanes']:5} {r['pipeline_cycles_per_image']:9} "
                  f"{r['npu_cycles_per_image']:5} {r['report_cycles_per_image']:7} "
                  f"{r['measured_cycles_per_image']:9g} {r['stall_cycles']:7} "
                  f"{r['measured_images_per_second']:10.3g} {r['bit_exact']}")
        payload["measured"] = runs
        if work_ctx:
            work_ctx.cleanup()
    write_results("npu", payload)


if __name__ == "__main__":
    main()
