"""
`po2.concat` and `po2.select_channels` as streaming modules.

`po2.concat` joins two streams of the same pixel raster along channels. The branches may
have very different latencies (shufflenet: an identity half next to three convs), so, as for
`po2.residual_add`, each operand goes through a FIFO (push on its valid, pop when both are
non-empty) sized by the stream timing analysis (timing.fifo_depth). Each operand channel
is requantised into the result format (`HwBuilder.rescale`: a shift and saturation, no
activation), then registered. Latency: 1 (FIFO) + the datapath's registers.

`po2.select_channels` (chunk/split pieces, channel shuffles) is wiring: no module, the top
reorders the bit fields of the input stream's data (`LayerHw.wire`), latency 0.

Multi-pixel streams (rates.py) are lane-major: lane l's channel k is item l*C + k.
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds
from hashiflex.passes.to_hw.builder import Fifo, HwBuilder
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          input_sig, layer_report, lanes_entry, stream_module)
from hashiflex.passes.to_hw.timing import StreamTiming, fifo_depth, join_ready


def lower_concat(op: po2.ConcatOp, name: str, options: LayerOptions) -> LayerHw:
    ta, tb = options.streams[op.lhs], options.streams[op.rhs]
    depth_a, depth_b = fifo_depth(ta, tb), fifo_depth(tb, ta)
    a_t, b_t, y_t = act_type(op.lhs), act_type(op.rhs), act_type(op.output)
    lanes = options.lanes_of(op.lhs)
    shell, hb = stream_module(name, a_t, y_t, options, b_type=b_t, lanes_in=lanes,
                              lanes_out=lanes)
    a = shell.args
    en = a["en"]
    fifo_a = Fifo(hb, depth_a, f"{name}_fifo_a")
    fifo_b = Fifo(hb, depth_b, f"{name}_fifo_b")
    pop = hb.and_(en, fifo_a.non_empty, fifo_b.non_empty, name=f"{name}_pop")
    head_a = fifo_a.connect(a["a_data"], hb.and_(en, a["a_valid"]), pop)
    head_b = fifo_b.connect(a["b_data"], hb.and_(en, a["b_valid"]), pop)
    lo, hi = clamp_bounds(y_t.fmt, "none")
    ca, cb = a_t.dims[0], b_t.dims[0]
    channels = []
    for lane in range(lanes):
        for head, typ, count in ((head_a, a_t, ca), (head_b, b_t, cb)):
            for c in range(count):
                x = input_sig(hb, head, typ.fmt, lane * count + c)
                channels.append(hb.settle(hb.rescale(x, typ.fmt.frac - y_t.fmt.frac, lo, hi)))
    valid, data, lat = finish_outputs(hb, channels, y_t.fmt, pop, name)
    latency = 1 + lat
    report = layer_report("concat", op, hb, latency, fifo_depths=[depth_a, depth_b],
                          **lanes_entry(lanes))
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    timing = StreamTiming.of(np.maximum(ta.need, tb.need), ta.frame_pixels,
                             min(ta.lat_lo, tb.lat_lo) + latency,
                             max(ta.lat_hi, tb.lat_hi) + latency,
                             join_ready(ta, tb, latency))
    return LayerHw(module, latency, report, timing)


def lower_select(op: po2.SelectChannelsOp, name: str, options: LayerOptions) -> LayerHw:
    """No module: the top picks the channels' bit fields out of the input stream's data
    (a module would leave unread input bits, which Verilator -Wall rightly reports)."""
    x_t = act_type(op.input)
    lanes, c_in, bits = options.lanes_of(op.input), x_t.dims[0], x_t.fmt.bits
    channels = op.channels

    def wire(hb: HwBuilder, data: SSAValue) -> SSAValue:
        fields = [hb.extract(data, (lane * c_in + c) * bits, bits)
                  for lane in range(lanes) for c in channels]
        return hb.concat(fields[::-1]) if len(fields) > 1 else fields[0]

    return LayerHw(None, 0, None, options.streams[op.input], wire)
