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

With `jobs` > 1 (`hashiflex compile --jobs N`) the convs, nearly all the work, go to worker
processes first (hashiflex/jobs.py `run_jobs`): each gets its conv alone as po2 text
(`standalone_conv_text`), does steps 1-3 (`lower_conv_job`) and returns what the top, the
report and the estimate need (name, ports, latency, report, adder/register counts). A conv
without lane widener or row buffer (`conv.lowers_alone`; the others are lowered here)
depends on nothing but its op, the adder levels per stage or clock target, its input lanes
and the frame, and for multicycle trees the gap between its input items, which this process
computes before any layer is lowered (multicycle.stream_intervals) and passes on. Its name is the one `NetworkLowering.unique` gives it here (the same calls, in the same order);
the stream timing, which does depend on the layers before, is computed here from the
returned latency (`conv.output_timing`). Then the loop above runs here with the convs taken
from the workers' results, so the other layers and the top are lowered in this process and
the files are byte-identical to `jobs=1` (test/e2e/test_compile_jobs.py). The hw IR
(`hw_file`) is optional: `hashiflex compile` prints it only with `--emit-hw-ir`.

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
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (this process)
    worker_phases: dict[str, float] = field(default_factory=dict)  # summed over --jobs workers
    features: dict[str, dict] = field(default_factory=dict)  # module -> module_features


