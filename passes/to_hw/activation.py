"""
`po2.leaky_relu` and `po2.clamp` (Hardtanh) as streaming modules, per channel and lane:

* clamp: `saturate(round_shift(x, Fx - Fy), lo, hi)` (`HwBuilder.rescale` with the
  op's bounds): a rounding adder and two comparators;
* leaky ReLU with slope 2^-s: two rescales of the same input, by Fx - Fy and by
  Fx - Fy + s (the slope is only wiring), selected by the input's sign bit.

Latency: the datapath's registers (as `po2.requant`).
"""

from __future__ import annotations

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds
from hashiflex.passes.to_hw.builder import Sig
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          input_sig, layer_report, lanes_entry, stream_module)


def lower(op: po2.LeakyReluOp | po2.ClampOp, name: str, options: LayerOptions) -> LayerHw:
    x_t, y_t = act_type(op.input), act_type(op.output)
    lanes = options.lanes_of(op.input)
    shell, hb = stream_module(name, x_t, y_t, options, lanes_in=lanes, lanes_out=lanes)
    a = shell.args
    shift = x_t.fmt.frac - y_t.fmt.frac
    channels = []
    for c in range(x_t.dims[0] * lanes):  # lane-major: lane l's channel k is item l*C + k
        x = input_sig(hb, a["in_data"], x_t.fmt, c)
        if isinstance(op, po2.ClampOp):
            channels.append(hb.settle(hb.rescale(x, shift, op.lo, op.hi)))
            continue
        lo, hi = clamp_bounds(y_t.fmt, "none")
        pos = hb.rescale(x, shift, lo, hi)
        if not x_t.fmt.signed:  # never negative: the slope never applies
            channels.append(hb.settle(pos))
            continue
        neg = hb.rescale(x, shift + op.slope_shift, lo, hi)
        pos, neg = hb.align([pos, neg])
        width = max(pos.width, neg.width)
        sign = hb.extract(x.value, x_t.fmt.bits - 1, 1)
        if pos.lat:  # the sign bit must meet the registered branches
            sign = hb.delay(sign, pos.lat, hb.en)
        value = hb.mux(sign, hb.resize(neg.value, width, neg.signed),
                       hb.resize(pos.value, width, pos.signed))
        depth = max(pos.depth, neg.depth) + 1
        hb.stats.max_depth = max(hb.stats.max_depth, depth)
        signed = pos.signed or neg.signed
        channels.append(hb.settle(Sig(value, signed, min(pos.lo, neg.lo), max(pos.hi, neg.hi),
                                      pos.lat, depth)))
    valid_in = hb.and_(a["en"], a["in_valid"])
    valid, data, latency = finish_outputs(hb, channels, y_t.fmt, valid_in, name)
    kind = "clamp" if isinstance(op, po2.ClampOp) else "leaky_relu"
    report = layer_report(kind, op, hb, latency, **lanes_entry(lanes))
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    return LayerHw(module, latency, report, options.streams[op.input].after(latency))
