"""
`po2.requant` as a streaming module: per channel `saturate(round_shift(x, shift))` of
docs/semantics.md (`HwBuilder.rescale`), then the registered output stage; one copy per lane
of a multi-pixel stream (rates.py). Latency: the datapath's registers.
"""

from __future__ import annotations

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, act_type, finish_outputs,
                                          input_sig, layer_report, lanes_entry, stream_module)


def lower(op: po2.RequantOp, name: str, options: LayerOptions) -> LayerHw:
    x_t, y_t = act_type(op.input), act_type(op.output)
    lanes = options.lanes_of(op.input)
    shell, hb = stream_module(name, x_t, y_t, options, lanes_in=lanes, lanes_out=lanes)
    a = shell.args
    lo, hi = clamp_bounds(y_t.fmt, op.act)
    shift = x_t.fmt.frac - y_t.fmt.frac
    channels = []
    for c in range(x_t.dims[0] * lanes):  # lane-major: lane l's channel k is item l*C + k
        x = input_sig(hb, a["in_data"], x_t.fmt, c)
        channels.append(hb.settle(hb.rescale(x, shift, lo, hi)))
    valid_in = hb.and_(a["en"], a["in_valid"])
    valid, data, latency = finish_outputs(hb, channels, y_t.fmt, valid_in, name)
    report = layer_report("requant", op, hb, latency, **lanes_entry(lanes))
    module = shell.finish({"out_valid": valid, "out_data": data}, report)
    return LayerHw(module, latency, report, options.streams[op.input].after(latency))
