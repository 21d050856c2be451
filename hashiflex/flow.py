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
   the same operand, `po2_unroll.unroll_conv`), canonicalises its datapath region, shares
   subexpressions across its channels (`po2_cse.cse_region`, unless `cse=False`) and
   infers its widths (the same patterns and analysis as the passes, on that region only);
2. lowers it to its `hw.module` (`po2_to_hw.NetworkLowering.iter_modules`, which yields
   each module before building the next and keeps only what the top needs);
3. prints the module's hw IR (`backends/hw_printer.HwPrinter`: xDSL's text, faster) into `model.hw.mlir` (inside one `builtin.module { ... }`, in
   the text the whole-module printer writes: every `hw.module` is IsolatedFromAbove, so its
   SSA names do not depend on the modules printed before it), writes its
   `rtl/<module>.sv` (`sv_emitter.SvFileWriter`, names given in the same order), records
   its report (the module's `hashiflex.report`, as `design_report` reads it);
4. drops it: the unrolled op releases its use of the conv's operand, and the module and the
   datapath become unreachable garbage, freed by a cycle collection after each layer
   (automatic collection is off during the loop and what existed before it is frozen, so
   each collection walks only that layer's objects).

The top and the NPU come out last, as in the pass. Peak memory is then one layer's IR
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
    hw_report: dict  # as po2_to_hw.design_report
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


def _canonicalize_patterns():
    from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriteWalker

    from hashiflex.passes import po2_canonicalize as pc

    # The pattern list of Po2CanonicalizePass.apply, in its order.
    patterns = [
        pc.DeadScalarOp(), pc.ShlByZero(), pc.SingleOperandSum(), pc.FoldSumConstants(),
        pc.AddSubZero(), pc.NegNeg(), pc.FlattenNestedSum(), pc.MergeAddOfSums(),
        pc.NoOpRequant(),
    ]
    return PatternRewriteWalker(GreedyRewritePatternApplier(patterns, dce_enabled=False),
                                walk_reverse=True)


def lower_and_emit(
    module,
    out_dir: Path | str,
    *,
    hw_file: str = "model.hw.mlir",
    rtl_dir: str = "rtl",
    levels_per_stage: int = 2,
    npu_lanes: int = 0,
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
    from xdsl.dialects import func
    from xdsl.utils.exceptions import DiagnosticException

    from hashiflex.backends.hw_printer import print_hw_op
    from hashiflex.backends.sv_emitter import SvFileWriter
    from hashiflex.backends.verilator import ports_of
    from hashiflex.dialects import po2
    from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
    from hashiflex.passes.po2_cse import cse_region
    from hashiflex.passes.po2_infer_widths import infer_block_widths
    from hashiflex.passes.po2_to_hw import (
        NetworkLowering,
        Po2ToHwPass,
        design_report_of,
        module_report,
    )
    from hashiflex.passes.po2_unroll import unroll_conv

    out_dir = Path(out_dir)
    timer = _Timer()
    funcs = [f for f in module.ops if isinstance(f, func.FuncOp)]
    if len(funcs) != 1:
        raise ModelError(f"po2-to-hw: expects exactly one func.func, found {len(funcs)}")
    fn = funcs[0]

    # Layer-level canonicalisation first (no-op requants): on the layer-level func it is
    # what the whole-module pass does outside the datapaths, which are canonicalised one
    # by one below.
    start = time.perf_counter()
    try:
        Po2CanonicalizePass().apply(Context(), module)
    except DiagnosticException as error:
        raise ModelError(f"po2-canonicalize: {str(error).strip().splitlines()[0]}")
    timer.add("canonicalize", start)

    walker = _canonicalize_patterns()
    layer_kinds = (po2.Conv2dOp, po2.UnrolledConv2dOp, po2.RequantOp, po2.ResidualAddOp,
                   po2.AvgPoolOp, po2.NpuLinearOp)
    total = sum(1 for op in fn.body.block.ops if isinstance(op, layer_kinds))
    state = {"unrolled": None, "layer": "", "index": 0, "start": 0.0}

    def prepare(op):
        layer = op.properties.get("layer")
        state["layer"] = getattr(layer, "data", op.name)
        state["start"] = time.perf_counter()
        if isinstance(op, layer_kinds):
            state["index"] += 1
        if isinstance(op, po2.UnrolledConv2dOp):  # unrolled already (hand-written IR)
            start = time.perf_counter()
            infer_block_widths(op.body.block)
            timer.add("infer-widths", start)
        if not isinstance(op, po2.Conv2dOp):
            return op
        start = time.perf_counter()
        try:
            unrolled = unroll_conv(op)
            start = timer.add("unroll", start)
            walker.rewrite_region(unrolled.body)
            start = timer.add("canonicalize", start)
            if cse:
                cse_region(unrolled, cse_max_depth)
                start = timer.add("cse", start)
            infer_block_widths(unrolled.body.block)
            timer.add("infer-widths", start)
        except DiagnosticException as error:
            raise ModelError(f"layer '{state['layer']}': {str(error).strip().splitlines()[0]}")
        state["unrolled"] = unrolled
        return unrolled

    options = Po2ToHwPass(levels_per_stage=levels_per_stage, npu_lanes=npu_lanes)
    lowering = NetworkLowering(fn, options, prepare=prepare)
    sv = SvFileWriter(out_dir / rtl_dir)
    sv_files: list[Path] = []
    reports: list[dict] = []
    top_name, top_ports = "", []
    hw_ops = modules = 0
    last_say = time.perf_counter()
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
            modules_iter = lowering.iter_modules()
            while True:
                start = time.perf_counter()
                before = sum(timer.seconds[p] for p in ("unroll", "canonicalize", "cse", "infer-widths"))
                try:
                    hw_module = next(modules_iter, None)
                except DiagnosticException as error:
                    raise ModelError(f"po2-to-hw: {str(error).strip().splitlines()[0]}")
                if hw_module is None:
                    break
                # The unroll, canonicalisation and widths of this layer ran inside `next`.
                after = sum(timer.seconds[p] for p in ("unroll", "canonicalize", "cse", "infer-widths"))
                now = time.perf_counter()
                timer.seconds["po2-to-hw"] += now - start - (after - before)
                start = now
                stream.write("\n  ")
                print_hw_op(hw_module, stream, indent=1)
                start = timer.add("print-hw", start)
                path = sv.add(hw_module)
                if path is not None:
                    sv_files.append(path)
                start = timer.add("emit-sv", start)
                report = module_report(hw_module)
                if report is not None:
                    reports.append(report)
                    if report.get("kind") == "top":
                        top_name = hw_module.sym_name.data
                        top_ports = [{"name": p.name, "width": p.width, "dir": p.direction}
                                     for p in ports_of(hw_module)]
                n_ops = len(hw_module.body.block.ops)
                hw_ops += n_ops
                modules += 1
                # Drop the layer: the unrolled op gives back its use of the conv's operand
                # (the only link from the func to it); the rest is unreachable cycles.
                unrolled, state["unrolled"] = state["unrolled"], None
                if unrolled is not None:
                    unrolled.drop_all_references()
                    del unrolled
                del hw_module
                start = time.perf_counter()
                gc.collect()
                now = timer.add("free", start)
                if progress.enabled and (now - last_say >= progress_every or n_ops > 200000):
                    last_say = now
                    progress.say(
                        f"layer {state['index']}/{total} {state['layer']}: "
                        f"{now - state['start']:.1f} s ({n_ops} hw ops)"
                    )
            stream.write("\n}\n")
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    return FlowResult(
        sv_files=sv_files,
        hw_report=design_report_of(reports),
        top=top_name,
        top_ports=top_ports,
        modules=modules,
        hw_ops=hw_ops,
        phases=dict(timer.seconds),
    )
