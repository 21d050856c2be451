"""
The streaming compile flow: po2 network -> hw IR text and SystemVerilog, one layer at a time.

Why: the whole-module pipeline (`api.lower_to_hw`: po2-unroll, po2-canonicalize,
po2-cse, po2-infer-widths, po2-to-hw over the whole module, then print and emit) holds every
unrolled datapath and every hw module at once. xDSL holds about 1 KB per op, and an
unrolled MobileNetV2 is millions of ops (width 0.25: 1.2M hw ops and 2.1 GB; width 1.0
about ten times that). Nothing in the lowering needs two layers' IR at the same time: a
layer's module depends only on its own op, and the top needs only the names, port types,
latencies and stream timings of the layers. So this flow walks the layer-level func once
and, for each layer:

1. unrolls it just in time (a `po2.conv2d` becomes a *detached* `po2.unrolled_conv2d` with
   the same operand, `po2_unroll.unroll_conv`), canonicalises its datapath region and
   infers its widths (the same patterns and analysis as the passes, on that region only);
2. lowers it to its `hw.module` (`NetworkLowering.lower` of passes/to_hw/network.py, the
   loop the `po2-to-hw` pass runs too, which keeps only what the top needs of a layer);
3. prints the module's hw IR (`backends/hw_printer.HwPrinter`: xDSL's text, faster) into `model.hw.mlir` (inside one `builtin.module { ... }`, in
   the text the whole-module printer writes: every `hw.module` is IsolatedFromAbove, so its
   SSA names do not depend on the modules printed before it), writes its
   `rtl/<module>.sv` (`sv_emitter.SvFileWriter`, names given in the same order), records
   its report (the module's `hashiflex.report`, as `design_report` reads it);
4. drops it: the unrolled op releases its use of the conv's operand, and the module and the
   datapath become unreachable garbage, freed by a cycle collection after each layer
   (automatic collection is off during the loop and what existed before it is frozen, so
   each collection walks only that layer's objects).

The top comes out last, as in the pass. Peak memory is then one layer's IR
(plus the layer-level func and the torch model), not the network's; the output is byte
identical to the whole-module path (test/passes/test_streaming_flow.py). `Po2ToHwPass`
stays the whole-module pass of `po2-opt`.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

from hashiflex.errors import ModelError
from hashiflex.progress import QUIET, Progress

PHASES = ("unroll", "canonicalize", "cse", "infer-widths", "po2-to-hw", "print-hw", "emit-sv", "free")


@dataclass
class FlowResult:
    """What `lower_and_emit` wrote and measured."""

    sv_files: list[Path]
    hw_report: dict  # as to_hw.design_report
    top: str
    top_ports: list[dict]  # as api._top_ports
    modules: int = 0
    hw_ops: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase


class _Timer:
    def __init__(self) -> None:
        self.seconds = {p: 0.0 for p in PHASES}

    def add(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - start
        return now


def lower_and_emit(
    module,
    out_dir: Path | str,
    *,
    hw_file: str = "model.hw.mlir",
    rtl_dir: str = "rtl",
    levels_per_stage: int = 2,
    clock_mhz: float = 1000.0,
    npu_lanes: int = 0,
    pixels_per_cycle: int = 1,
    progress: Progress = QUIET,
    progress_every: float = 3.0,
    cse: bool = True,
    cse_max_depth: int = 2,
) -> FlowResult:
    """
    Lower the layer-level po2 `module` (one func.func, as imported) to hw and write
    `out_dir/hw_file` and `out_dir/rtl_dir/<module>.sv`, one layer at a time. The func
    stays in `module` (its convs are not replaced); the hw modules are not kept. `cse`
    runs po2-cse on each datapath (with `cse_max_depth`), as `api.lower_to_hw` does.
    """
    from xdsl.context import Context
    from xdsl.utils.exceptions import DiagnosticException

    from hashiflex.backends.hw_printer import print_hw_op
    from hashiflex.backends.sv_emitter import SvFileWriter
    from hashiflex.backends.verilator import ports_of
    from hashiflex.dialects import po2
    from hashiflex.passes import hardening_pipeline
    from hashiflex.passes.po2_canonicalize import canonicalizer
    from hashiflex.passes.po2_cse import cse_region
    from hashiflex.passes.po2_infer_widths import infer_block_widths
    from hashiflex.passes.po2_unroll import unroll_conv
    from hashiflex.passes.to_hw import NetworkLowering, design_report_of, module_report
    from hashiflex.passes.to_hw.multicycle import sdc_text
    from hashiflex.passes.to_hw.network import LOWERINGS, layer_name

    out_dir = Path(out_dir)
    timer = _Timer()
    try:
        fn = po2.network_func(module)
    except ValueError as err:
        raise ModelError(f"po2-to-hw: {err}") from None
    # The hardening pipeline, run one layer at a time: each pass in its per-layer form.
    passes = {p.name: p for p in hardening_pipeline(
        cse=cse, cse_max_depth=cse_max_depth, levels_per_stage=levels_per_stage,
        npu_lanes=npu_lanes, pixels_per_cycle=pixels_per_cycle, clock_mhz=clock_mhz)}
    canonicalize, cse_pass, to_hw = (passes["po2-canonicalize"], passes.get("po2-cse"),
                                     passes["po2-to-hw"])

    # Layer-level canonicalisation first (no-op requants): on the layer-level func it is
    # what the whole-module pass does outside the datapaths, which are canonicalised one
    # by one below, by the same patterns.
    start = time.perf_counter()
    try:
        canonicalize.apply(Context(), module)
    except DiagnosticException as error:
        raise ModelError(f"po2-canonicalize: {str(error).strip().splitlines()[0]}")
    timer.add("canonicalize", start)
    walker = canonicalizer()

    def unrolled(op, layer: str):
        """The datapath of a layer-level conv, unrolled, canonicalised, widths inferred."""
        start = time.perf_counter()
        try:
            if isinstance(op, po2.UnrolledConv2dOp):  # unrolled already (hand-written IR)
                infer_block_widths(op.body.block)
                timer.add("infer-widths", start)
                return None
            stand_in = unroll_conv(op)
            start = timer.add("unroll", start)
            walker.rewrite_region(stand_in.body)
            start = timer.add("canonicalize", start)
            if cse_pass is not None:
                cse_region(stand_in, cse_pass.max_depth)
                start = timer.add("cse", start)
            infer_block_widths(stand_in.body.block)
            timer.add("infer-widths", start)
        except DiagnosticException as error:
            raise ModelError(f"layer '{layer}': {str(error).strip().splitlines()[0]}")
        return stand_in

    def lowering_error(error: DiagnosticException) -> ModelError:
        return ModelError(f"po2-to-hw: {str(error).strip().splitlines()[0]}")

    # The layers that become modules, for the progress count: every kind the lowering
    # table knows but flatten and select_channels, which are only wiring.
    layer_kinds = tuple(kind for kind in LOWERINGS
                        if kind not in (po2.FlattenOp, po2.SelectChannelsOp))
    total = sum(1 for op in fn.body.block.ops if isinstance(op, layer_kinds))
    try:
        net = NetworkLowering(fn, to_hw.levels_per_stage, to_hw.npu_lanes, to_hw.top_name,
                              to_hw.pixels_per_cycle, to_hw.clock_mhz)
    except DiagnosticException as error:
        raise lowering_error(error)
    sv = SvFileWriter(out_dir / rtl_dir)
    sv_files: list[Path] = []
    reports: list[dict] = []
    top_name, top_ports = "", []
    hw_ops = modules = index = 0
    last_say = time.perf_counter()

    def write(hw_module, stream) -> int:
        """Print, emit and record one module; returns its op count."""
        nonlocal top_name, top_ports
        start = time.perf_counter()
        stream.write("\n  ")
        print_hw_op(hw_module, stream, indent=1)
        start = timer.add("print-hw", start)
        path = sv.add(hw_module)
        if path is not None:
            sv_files.append(path)
        timer.add("emit-sv", start)
        report = module_report(hw_module)
        if report is not None:
            reports.append(report)
            if report.get("kind") == "top":
                top_name = hw_module.sym_name.data
                top_ports = [{"name": p.name, "width": p.width, "dir": p.direction}
                             for p in ports_of(hw_module)]
        return len(hw_module.body.block.ops)

    # Cycle collections during the build only walk the (growing) live IR again and again:
    # the IR is built once and freed as a whole, so collect once per layer instead, and
    # freeze what exists before the loop (torch, the model, the func: hundreds of
    # thousands of objects) so that each collection walks only the layer's objects.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        with open(out_dir / hw_file, "w") as stream:
            stream.write("builtin.module {")
            for op in net.layers():
                layer_start = time.perf_counter()
                name = layer_name(op)
                if isinstance(op, layer_kinds):
                    index += 1
                stand_in = unrolled(op, name) if isinstance(
                    op, (po2.Conv2dOp, po2.UnrolledConv2dOp)) else None
                start = time.perf_counter()
                try:
                    hw_module = net.lower(op, stand_in).module
                except DiagnosticException as error:
                    raise lowering_error(error)
                timer.add("po2-to-hw", start)
                if hw_module is None:  # wiring
                    continue
                n_ops = write(hw_module, stream)
                hw_ops += n_ops
                modules += 1
                # Drop the layer: the unrolled op gives back its use of the conv's operand
                # (the only link from the func to it); the rest is unreachable cycles.
                if stand_in is not None:
                    stand_in.drop_all_references()
                del stand_in, hw_module
                start = time.perf_counter()
                gc.collect()
                now = timer.add("free", start)
                if progress.enabled and (now - last_say >= progress_every or n_ops > 200000):
                    last_say = now
                    progress.say(f"layer {index}/{total} {name}: "
                                 f"{now - layer_start:.1f} s ({n_ops} hw ops)")
            start = time.perf_counter()
            try:
                top = net.top()
            except DiagnosticException as error:
                raise lowering_error(error)
            timer.add("po2-to-hw", start)
            hw_ops += write(top, stream)
            modules += 1
            stream.write("\n}\n")
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    # The multicycle paths of rate-aware layers, for a timing flow (to_hw/multicycle.py).
    (out_dir / rtl_dir / "constraints.sdc").write_text(sdc_text(reports))
    return FlowResult(
        sv_files=sv_files,
        hw_report=design_report_of(reports),
        top=top_name,
        top_ports=top_ports,
        modules=modules,
        hw_ops=hw_ops,
        phases=dict(timer.seconds),
    )
