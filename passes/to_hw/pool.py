"""
`po2.avgpool` (global average pooling) as a streaming module: per channel an accumulator
over the image's pixels, then the division of docs/semantics.md as a constant multiply
(canonical signed digits, `HwBuilder.mul_const`) and a rounding shift with saturation.
Latency: 1 (the fire register) + the datapath's registers after the last pixel.
"""

from __future__ import annotations

import numpy as np

from hashiflex.dialects import po2
from hashiflex.golden.semantics import avgpool_constants, bits_for_range, clamp_bounds
from hashiflex.passes.to_hw.builder import Sig
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          layer_report, stream_module)


def lower(op: po2.AvgPoolOp, name: str, options: LayerOptions) -> LayerHw:
    x_t, y_t = act_type(op.input), act_type(op.output)
    c_in, h, w = x_t.dims
    count = h * w
    shell, hb = stream_module(name, x_t, y_t, options)
    a = shell.args
    accept = hb.and_(a["en"], a["in_valid"])
    k = hb.counter(count - 1, accept, f"{name}_count")
    first = hb.eq_const(k, 0)
    last = hb.and_(accept, hb.eq_const(k, count - 1))
    fire_r = hb.reg(last, a["en"], reset_value=0, name=f"{name}_fire")
    mult, shift = avgpool_constants(count)
    rshift = shift + x_t.fmt.frac - y_t.fmt.frac
    lo, hi = clamp_bounds(y_t.fmt, "none")
    acc_lo, acc_hi = count * x_t.fmt.lo, count * x_t.fmt.hi
    aw, asigned = bits_for_range(acc_lo, acc_hi)
    channels = []
    for c in range(c_in):
        x = hb.resize(hb.extract(a["in_data"], c * x_t.fmt.bits, x_t.fmt.bits), aw, x_t.fmt.signed)
        acc = hb.feedback_reg(aw, None, f"{name}_sum{c}")
        base = hb.mux(first, hb.const(0, aw), acc.q)
        acc.set(hb.mux(accept, hb.add_wrap(base, x), acc.q))
        hb.stats.adders += 1
        total = Sig(acc.q, asigned, acc_lo, acc_hi)
        prod = hb.mul_const(total, mult, f"{name}_mul{c}", f"{name}_mulneg{c}")
        prod = hb.make_room(hb.settle(prod), 2)
        channels.append(hb.settle(hb.rescale(prod, rshift, lo, hi)))
    valid, data, lat = finish_outputs(hb, channels, y_t.fmt, fire_r, name)
    latency = 1 + lat
    report = layer_report("avgpool", op, hb, latency, multiplier=mult, shift=shift)
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    src = options.streams[op.input]
    return LayerHw(module, latency, report, src.after(latency, src.needed(np.array([src.per_frame - 1]))))
