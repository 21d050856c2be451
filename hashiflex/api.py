"""
The Python API of the flow, with the same shape as the `hashiflex` command:

    module, quantized = import_model("tiny_cnn")            # torch -> po2 IR
    result = golden(module, images)                          # golden model
    design = compile("tiny_cnn", "out/tiny")                 # po2 -> hw -> SystemVerilog
    sim = simulate("out/tiny", images, check=True)           # Verilator, bit-exact check

Every user-facing failure raises a `hashiflex.errors.HashiflexError` with one line that
names the file, layer or option at fault.

This module only gathers the entry points; each job lives in its own module:

    loading.py      SPEC -> torch model; .npy image/array files
    importing.py    quantise and import to po2 IR, the golden model (`import`, `golden`)
    design_dir.py   the design directory: atomic writes, IR files, design.json
    compiler.py     `compile`: a model to a design directory
    report.py       report.json
    packing.py      fields <-> port words (pixels, logits), shared with the Verilator backend
    npu_weights.py  NPU weight files, checks and the write-port sequence
    simulation.py   `simulate`: the RTL in Verilator against the golden model
    demo.py         `demo`
    finetune.py     `finetune`, `program`

and `lower_to_hw` below runs the whole-module hardening pipeline (`compile` runs the same
passes layer by layer, in flow.py).
"""

from __future__ import annotations

from hashiflex.compiler import compile
from hashiflex.demo import DEMO_EXAMPLE, demo
from hashiflex.design_dir import (
    DESIGN_FORMAT,
    Design,
    atomic_dir,
    atomic_file,
    open_design,
    parse_ir,
    print_ir,
)
from hashiflex.errors import ModelError
from hashiflex.finetune import finetune, program
from hashiflex.importing import (
    check_int64_range,
    check_quant_options,
    golden,
    golden_command,
    import_command,
    import_model,
)
from hashiflex.loading import (
    LoadedModel,
    check_images,
    default_calibration,
    load_images,
    load_model,
    load_npy,
    parse_shape,
)
from hashiflex.npu_weights import (
    check_npu_weights,
    load_weights,
    npu_write_sequence,
    padded_weights,
)
from hashiflex.packing import pack_fields, pack_pixels, split_fields
from hashiflex.progress import QUIET, Progress
from hashiflex.report import build_report, top_ports
from hashiflex.simulation import SimulationResult, build_simulator, golden_with_schedule, simulate

__all__ = [
    "DEMO_EXAMPLE",
    "DESIGN_FORMAT",
    "Design",
    "LoadedModel",
    "SimulationResult",
    "atomic_dir",
    "atomic_file",
    "build_report",
    "build_simulator",
    "check_images",
    "check_int64_range",
    "check_npu_weights",
    "check_quant_options",
    "compile",
    "default_calibration",
    "demo",
    "finetune",
    "golden",
    "golden_command",
    "golden_with_schedule",
    "import_command",
    "import_model",
    "load_images",
    "load_model",
    "load_npy",
    "load_weights",
    "lower_to_hw",
    "npu_write_sequence",
    "open_design",
    "pack_fields",
    "pack_pixels",
    "padded_weights",
    "parse_ir",
    "parse_shape",
    "print_ir",
    "program",
    "simulate",
    "split_fields",
    "top_ports",
]


def lower_to_hw(module, *, levels_per_stage: int = 2, npu_lanes: int = 0,
                pixels_per_cycle: int = 1, clock_mhz: float = 1000.0, progress: Progress = QUIET,
                cse: bool = True, cse_max_depth: int = 2):
    """Run the hardening pipeline in place: unroll, canonicalise, [po2-cse,] infer widths, to hw."""
    from hashiflex.passes import hardening_pipeline
    from hashiflex.tools.registry import make_context
    from xdsl.utils.exceptions import DiagnosticException

    ctx = make_context()
    for pass_ in hardening_pipeline(cse=cse, cse_max_depth=cse_max_depth,
                                    levels_per_stage=levels_per_stage, npu_lanes=npu_lanes,
                                    pixels_per_cycle=pixels_per_cycle, clock_mhz=clock_mhz):
        with progress.step(f"pass {pass_.name}"):
            try:
                pass_.apply(ctx, module)
            except DiagnosticException as error:
                raise ModelError(f"{pass_.name}: {str(error).strip().splitlines()[0]}")
    return module
