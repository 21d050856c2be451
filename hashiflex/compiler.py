"""
`hashiflex compile`: a model to a design directory (po2 IR, hw IR, SystemVerilog, NPU
parameters, report.json, design.json). Quantisation and import are `importing.py`'s, the
lowering and emission layer by layer `flow.py`'s; this module writes the directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hashiflex.design_dir import (
    MARKER,
    MARKER_TEXT,
    Design,
    atomic_dir,
    check_replaceable,
    design_manifest,
    print_ir,
)
from hashiflex.errors import InputError, ModelError
from hashiflex.importing import import_model
from hashiflex.npu_weights import npu_op
from hashiflex.progress import QUIET, Progress
from hashiflex.report import build_report


# The ranges of compile's numeric options (beyond them a number is a typo, not a design).
MAX_CLOCK_MHZ = 1e6
MAX_NPU_LANES = 1 << 20  # more than any NPU's N*K multipliers here; the pass clamps to N*K
MAX_LEVELS_PER_STAGE = 1024
MAX_JOBS = 4096
HW_FILE = "model.hw.mlir"  # the hw IR, written with --emit-hw-ir


def compile(
    spec: str,
    out: Path | str,
    *,
    clock_mhz: float = 1000.0,
    levels_per_stage: int | None = None,
    npu_lanes: int = 0,
    force: bool = False,
    pixels_per_cycle: int | None = None,
    images_per_second: float | None = None,
    progress: Progress = QUIET,
    cse: bool = True,
    cse_max_depth: int = 2,
    jobs: int | None = None,
    emit_hw_ir: bool = False,
    **quant_options,
) -> Design:
    """
    Compile a model into DIR: po2 IR, hw IR, SystemVerilog, parameters and report.json.
    `cse=False` skips po2-cse (one adder per nonzero weight, to compare).
    An existing DIR is replaced only if it is a design directory (or empty), or with `force`.
    `pixels_per_cycle` P (default 1) input pixels per beat; or `images_per_second`: the
    smallest P that reaches it at `clock_mhz` (passes/to_hw/rates.py).
    `jobs`: worker processes lowering and emitting the convs (default: the CPU count, 1 for
    a small network: `default_jobs`; 1: all in this process). `emit_hw_ir`: also write the hw IR, model.hw.mlir (large: 631 MB
    for MobileNetV2 w1.0; nothing in the flow needs it).
    """

    from hashiflex.estimate import estimated_section
    from hashiflex.flow import lower_and_emit
    from hashiflex.golden.model import find_network, input_type

    # (nan and inf would also make report.json invalid JSON)
    if not (math.isfinite(clock_mhz) and 0 < clock_mhz <= MAX_CLOCK_MHZ):
        raise InputError(f"--clock-mhz must be a number in (0, {MAX_CLOCK_MHZ:g}], got {clock_mhz}")
    if not 0 <= npu_lanes <= MAX_NPU_LANES:
        raise InputError(f"--npu-lanes must be in 0..{MAX_NPU_LANES} (0: as fast as the pipeline), got {npu_lanes}")
    if levels_per_stage is not None and not 1 <= levels_per_stage <= MAX_LEVELS_PER_STAGE:
        raise InputError(f"--levels-per-stage must be in 1..{MAX_LEVELS_PER_STAGE}, got {levels_per_stage}")
    if cse_max_depth < 1:
        raise InputError(f"--cse-max-depth must be >= 1, got {cse_max_depth}")
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"--jobs must be in 1..{MAX_JOBS}, got {jobs}")
    if pixels_per_cycle is not None and images_per_second is not None:
        raise InputError("give --pixels-per-cycle or --images-per-second, not both")
    if pixels_per_cycle is not None and (isinstance(pixels_per_cycle, bool) or not
                                         isinstance(pixels_per_cycle, int) or pixels_per_cycle < 1):
        raise InputError(f"--pixels-per-cycle must be a positive integer, got {pixels_per_cycle!r}")
    if images_per_second is not None and not images_per_second > 0:
        raise InputError(f"--images-per-second must be positive, got {images_per_second!r}")
    out = Path(out)
    check_replaceable(out, force)
    module, _ = import_model(spec, progress=progress, **quant_options)
    name = find_network(module).sym_name.data
    in_t = input_type(module)
    pixels_per_cycle = _pixels_per_cycle(find_network(module), pixels_per_cycle,
                                         images_per_second, clock_mhz)
    if jobs is None:
        jobs = default_jobs(module)
    npu = npu_op(module)
    if npu is None:
        raise ModelError("the model has no final Linear classifier (the NPU); nothing to classify with")
    with atomic_dir(out) as tmp:
        (tmp / MARKER).write_text(MARKER_TEXT)
        print_ir(module, tmp / "model.po2.mlir")
        np.savez(
            tmp / "params.npz",
            npu_weights=npu.weight_matrix,
            npu_bias=np.asarray(npu.bias, dtype=np.int64),
        )
        # Layer by layer: unroll, lower, (print hw IR,) emit rtl/<module>.sv, drop (flow.py);
        # byte-identical to lower_to_hw + print_ir + emit_sv_files, one layer's IR at a time.
        with progress.step(f"lowering to hw and emitting SystemVerilog, layer by layer "
                           f"({jobs} job{'s' if jobs > 1 else ''})"):
            flow = lower_and_emit(module, tmp, hw_file=HW_FILE if emit_hw_ir else None,
                                  rtl_dir="rtl",
                                  # 0: registers placed by the delay model for clock_mhz
                                  # (passes/to_hw/delay.py)
                                  levels_per_stage=levels_per_stage or 0, clock_mhz=clock_mhz,
                                  npu_lanes=npu_lanes, pixels_per_cycle=pixels_per_cycle,
                                  progress=progress, cse=cse, cse_max_depth=cse_max_depth,
                                  jobs=jobs)
        progress.say("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in flow.phases.items())
                     + f"; {flow.hw_ops} hw ops in {flow.modules} modules")
        if flow.worker_phases:
            progress.say("worker phases (summed): " + ", ".join(
                f"{k} {v:.1f} s" for k, v in flow.worker_phases.items() if v))
        hw_report = flow.hw_report
        top = hw_report["top"]["module"]
        report = build_report(hw_report, clock_mhz)
        # Area and fmax estimated by the calibrated cell model; `hashiflex synth` measures them.
        report["synth"] = estimated_section(report, [f.stem for f in flow.sv_files],
                                            flow.features)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        manifest = design_manifest(name, top, in_t, npu, flow.top_ports, flow.sv_files,
                                   pixels_per_cycle, hw_file=HW_FILE if emit_hw_ir else None)
        (tmp / "design.json").write_text(json.dumps(manifest, indent=2) + "\n")
    progress.say(
        f"wrote {out}: {report['cycles_per_image']} cycles/image, "
        f"{report['images_per_second']:.3g} images/s at {clock_mhz:g} MHz, "
        f"{report['adders']} adders, {report['register_bits']} register bits"
    )
    return Design(out, manifest)


# Below this many conv weights a network compiles in seconds in one process; starting
# worker processes (each imports xDSL and the dialects, ~2 s) would only slow it down.
PARALLEL_MIN_WEIGHTS = 20_000


def default_jobs(module) -> int:
    """`--jobs` left out: the CPU count, or 1 for a small network (PARALLEL_MIN_WEIGHTS)."""
    import os

    from hashiflex.dialects import po2

    weights = sum(math.prod(op.weights_attr.type.get_shape()) for op in module.walk()
                  if isinstance(op, po2.Conv2dOp))
    return (os.cpu_count() or 1) if weights >= PARALLEL_MIN_WEIGHTS else 1


def _pixels_per_cycle(fn, pixels_per_cycle: int | None, images_per_second: float | None,
                      clock_mhz: float) -> int:
    """
    P checked against the input (one-line InputError), or the smallest P the network
    supports that reaches the rate asked for.
    """
    from hashiflex.passes.to_hw.rates import (RateError, check_pixels_per_cycle,
                                              pixels_for_rate, supports)

    image = fn.args[0]
    dims = image.type.dims
    height, width = (dims[1], dims[2]) if len(dims) == 3 else (1, 1)
    try:
        if images_per_second is not None:
            return pixels_for_rate(images_per_second, clock_mhz, height, width,
                                   lambda p: supports(image, list(fn.body.block.ops), p))
        return check_pixels_per_cycle(pixels_per_cycle or 1, height, width)
    except RateError as error:
        raise InputError(str(error))
