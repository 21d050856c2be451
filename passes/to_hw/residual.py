"""
`po2.residual_add` as a streaming module: both operands go through a FIFO (push on each
operand's valid, pop when both are non-empty), so that whichever branch is late the items of
the same index meet; the depths come from the stream timing analysis (timing.fifo_depth).
Then align the scales by shifts, add exactly, requantise (per lane of a multi-pixel stream:
a FIFO item is a beat). Latency: 1 (FIFO) + the
datapath's registers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds
from hashiflex.passes.to_hw.builder import Fifo, HwBuilder, Sig
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          input_sig, layer_report, lanes_entry, stream_module)
from hashiflex.passes.to_hw.timing import StreamTiming, fifo_depth, join_ready


def lower(op: po2.ResidualAddOp, name: str, options: LayerOptions) -> LayerHw:
    a_t, b_t, y_t = act_type(op.lhs), act_type(op.rhs), act_type(op.output)
    fa, fb, fy = a_t.fmt.frac, b_t.fmt.frac, y_t.fmt.frac
    frac = max(fa, fb)
    lo, hi = clamp_bounds(y_t.fmt, op.act)

    def add(hb: HwBuilder, head_a: SSAValue, head_b: SSAValue, lanes: int) -> list[Sig]:
        channels = []
        for c in range(y_t.dims[0] * lanes):  # lane-major items
            xa = hb.shl_sig(input_sig(hb, head_a, a_t.fmt, c), frac - fa)
            xb = hb.shl_sig(input_sig(hb, head_b, b_t.fmt, c), frac - fb)
            s = hb.settle(hb.add_sig(xa, xb))
            s = hb.make_room(s, 2)
            channels.append(hb.settle(hb.rescale(s, frac - fy, lo, hi)))
        return channels

    return lower_join(op, op.lhs, op.rhs, name, options, "residual_add", add)


def lower_join(op: Operation, lhs: SSAValue, rhs: SSAValue, name: str, options: LayerOptions,
               kind: str,
               combine: Callable[[HwBuilder, SSAValue, SSAValue, int], list[Sig]]) -> LayerHw:
    """
    A layer joining two streams item by item (residual add, concat): one FIFO per operand,
    sized by the stream timing analysis (the operands may arrive with very different
    latencies), both popped together; `combine(hb, head_a, head_b, lanes)` makes the output
    channels of the two FIFO heads.
    """
    ta, tb = options.streams[lhs], options.streams[rhs]
    depth_a, depth_b = fifo_depth(ta, tb), fifo_depth(tb, ta)
    a_t, b_t, y_t = act_type(lhs), act_type(rhs), act_type(op.results[0])
    lanes = options.lanes_of(lhs)
    shell, hb = stream_module(name, a_t, y_t, options, b_type=b_t, lanes_in=lanes,
                              lanes_out=lanes)
    a = shell.args
    en = a["en"]
    fifo_a = Fifo(hb, depth_a, f"{name}_fifo_a")
    fifo_b = Fifo(hb, depth_b, f"{name}_fifo_b")
    pop = hb.and_(en, fifo_a.non_empty, fifo_b.non_empty, name=f"{name}_pop")
    head_a = fifo_a.connect(a["a_data"], hb.and_(en, a["a_valid"]), pop)
    head_b = fifo_b.connect(a["b_data"], hb.and_(en, a["b_valid"]), pop)
    channels = combine(hb, head_a, head_b, lanes)
    valid, data, lat = finish_outputs(hb, channels, y_t.fmt, pop, name)
    latency = 1 + lat
    report = layer_report(kind, op, hb, latency, fifo_depths=[depth_a, depth_b],
                          **lanes_entry(lanes))
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    timing = StreamTiming.of(np.maximum(ta.need, tb.need), ta.frame_pixels,
                             min(ta.lat_lo, tb.lat_lo) + latency,
                             max(ta.lat_hi, tb.lat_hi) + latency,
                             join_ready(ta, tb, latency))
    return LayerHw(module, latency, report, timing)
