"""
`po2.maxpool2d` and `po2.avgpool2d` (windowed pooling) as streaming modules.

They reuse the streaming window of passes/to_hw/conv.py unchanged: `ConvLowering`'s
position counters (the trigger pixel of every output, the row/column validity masks) and
per-channel tap chains (line buffers), since the pooling ops carry the same geometry
accessors (`kernel`, `stride`, `padding`). Only the window's fill and the datapath differ:

* max pooling: padded taps read the format's minimum code (torch's -inf), and each channel
  is a balanced comparator tree (`comb.icmp` + `comb.mux` per node), registered every
  `levels_per_stage` levels; the format is unchanged;
* average pooling: padded taps read 0 (counted in the divisor, count_include_pad), each
  channel is an adder tree of the window, then the constant multiply and rounding shift of
  docs/semantics.md (`avgpool_constants(KH*KW)`: a pure shift for Po2 areas), as global
  pooling does.

One pixel per cycle only (rates.py refuses more lanes into a pooling layer). Latency: 1 (the
fire/tap register) + the datapath's registers, like a conv.
"""

from __future__ import annotations

from xdsl.ir import SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import avgpool_constants, clamp_bounds
from hashiflex.passes.to_hw.builder import Sig
from hashiflex.passes.to_hw.conv import ConvGeometry, ConvLowering
from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions, LoweringError
from hashiflex.passes.to_hw.report import REPORT_ATTR, to_attr


class PoolLowering(ConvLowering):
    """A conv's streaming window with a comparator tree or an averaging datapath."""

    def window(self, accept: SSAValue, row_ok: dict, col_ok: dict) -> dict[int, Sig]:
        """All KHxKW window taps of every channel (index c*KH*KW + kh*KW + kw), padded
        taps replaced by the pooling's fill value."""
        hb, geo, fmt = self.hb, self.geo, self.in_fmt
        is_max = isinstance(self.op, po2.MaxPool2dOp)
        fill = fmt.lo if is_max else 0
        data = self.shell.args["in_data"]
        deepest = geo.tap(0, 0)
        masks: dict[tuple[int, int], SSAValue] = {}
        window: dict[int, Sig] = {}
        for c in range(geo.C):
            prev = hb.extract(data, c * fmt.bits, fmt.bits)
            chain = []
            for j in range(deepest + 1):
                prev = hb.reg(prev, accept, name=f"{self.name}_line_buf_c{c}_t{j}")
                chain.append(prev)
            self.line_buffer_bits += (deepest + 1) * fmt.bits
            for kh in range(geo.KH):
                for kw in range(geo.KW):
                    value = chain[geo.tap(kh, kw)]
                    conds = [m for m in (row_ok.get(kh), col_ok.get(kw)) if m is not None]
                    if conds:
                        if (kh, kw) not in masks:
                            masks[(kh, kw)] = hb.and_(*conds)
                        value = hb.mux(masks[(kh, kw)], value,
                                       hb.const(fill & ((1 << fmt.bits) - 1), fmt.bits))
                    window[(c * geo.KH + kh) * geo.KW + kw] = Sig(
                        value, fmt.signed, min(fmt.lo, fill), max(fmt.hi, fill))
        return window

    def datapath(self, window: dict[int, Sig]) -> list[Sig]:
        kk = self.geo.KH * self.geo.KW
        taps = [[window[c * kk + i] for i in range(kk)] for c in range(self.geo.C)]
        if isinstance(self.op, po2.MaxPool2dOp):
            return [self.max_tree(t, c) for c, t in enumerate(taps)]
        return [self.average(t, c) for c, t in enumerate(taps)]

    def max_tree(self, terms: list[Sig], channel: int) -> Sig:
        """The maximum of `terms` by a balanced tree of compare-and-select nodes."""
        hb = self.hb
        pred = "sgt" if self.in_fmt.signed else "ugt"
        level = hb.align(terms)
        while len(level) > 1:
            if max(t.depth for t in level) >= hb.levels_per_stage:
                level = [hb.stage(t) for t in level]
            nxt = []
            for a, b in zip(level[0::2], level[1::2]):
                value = hb.mux(hb.icmp(a.value, b.value, pred), a.value, b.value)
                depth = max(a.depth, b.depth) + 1
                hb.stats.max_depth = max(hb.stats.max_depth, depth)
                nxt.append(Sig(value, a.signed, min(a.lo, b.lo), max(a.hi, b.hi), a.lat, depth))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return hb.settle(level[0])

    def average(self, terms: list[Sig], channel: int) -> Sig:
        """Window sum, times the constant, rounding shift and saturation (semantics)."""
        hb = self.hb
        mult, shift = avgpool_constants(self.geo.KH * self.geo.KW)
        total = hb.settle(hb.adder_tree(terms, name=f"{self.name}_sum{channel}"))
        prod = hb.mul_const(total, mult, f"{self.name}_mul{channel}",
                            f"{self.name}_mulneg{channel}")
        prod = hb.make_room(hb.settle(prod), 2)
        lo, hi = clamp_bounds(self.out_fmt, "none")
        rshift = shift + self.in_fmt.frac - self.out_fmt.frac
        return hb.settle(hb.rescale(prod, rshift, lo, hi))

    def nonzero_weights(self) -> int:
        return 0


def lower(op: po2.MaxPool2dOp | po2.AvgPool2dOp, name: str, options: LayerOptions) -> LayerHw:
    """The pooling layer's module; its output pixels exist from their trigger pixel on."""
    if options.lanes_of(op.input) != 1:
        raise LoweringError(f"layer '{op.layer}': windowed pooling takes one pixel per cycle")
    lowering = PoolLowering(op, name, options)
    layer = lowering.build()
    layer.report["kind"] = "maxpool2d" if isinstance(op, po2.MaxPool2dOp) else "avgpool2d"
    layer.module.attributes[REPORT_ATTR] = to_attr(layer.report)
    src = options.streams[op.input]
    geo = ConvGeometry.of(op)
    layer.timing = src.after(layer.latency, src.needed(geo.triggers()))
    return layer
