"""
Import benchmark: `hashiflex import` of MobileNetV2 (32x32, 10 classes) with calibration,
at widths 0.25 and 1.0, each in a fresh process. Prints seconds and peak memory and writes
benchmarks/results/import.json. Target (issue 3): width 1.0 under 60 s and 4 GB.

    python benchmarks/bench_import.py [--widths 0.25,1.0] [--calib 64]
"""

from __future__ import annotations

import argparse

from _harness import measure_in_subprocess, write_results

CODE = """
import numpy as np, torch
from hashiflex import api
from hashiflex.examples.mobilenetv2 import mobilenetv2
torch.manual_seed(0)
model = mobilenetv2(width_mult={width}, input_size=32, num_classes=10, in_channels=3).eval()
calib = np.random.default_rng(0).random(({calib}, 3, 32, 32), dtype=np.float32)
import hashiflex.frontend.quant as quant
t = time.perf_counter()
q = quant.quantize_ptq(model, torch.from_numpy(calib))
t_quant = time.perf_counter() - t
module = q.rename("mobilenetv2").module
api.print_ir(module, "/tmp/bench_import.mlir")
weights = sum(int(np.prod(p.shape)) for n, p in model.named_parameters() if p.dim() == 4)
FIGURES = dict(width={width}, conv_weights=weights, quantise_seconds=t_quant)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", default="0.25,1.0")
    parser.add_argument("--calib", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for width in [float(w) for w in args.widths.split(",")]:
        figures = measure_in_subprocess(CODE.format(width=width, calib=args.calib))
        rows.append(figures)
        print(
            f"width {width:4}: {figures['conv_weights']:>9,} conv weights  "
            f"{figures['seconds']:6.1f} s (quantise {figures['quantise_seconds']:.1f} s)  "
            f"peak {figures['peak_rss_mb']:7.0f} MB"
        )
    write_results("import", {"calibration_images": args.calib, "runs": rows})


if __name__ == "__main__":
    main()
