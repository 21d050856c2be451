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

from xdsl.ir import SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds
from hashiflex.passes.to_hw.builder import HwBuilder, Sig
from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions, act_type, input_sig
from hashiflex.passes.to_hw.residual import lower_join


def lower_concat(op: po2.ConcatOp, name: str, options: LayerOptions) -> LayerHw:
    a_t, b_t, y_t = act_type(op.lhs), act_type(op.rhs), act_type(op.output)
    lo, hi = clamp_bounds(y_t.fmt, "none")

    def join(hb: HwBuilder, head_a: SSAValue, head_b: SSAValue, lanes: int) -> list[Sig]:
        channels = []
        for lane in range(lanes):
            for head, typ in ((head_a, a_t), (head_b, b_t)):
                count = typ.dims[0]
                for c in range(count):
                    x = input_sig(hb, head, typ.fmt, lane * count + c)
                    channels.append(hb.settle(hb.rescale(x, typ.fmt.frac - y_t.fmt.frac,
                                                         lo, hi)))
        return channels

    return lower_join(op, op.lhs, op.rhs, name, options, "concat", join)


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
