"""
Rate-aware registers: multicycle adder trees for layers whose input is slow (issue 10).

A layer whose input items arrive at most every k cycles (after stride-2 layers, at 1x1
spatial size: `StreamTiming` knows when every item can exist) does not need pipeline
registers inside its adder trees: its datapath inputs are registers that change only when
an item is accepted, so they are held for at least k cycles. The tree is built purely
combinational, a register samples its result every cycle, and the output is declared
valid `cycles` = ceil(path delay / period) cycles after the input was taken (<= k), when
the slow path has settled. The static timing flow must know it: `sdc_text` writes
`set_multicycle_path -setup N` / `-hold N-1` from the held input registers to the sample
registers into `rtl/constraints.sdc` (issue 9's synth flow times modules with ABC only and
does not read it yet).

Applied to pointwise (1x1) convolutions with one lane under a clock target (no
`--levels-per-stage`), when the input interval k is at least `MIN_INTERVAL` cycles and the
settled path (bounded from the region before building: `region_path`) needs N <= k
cycles; otherwise the layer is pipelined as usual. Bit-exactness
is unchanged (a simulator's combinational logic settles at once); the latency changes by
`cycles` minus the pipeline registers it replaces, and the report carries it.
"""

from __future__ import annotations

import math

import numpy as np

from hashiflex.passes.to_hw import delay
from hashiflex.passes.to_hw.timing import StreamTiming

#: Smallest input interval (cycles) for which a layer's trees are made multicycle
#: (the result is sampled after N <= k cycles: the inputs are still held at that edge).
MIN_INTERVAL = 2
#: Register-name suffixes the SDC patterns match (held inputs, result samples).
HELD_SUFFIX = "_line_buf_"
SAMPLE_SUFFIX = "_mc_sample"


#: `levels_per_stage` of a multicycle datapath: no pipeline register inside.
UNPIPELINED = 1 << 30


def multicycle_plan(op, geo, options) -> tuple[int, int]:
    """(k, N): the input interval k of conv `op` and the cycles N its unpipelined datapath
    needs, if its trees are made multicycle, else (0, 1): a pointwise conv, one lane in and
    out, registers placed for a clock target (no `--levels-per-stage`), input items at
    least MIN_INTERVAL cycles apart, N <= k."""
    from hashiflex.dialects import po2

    if not isinstance(op, po2.UnrolledConv2dOp):  # windowed pooling reuses ConvLowering
        return 0, 1
    if options.levels_per_stage or not geo.pointwise or geo.lanes != 1 or geo.out_lanes != 1:
        return 0, 1
    src = options.streams.get(op.input)
    if src is None:
        return 0, 1
    k = input_interval(src)
    if k < MIN_INTERVAL:
        return 0, 1
    levels, width = region_path(op.body.block)
    n = settle_cycles(levels, width, options.clock_mhz)
    return (k, n) if n <= k else (0, 1)


def multicycle_settle(op, geo, options) -> int | None:
    """The cycles N the unpipelined trees of conv `op` would need, if it is a candidate for
    multicycle trees whatever its input's timing (`multicycle_plan` then compares N with
    the input interval); None otherwise. For lowerings done without the stream timing
    (hashiflex/flow.py's worker processes)."""
    from hashiflex.dialects import po2

    if not isinstance(op, po2.UnrolledConv2dOp):
        return None
    if options.levels_per_stage or not geo.pointwise or geo.lanes != 1 or geo.out_lanes != 1:
        return None
    levels, width = region_path(op.body.block)
    return settle_cycles(levels, width, options.clock_mhz)


def region_path(block) -> tuple[int, int]:
    """An upper bound on the adder levels of an unrolled region's longest path and on its
    adders' width (the result types' widths; constant low zeros not discounted)."""
    from hashiflex.dialects import po2

    depth: dict = {}
    levels = width = 0
    for op in block.ops:
        ins = max((depth.get(v, 0) for v in op.operands), default=0)
        if isinstance(op, po2.SumOp):
            d = ins + max(0, (len(op.inputs) - 1).bit_length())
        elif isinstance(op, (po2.AddOp, po2.SubOp, po2.NegOp)):
            d = ins + 1
        elif isinstance(op, po2.RescaleOp):
            d = ins + 2  # the rounding adder, the clamp's comparators
        else:
            d = ins
        for r in op.results:
            depth[r] = d
            w = getattr(r.type, "width", None)
            if d > ins and w is not None:
                width = max(width, w.data)
        levels = max(levels, d)
    return levels, max(width, 1)


def input_interval(src: StreamTiming) -> int:
    """The fewest cycles between two consecutive items of stream `src` (two images long,
    minus the spread of its latency)."""
    items = np.arange(2 * src.per_frame + 1)
    need = src.needed(items)
    if len(need) < 2:
        return 1
    return max(1, int(np.diff(need).min()) - (src.lat_hi - src.lat_lo))


def settle_cycles(levels: int, carry_width: int, clock_mhz: float) -> int:
    """Cycles a combinational path of `levels` adder levels (plus the register overhead)
    needs at `clock_mhz` (at least 1)."""
    path = delay.adder_path_ns(levels, carry_width) + delay.REGISTER_OVERHEAD_NS
    return max(1, math.ceil(path / delay.period_ns(clock_mhz) - 1e-9))


def sdc_text(reports: list[dict]) -> str:
    """`rtl/constraints.sdc`: the multicycle paths of the layers that have them."""
    lines = ["# Multicycle paths of HaShiFlex layers whose inputs are held for several cycles",
             "# (passes/to_hw/multicycle.py): held input registers -> result sample registers."]
    for report in reports:
        n = report.get("multicycle_cycles")
        if not n or n < 2:
            continue
        module = report["module"]
        src = f"[get_cells -hierarchical {module}{HELD_SUFFIX}*]"
        dst = f"[get_cells -hierarchical {module}{SAMPLE_SUFFIX}*]"
        lines.append(f"# {module}: input every >= {report['input_interval_cycles']} cycles, "
                     f"result sampled after {n}")
        lines.append(f"set_multicycle_path -setup {n} -from {src} -to {dst}")
        lines.append(f"set_multicycle_path -hold {n - 1} -from {src} -to {dst}")
    return "\n".join(lines) + "\n"
