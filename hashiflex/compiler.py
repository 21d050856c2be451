"""
`hashiflex compile`: a model to a design directory (po2 IR, hw IR, SystemVerilog, NPU
parameters, report.json, design.json). Quantisation and import are `importing.py`'s, the
lowering and emission layer by layer `flow.py`'s; this module writes the directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashiflex.design_dir import Design, atomic_dir, design_manifest, print_ir
from hashiflex.errors import InputError, ModelError
from hashiflex.importing import import_model
from hashiflex.npu_weights import npu_op
from hashiflex.progress import QUIET, Progress
from hashiflex.report import build_report


def compile(
    spec: str,
    out: Path | str,
    *,
    clock_mhz: float = 1000.0,
    levels_per_stage: int | None = None,
    npu_lanes: int = 0,
    progress: Progress = QUIET,
    **quant_options,
) -> Design:
    """Compile a model into DIR: po2 IR, hw IR, SystemVerilog, parameters and report.json."""
    from hashiflex.flow import lower_and_emit
    from hashiflex.golden.model import find_network, input_type

    if clock_mhz <= 0:
        raise InputError(f"--clock-mhz must be positive, got {clock_mhz}")
    if npu_lanes < 0 or (levels_per_stage is not None and levels_per_stage < 1):
        raise InputError("--npu-lanes must be >= 0 and --levels-per-stage >= 1")
    # None: registers placed by the delay model for clock_mhz (passes/to_hw/delay.py).
    levels_per_stage = levels_per_stage or 0
    out = Path(out)
    module, _ = import_model(spec, progress=progress, **quant_options)
    name = find_network(module).sym_name.data
    in_t = input_type(module)
    npu = npu_op(module)
    if npu is None:
        raise ModelError("the model has no final Linear classifier (the NPU); nothing to classify with")
    with atomic_dir(out) as tmp:
        print_ir(module, tmp / "model.po2.mlir")
        np.savez(
            tmp / "params.npz",
            npu_weights=npu.weight_matrix(),
            npu_bias=np.asarray(list(npu.bias.iter_values()), dtype=np.int64),
        )
        # Layer by layer: unroll, lower, print hw IR, emit rtl/<module>.sv, drop (flow.py);
        # byte-identical to lower_to_hw + print_ir + emit_sv_files, one layer's IR at a time.
        with progress.step("lowering to hw and emitting SystemVerilog, layer by layer"):
            flow = lower_and_emit(module, tmp, hw_file="model.hw.mlir", rtl_dir="rtl",
                                  levels_per_stage=levels_per_stage, npu_lanes=npu_lanes, clock_mhz=clock_mhz,
                                  progress=progress)
        progress.say("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in flow.phases.items())
                     + f"; {flow.hw_ops} hw ops in {flow.modules} modules")
        hw_report = flow.hw_report
        top = hw_report["top"]["module"]
        report = build_report(hw_report, clock_mhz)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        manifest = design_manifest(name, top, in_t, npu, flow.top_ports, flow.sv_files)
        (tmp / "design.json").write_text(json.dumps(manifest, indent=2) + "\n")
    progress.say(
        f"wrote {out}: {report['cycles_per_image']} cycles/image, "
        f"{report['images_per_second']:.3g} images/s at {clock_mhz:g} MHz, "
        f"{report['adders']} adders, {report['register_bits']} register bits"
    )
    return Design(out, manifest)
