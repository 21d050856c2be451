"""
`po2.maxpool2d` and `po2.avgpool2d` (windowed pooling) as streaming modules.

They reuse the streaming window of passes/to_hw/conv.py unchanged: `ConvLowering`'s
position counters (the trigger item of every output, the row/column validity masks), its
per-channel tap chains (line buffers) and, at several pixels per cycle, its lanes (p/sw
copies of the datapath reading one tap chain that shifts p pixels per beat, the lane
widener when sw does not divide p, the row buffer after a vertical stride: rates.py), since
the pooling ops carry the same geometry accessors (`kernel`, `stride`, `padding`). Only the
window's fill (`pad_value`, also read by the don't-care lanes past a row's end), the
elements read (every tap) and the datapath differ:

* max pooling: padded taps read the format's minimum code (torch's -inf), and each channel
  is a balanced comparator tree (`comb.icmp` + `comb.mux` per node), registered every
  `levels_per_stage` levels; the format is unchanged;
* average pooling: padded taps read 0 (counted in the divisor, count_include_pad), each
  channel is an adder tree of the window, then the constant multiply and rounding shift of
  docs/semantics.md (`avgpool_constants(KH*KW)`: a pure shift for Po2 areas), as global
  pooling does.

Latency: 1 (the fire/tap register) + the datapath's registers (+ the row buffer's), like
a conv.
"""

from __future__ import annotations

from hashiflex.dialects import po2
from hashiflex.golden.semantics import avgpool_constants, clamp_bounds
from hashiflex.passes.to_hw.builder import Sig
from hashiflex.passes.to_hw.conv import ConvLowering, lower_window
from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions


class PoolLowering(ConvLowering):
    """A conv's streaming window with a comparator tree or an averaging datapath."""

    @property
    def kind(self) -> str:
        return "maxpool2d" if isinstance(self.op, po2.MaxPool2dOp) else "avgpool2d"

    @property
    def pad_value(self) -> int:
        """Max pooling pads with the format's minimum code (torch's -inf), average with 0."""
        return self.in_fmt.lo if isinstance(self.op, po2.MaxPool2dOp) else 0

    def window_elements(self) -> list[int]:
        """Every tap of every channel's window (c*KH*KW + kh*KW + kw)."""
        return list(range(self.geo.C * self.geo.KH * self.geo.KW))

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
    """The pooling layer's module; its output items exist from their trigger item on."""
    return lower_window(PoolLowering(op, name, options))
