"""
`hashiflex demo`: the main job on the built-in digits example, end to end (compile,
simulate every test image and some extreme ones in RTL, compare with the golden model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashiflex.compiler import compile
from hashiflex.progress import QUIET, Progress
from hashiflex.simulation import simulate


DEMO_EXAMPLE = "tiny_cnn"


def demo(out: Path | str = "out/demo", *, images: int = 0, pixels_per_cycle: int = 1,
         progress: Progress = QUIET) -> int:
    """
    The main job on the built-in digits example: compile the trained tiny CNN, simulate
    every digits test image (and random and extreme images) in RTL, and print RTL-vs-golden
    agreement, accuracy and the design's figures. Returns the exit code. `pixels_per_cycle`:
    input pixels per cycle (`compile --pixels-per-cycle`).
    """
    import time

    from hashiflex.examples.digits import load_digits_split

    start = time.perf_counter()
    design = compile(DEMO_EXAMPLE, out, pixels_per_cycle=pixels_per_cycle, progress=progress)
    _, _, x_test, y_test = load_digits_split(size=design.manifest["input_shape"][1])
    x = x_test.numpy()
    y = y_test.numpy()
    if images:
        x, y = x[:images], y[:images]
    rng = np.random.default_rng(0)
    shape = tuple(design.manifest["input_shape"])
    stress = np.concatenate(
        [
            rng.random((8, *shape), dtype=np.float32),  # random
            np.full((1, *shape), 1e6, np.float32),  # all-max (saturates the input format)
            np.full((1, *shape), -1e6, np.float32),  # all-min
            np.zeros((1, *shape), np.float32),
        ]
    )
    result = simulate(design.path, np.concatenate([x, stress]), check=True, progress=progress)
    report = design.report
    n = len(x)
    accuracy = float((result.classes[:n] == y).mean())
    golden_accuracy = float((result.golden_classes[:n] == y).mean())
    lines = [
        "",
        f"HaShiFlex demo: {DEMO_EXAMPLE} on scikit-learn digits ({n} test images + {len(stress)} random/extreme)",
        f"  RTL vs golden model : {result.compared - result.mismatches}/{result.compared} outputs bit-exact"
        + (" (logits and class)" if result.ok else "  <-- MISMATCH"),
        f"  accuracy (RTL)      : {100 * accuracy:.2f} %   (golden: {100 * golden_accuracy:.2f} %)",
        f"  pixels per cycle    : {report['pixels_per_cycle']} at the input",
        f"  cycles per image    : {result.cycles_per_image:g} measured, {report['cycles_per_image']} in the report",
        f"  latency             : {result.latency_cycles} cycles measured, {report['latency_cycles']} in the report",
        f"  throughput          : {report['images_per_second']:.3g} images/s at {report['clock_mhz']:g} MHz",
        f"  adders              : {report['adders']}",
        f"  register bits       : {report['register_bits']} (line buffers {report['line_buffer_bits']})",
        f"  NPU                 : {report['npu_lanes']} lanes, {report['npu_cycles_per_image']} cycles/image, "
        f"{result.stalls} stall cycles",
        f"  design              : {design.path}/ (SystemVerilog in rtl/, report.json)",
        f"  total time          : {time.perf_counter() - start:.0f} s",
    ]
    print("\n".join(lines))
    return 0 if result.ok and result.cycles_per_image == report["cycles_per_image"] else 1
