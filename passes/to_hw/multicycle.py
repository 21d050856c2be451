"""
Rate-aware registers: multicycle adder trees for layers whose input is slow (issue 10).

A conv whose input items arrive at least k cycles apart (after stride-2 layers, at 1x1
spatial size) does not need pipeline registers inside its adder trees: its datapath inputs
are registers that change only when an item is accepted (the tap chain and, in a windowed
conv, the registered padding masks: conv.py), so they are held for at least k cycles. The
tree is built purely combinational, a register samples its result every cycle, and the
output is declared valid `cycles` = ceil(path delay / period) cycles after the input was
taken (<= k), when the slow path has settled. The static timing flow must know it:
`sdc_text` writes `set_multicycle_path -setup N` / `-hold N-1` from the held input
registers to the sample registers into `rtl/constraints.sdc`, which `hashiflex synth` reads
to time such a module per period (hashiflex/synth.py).

k comes from `stream_intervals`, a walk over the layers before any is lowered: the input
beats come at most one per cycle; a conv or windowed pool at one lane fires output j on
input item trigger[j] after a fixed latency, so its outputs are at least k_in times the
smallest gap between consecutive triggers apart (across the image boundary too); a
two-stream join pops item j when both operands' items j are there, at the later of the
two, so its gap is at least the smaller of the operands'; a layer of fixed latency keeps
its input's gap. It depends on no latency, so `hashiflex compile --jobs` workers get it
from the parent and build the same module.

Applied to convolutions (pointwise and windowed) with one lane in and out, under a clock
target (no `--levels-per-stage`), when k is at least `MIN_INTERVAL` cycles and the settled
path (bounded from the region before building: `region_path`, plus the padding mask's
multiplexer as one more level in a windowed conv) needs N <= k cycles; otherwise the layer
is pipelined as usual. Bit-exactness is unchanged (a simulator's combinational logic
settles at once); the latency changes by `cycles` minus the pipeline registers it
replaces, and the report carries it.
"""

from __future__ import annotations

import math

import numpy as np

from hashiflex.passes.to_hw import delay

#: Smallest input interval (cycles) for which a layer's trees are made multicycle
#: (the result is sampled after N <= k cycles: the inputs are still held at that edge).
MIN_INTERVAL = 2
#: Register-name suffixes the SDC patterns match: the held inputs (the tap chain, a windowed
#: conv's registered padding masks: conv.py), the result samples.
HELD_SUFFIXES = ("_line_buf_", "_row_ok", "_col_ok")
SAMPLE_SUFFIX = "_mc_sample"


#: `levels_per_stage` of a multicycle datapath: no pipeline register inside.
UNPIPELINED = 1 << 30


def multicycle_plan(op, geo, options) -> tuple[int, int]:
    """(k, N): the input interval k of conv `op` and the cycles N its unpipelined datapath
    needs, if its trees are made multicycle, else (0, 1): a conv, one lane in and out,
    registers placed for a clock target (no `--levels-per-stage`), input items at least
    MIN_INTERVAL cycles apart (`options.intervals`), N <= k."""
    from hashiflex.dialects import po2

    if not isinstance(op, po2.UnrolledConv2dOp):  # windowed pooling reuses ConvLowering
        return 0, 1
    if options.levels_per_stage or geo.lanes != 1 or geo.out_lanes != 1:
        return 0, 1
    k = options.intervals.get(op.input, 1)
    if k < MIN_INTERVAL:
        return 0, 1
    levels, width = region_path(op.body.block)
    if not geo.pointwise:
        levels += 1  # the padding mask's multiplexer before the tree (conv.window)
    n = settle_cycles(levels, width, options.clock_mhz)
    return (k, n) if n <= k else (0, 1)


def stream_intervals(image, layers, lanes, frame_pixels: int) -> dict:
    """A lower bound on the enabled cycles between two consecutive items of every stream
    (the module docstring's rules), keyed by value, from the func's `image` argument
    through the layer-level ops `layers`; `lanes`: pixels per beat of each stream (1 if
    absent). Streams of several lanes get 1 (no multicycle there)."""
    from hashiflex.dialects import po2
    from hashiflex.passes.to_hw.conv import ConvGeometry
    from hashiflex.passes.to_hw.layer import act_type

    windowed = (po2.UnrolledConv2dOp, po2.Conv2dOp, po2.MaxPool2dOp, po2.AvgPool2dOp)
    fixed_latency = (po2.RequantOp, po2.LeakyReluOp, po2.ClampOp, po2.FlattenOp,
                     po2.SelectChannelsOp)
    joins = (po2.ResidualAddOp, po2.ConcatOp)
    intervals = {image: 1}
    for op in layers:
        if not op.results:
            continue
        ins = [intervals.get(v, 1) for v in op.operands]
        one_lane = all(lanes.get(v, 1) == 1 for v in op.operands)
        if isinstance(op, windowed) and one_lane:
            geo = ConvGeometry.of(op)
            k = ins[0] * item_gap(geo.triggers(), geo.H * geo.W)
        elif isinstance(op, po2.AvgPoolOp) and one_lane:  # one item per image
            _, h, w = act_type(op.input).dims
            k = ins[0] * h * w
        elif isinstance(op, fixed_latency + joins):
            k = min(ins)
        else:
            k = 1
        intervals[op.results[0]] = max(1, k)
    return intervals


def item_gap(index: np.ndarray, per_frame: int) -> int:
    """The smallest difference between consecutive entries of `index` (increasing input
    item indices of one image), the next image's first (index[0] + per_frame) included."""
    index = np.asarray(index, dtype=np.int64)
    following = np.append(index[1:], index[0] + per_frame)
    return int((following - index).min())


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
        held = " ".join(f"{module}{suffix}*" for suffix in HELD_SUFFIXES)
        src = f"[get_cells -hierarchical {{{held}}}]"
        dst = f"[get_cells -hierarchical {module}{SAMPLE_SUFFIX}*]"
        lines.append(f"# {module}: input every >= {report['input_interval_cycles']} cycles, "
                     f"result sampled after {n}")
        lines.append(f"set_multicycle_path -setup {n} -from {src} -to {dst}")
        lines.append(f"set_multicycle_path -hold {n - 1} -from {src} -to {dst}")
    return "\n".join(lines) + "\n"
