"""
`po2.avgpool` (global average pooling) as a streaming module: per channel an accumulator
over the image's pixels, then the division of docs/semantics.md as a constant multiply
(canonical signed digits, `HwBuilder.mul_const`) and a rounding shift with saturation.
With a multi-pixel input (q lanes, rates.py) each beat adds its lanes; the lanes past the
row's end in a row's last beat are padding and add nothing (a beat of whole rows has none). Latency: 1 (the fire register) +
the datapath's registers after the last pixel.
"""

from __future__ import annotations

import numpy as np

from hashiflex.dialects import po2
from hashiflex.golden.semantics import avgpool_constants, bits_for_range, clamp_bounds
from hashiflex.passes.to_hw.builder import Sig
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          layer_report, lanes_entry, stream_module)
from hashiflex.passes.to_hw.rates import beats_per_image


def lower(op: po2.AvgPoolOp, name: str, options: LayerOptions) -> LayerHw:
    x_t, y_t = act_type(op.input), act_type(op.output)
    c_in, h, w = x_t.dims
    count = h * w
    lanes, rows = options.lanes_of(op.input), options.rows_of(op.input)
    row_beats = -(-w // lanes)
    beats = beats_per_image(h, w, lanes, rows)
    shell, hb = stream_module(name, x_t, y_t, options, lanes_in=lanes)
    a = shell.args
    accept = hb.and_(a["en"], a["in_valid"])
    k = hb.counter(beats - 1, accept, f"{name}_count")
    first = hb.eq_const(k, 0)
    last = hb.and_(accept, hb.eq_const(k, beats - 1))
    # lanes holding a pixel in a row's last beat: the rest are padding (masked)
    tail_lanes = w - (row_beats - 1) * lanes if rows == 1 else lanes  # whole rows: all live
    row_end = None
    if tail_lanes < lanes:
        col = hb.counter(row_beats - 1, accept, f"{name}_col")
        row_end = hb.eq_const(col, row_beats - 1)
    fire_r = hb.reg(last, a["en"], reset_value=0, name=f"{name}_fire")
    mult, shift = avgpool_constants(count)
    rshift = shift + x_t.fmt.frac - y_t.fmt.frac
    lo, hi = clamp_bounds(y_t.fmt, "none")
    acc_lo, acc_hi = count * x_t.fmt.lo, count * x_t.fmt.hi
    aw, asigned = bits_for_range(acc_lo, acc_hi)
    channels = []
    for c in range(c_in):
        xs = []
        for lane in range(lanes):
            item = lane * c_in + c
            x = hb.resize(hb.extract(a["in_data"], item * x_t.fmt.bits, x_t.fmt.bits), aw,
                          x_t.fmt.signed)
            xs.append(x if lane < tail_lanes else hb.mux(row_end, hb.const(0, aw), x))
        acc = hb.feedback_reg(aw, None, f"{name}_sum{c}")
        base = hb.mux(first, hb.const(0, aw), acc.q)
        for x in xs:
            base = hb.add_wrap(base, x)
            hb.stats.adders += 1
        acc.set(hb.mux(accept, base, acc.q))
        total = Sig(acc.q, asigned, acc_lo, acc_hi)
        prod = hb.mul_const(total, mult, f"{name}_mul{c}", f"{name}_mulneg{c}")
        prod = hb.make_room(hb.settle(prod), 2)
        channels.append(hb.settle(hb.rescale(prod, rshift, lo, hi)))
    valid, data, lat = finish_outputs(hb, channels, y_t.fmt, fire_r, name)
    latency = 1 + lat
    report = layer_report("avgpool", op, hb, latency, multiplier=mult, shift=shift,
                          **lanes_entry(lanes))
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    src = options.streams[op.input]
    return LayerHw(module, latency, report, src.fired_by(latency, np.array([src.per_frame - 1])))