class _Timer:
    def __init__(self) -> None:
        self.seconds = {p: 0.0 for p in PHASES}
        self.worker_seconds: dict[str, float] = {}

    def add(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - start
        return now


def prepare_datapath(op, layer: str, timer: _Timer, walker, cse_max_depth: int | None):
    """
    The datapath of a layer-level conv, unrolled, canonicalised, CSE'd (`cse_max_depth`
    None: no po2-cse), widths inferred; None for an op unrolled already (hand-written IR),
    whose widths are inferred in place.
    """
    from xdsl.utils.exceptions import DiagnosticException

    from hashiflex.dialects import po2
    from hashiflex.passes.po2_cse import cse_region
    from hashiflex.passes.po2_infer_widths import infer_block_widths
    from hashiflex.passes.po2_unroll import unroll_conv

    start = time.perf_counter()
    try:
        if isinstance(op, po2.UnrolledConv2dOp):
            infer_block_widths(op.body.block)
            timer.add("infer-widths", start)
            return None
        stand_in = unroll_conv(op)
        start = timer.add("unroll", start)
        walker.rewrite_region(stand_in.body)
        start = timer.add("canonicalize", start)
        if cse_max_depth is not None:
            cse_region(stand_in, cse_max_depth)
            start = timer.add("cse", start)
        infer_block_widths(stand_in.body.block)
        timer.add("infer-widths", start)
    except DiagnosticException as error:
        raise ModelError(f"layer '{layer}': {str(error).strip().splitlines()[0]}")
    return stand_in


def module_features(hw_module) -> dict:
    """
    What the area/fmax estimate (hashiflex/estimate.py) reads of a module: its adders
    (comb.add / comb.sub), their summed and largest widths, its register bits (seq.compreg),
    counted on the IR (synth.module_features counts the same in the hw IR text).
    """
    from xdsl.dialects import comb, seq

    adders = adder_bits = widest = register_bits = 0
    op = hw_module.body.block.first_op
    while op is not None:  # the linked list walked directly (block.ops' iterator is slower)
        kind = type(op)
        if kind is comb.AddOp or kind is comb.SubOp:
            (result,) = op.results
            width = result.type.width.data
            adders += 1
            adder_bits += width
            if width > widest:
                widest = width
        elif kind is seq.CompRegOp:
            (result,) = op.results
            register_bits += result.type.width.data
        op = op.next_op
    return {"adder_bits": adder_bits, "max_adder_width": widest, "adders": adders,
            "register_bits": register_bits}


def standalone_conv_text(op) -> str:
    """`op` (a layer-level conv) alone in a module, as text: what a worker rebuilds it from."""
    import io

    from xdsl.dialects import func
    from xdsl.dialects.builtin import FunctionType, ModuleOp
    from xdsl.ir import Block, Region
    from xdsl.printer import Printer

    block = Block(arg_types=[op.input.type])
    clone = op.clone(value_mapper={op.input: block.args[0]})
    block.add_ops([clone, func.ReturnOp(clone.results[0])])
    fn = func.FuncOp("layer", FunctionType.from_lists([op.input.type], [clone.results[0].type]),
                     Region(block))
    stream = io.StringIO()
    Printer(stream=stream).print_op(ModuleOp([fn]))
    return stream.getvalue()


def lower_conv_job(text: str, name: str, levels_per_stage: int, clock_mhz: float, lanes: int,
                   frame_pixels: int, input_interval: int, cse_max_depth: int | None,
                   rtl_dir: str, hw_path: str | None) -> dict:
    """
    A worker process's job (`--jobs N`): one conv layer from `standalone_conv_text`,
    prepared, lowered to its hw.module `name`, written to `rtl_dir/<name>.sv` (and its hw
    IR to `hw_path` if given); returns what the top, the report and the estimate need.
    A conv that `conv.lowers_alone` depends only on its op, the adder levels per stage (or
    the clock target), its input lanes, the frame and its input's item gap
    (`input_interval`, for multicycle trees), not on the stream timing, which the parent
    computes from the latency.
    """
    import io

    from xdsl.parser import Parser
    from xdsl.printer import Printer

    from hashiflex.backends.hw_printer import print_hw_op
    from hashiflex.backends.sv_emitter import SvFileWriter
    from hashiflex.passes.po2_canonicalize import canonicalizer
    from hashiflex.passes.to_hw import module_report
    from hashiflex.passes.to_hw.conv import ConvLowering
    from hashiflex.passes.to_hw.layer import LayerOptions
    from hashiflex.tools.registry import make_context
    from xdsl.utils.exceptions import DiagnosticException

    gc.disable()  # one collection at the end of the job (the IR is built once, then dropped)
    timer = _Timer()
    module = Parser(make_context(), text, name).parse_module()
    fn = module.body.block.first_op
    op = fn.body.block.first_op
    stand_in = prepare_datapath(op, name, timer, canonicalizer(), cse_max_depth)
    lowered = op if stand_in is None else stand_in
    start = time.perf_counter()
    try:
        options = LayerOptions(levels_per_stage=levels_per_stage, clock_mhz=clock_mhz,
                               frame_pixels=frame_pixels, lanes={lowered.input: lanes},
                               intervals={lowered.input: input_interval})
        layer = ConvLowering(lowered, name, options).build()
    except DiagnosticException as error:
        raise ModelError(f"po2-to-hw: {str(error).strip().splitlines()[0]}")
    hw_module = layer.module
    start = timer.add("po2-to-hw", start)
    if hw_path is not None:
        with open(hw_path, "w") as stream:
            stream.write("\n  ")
            print_hw_op(hw_module, stream, indent=1)
        start = timer.add("print-hw", start)
    path = SvFileWriter(Path(rtl_dir)).add(hw_module)
    start = timer.add("emit-sv", start)
    ports = io.StringIO()
    Printer(stream=ports).print_attribute(hw_module.module_type)
    result = {
        "sym_name": hw_module.sym_name.data,
        "module_type": ports.getvalue(),
        "sv": str(path),
        "latency": layer.latency,
        "report": module_report(hw_module),
        "features": module_features(hw_module),
        "hw_ops": len(hw_module.body.block.ops),
    }
    if stand_in is not None:
        stand_in.drop_all_references()
    del stand_in, hw_module, layer, lowered, op, fn, module
    gc.collect()
    timer.add("free", start)
    gc.enable()
    result["phases"] = timer.seconds
    return result


def lower_and_emit(
    module,
    out_dir: Path | str,
    *,
    hw_file: str | None = "model.hw.mlir",
    rtl_dir: str = "rtl",
    levels_per_stage: int = 2,
    clock_mhz: float = 1000.0,
    npu_lanes: int = 0,
    pixels_per_cycle: int = 1,
    progress: Progress = QUIET,
    progress_every: float = 3.0,
    cse: bool = True,
    cse_max_depth: int = 2,
    jobs: int = 1,
) -> FlowResult:
    """
    Lower the layer-level po2 `module` (one func.func, as imported) to hw and write
    `out_dir/rtl_dir/<module>.sv` (and the hw IR `out_dir/hw_file`, unless None), one layer
    at a time. The func stays in `module` (its convs are not replaced); the hw modules are
    not kept. `cse` runs po2-cse on each datapath (with `cse_max_depth`), as
    `api.lower_to_hw` does. `jobs` > 1: the convs (the bulk of the work) are lowered and
    emitted by that many worker processes (`lower_conv_job`, through hashiflex/jobs.py),
    the rest here; the files are byte-identical to `jobs=1`.
    """
    from xdsl.context import Context
    from xdsl.dialects.builtin import StringAttr
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import DiagnosticException

    from hashiflex.backends.hw_printer import print_hw_op
    from hashiflex.backends.sv_emitter import SvFileWriter
    from hashiflex.backends.verilator import ports_of
    from hashiflex.dialects import po2
    from hashiflex.passes import hardening_pipeline
    from hashiflex.passes.po2_canonicalize import canonicalizer
    from hashiflex.passes.to_hw import NetworkLowering, design_report_of, module_report
    from hashiflex.passes.to_hw.conv import lowers_alone, output_timing
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
    cse_depth = None if cse_pass is None else cse_pass.max_depth

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

    def lowering_error(error: DiagnosticException) -> ModelError:
        return ModelError(f"po2-to-hw: {str(error).strip().splitlines()[0]}")

    # The layers that become modules, for the progress count: every kind the lowering
    # table knows but flatten and select_channels, which are only wiring.
    wiring = (po2.FlattenOp, po2.SelectChannelsOp)
    layer_kinds = tuple(kind for kind in LOWERINGS if kind not in wiring)
    convs = (po2.Conv2dOp, po2.UnrolledConv2dOp)
    total = sum(1 for op in fn.body.block.ops if isinstance(op, layer_kinds))
    try:
        net = NetworkLowering(fn, to_hw.levels_per_stage, to_hw.npu_lanes, to_hw.top_name,
                              to_hw.pixels_per_cycle, to_hw.clock_mhz)
    except DiagnosticException as error:
        raise lowering_error(error)
    sv = SvFileWriter(out_dir / rtl_dir)
    sv_files: list[Path] = []
    reports: list[dict] = []
    features: dict[str, dict] = {}
    top_name, top_ports = "", []
    hw_ops = modules = index = 0
    last_say = time.perf_counter()
    hw_parts = out_dir / f".{hw_file}.parts" if hw_file is not None else None

    # --jobs: every conv lowered and emitted by a worker first (their modules depend on
    # nothing but the op), named as `net.lower` will name them below (the same `unique`
    # calls in the same order, undone afterwards).
    remote: dict[str, dict] = {}
    if jobs > 1:
        from hashiflex.jobs import Job, run_jobs

        start = time.perf_counter()
        used_names = set(net.used_names)
        conv_jobs = []
        if hw_parts is not None:
            hw_parts.mkdir(exist_ok=True)
        for op in net.layers():
            if isinstance(op, wiring):
                continue
            name = net.unique(layer_name(op))
            if isinstance(op, convs) and lowers_alone(op, net.options):
                hw_path = None if hw_parts is None else str(hw_parts / f"{name}.mlir")
                conv_jobs.append(Job(name, lower_conv_job, (
                    standalone_conv_text(op), name, to_hw.levels_per_stage, to_hw.clock_mhz,
                    net.options.lanes_of(op.input), net.options.frame_pixels,
                    net.options.intervals.get(op.input, 1), cse_depth,
                    str(out_dir / rtl_dir), hw_path)))
        net.used_names = used_names
        outcome = run_jobs(conv_jobs, workers=jobs, label="lower + emit convs",
                           progress=progress.enabled, stream=progress.stream)
        if outcome.failures:
            failure = next(iter(outcome.failures.values()))
            raise ModelError(f"layer '{failure.name}': "
                             + failure.message.removeprefix("ModelError: "))
        remote = {name: result.value for name, result in outcome.results.items()}
        timer.add("workers (wall)", start)
        for result in remote.values():
            for phase, seconds in result["phases"].items():
                timer.worker_seconds[phase] = timer.worker_seconds.get(phase, 0.0) + seconds
    context = None

    def record(report: dict | None, hw_module) -> None:
        nonlocal top_name, top_ports
        if report is None:
            return
        reports.append(report)
        if report.get("kind") == "top":
            top_name = hw_module.sym_name.data
            top_ports = [{"name": p.name, "width": p.width, "dir": p.direction}
                         for p in ports_of(hw_module)]

    def write(hw_module, stream) -> int:
        """Print, emit and record one module; returns its op count."""
        start = time.perf_counter()
        if stream is not None:
            stream.write("\n  ")
            print_hw_op(hw_module, stream, indent=1)
            start = timer.add("print-hw", start)
        path = sv.add(hw_module)
        if path is not None:
            sv_files.append(path)
        start = timer.add("emit-sv", start)
        features[hw_module.sym_name.data] = module_features(hw_module)
        timer.add("features", start)
        record(module_report(hw_module), hw_module)
        return len(hw_module.body.block.ops)

    def take_remote(op, stream) -> tuple[str, int]:
        """Record a conv a worker lowered: the top's view of it, its file, report, IR text."""
        nonlocal context
        from hashiflex.tools.registry import make_context

        name = net.unique(layer_name(op))
        result = remote[name]
        context = context or make_context()
        module_type = Parser(context, result["module_type"]).parse_attribute()
        symbol = StringAttr(result["sym_name"])
        net.record(op, name, symbol, module_type, result["latency"],
                   output_timing(op, result["latency"], net.options))
        path = sv.declare(symbol, module_type)
        if str(path) != result["sv"]:  # the same namespace discipline in both processes
            raise ModelError(f"layer '{name}': the worker wrote {result['sv']}, not {path}")
        sv_files.append(path)
        features[result["sym_name"]] = result["features"]
        if result["report"] is not None:
            reports.append(result["report"])
        if stream is not None:
            part = hw_parts / f"{name}.mlir"
            stream.write(part.read_text())
            part.unlink()
        return name, result["hw_ops"]

    # Cycle collections during the build only walk the (growing) live IR again and again:
    # the IR is built once and freed as a whole, so collect once per layer instead, and
    # freeze what exists before the loop (torch, the model, the func: hundreds of
    # thousands of objects) so that each collection walks only the layer's objects.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    stream = None
    try:
        if hw_file is not None:
            stream = open(out_dir / hw_file, "w")
            stream.write("builtin.module {")
        for op in net.layers():
            layer_start = time.perf_counter()
            name = layer_name(op)
            if isinstance(op, layer_kinds):
                index += 1
            if isinstance(op, convs) and net.peek_unique(layer_name(op)) in remote:
                start = time.perf_counter()
                name, n_ops = take_remote(op, stream)
                timer.add("collect", start)
                hw_ops += n_ops
                modules += 1
                continue  # the workers said their progress
            stand_in = prepare_datapath(op, name, timer, walker, cse_depth) if isinstance(
                op, convs) else None
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
        if stream is not None:
            stream.write("\n}\n")
    finally:
        if stream is not None:
            stream.close()
        if hw_parts is not None and hw_parts.exists():
            for part in hw_parts.iterdir():
                part.unlink()
            hw_parts.rmdir()
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    # The multicycle paths of rate-aware layers, for a timing flow (to_hw/multicycle.py).
    (out_dir / rtl_dir / "constraints.sdc").write_text(sdc_text(reports))
    phases = {k: v for k, v in timer.seconds.items() if v or k in PHASES}
    return FlowResult(
        sv_files=sv_files,
        hw_report=design_report_of(reports),
        top=top_name,
        top_ports=top_ports,
        modules=modules,
        hw_ops=hw_ops,
        phases=phases,
        worker_phases=dict(timer.worker_seconds),
        features=features,
    )
