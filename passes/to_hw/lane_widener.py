"""
The lane widener in front of a conv whose horizontal stride sw does not divide its input
lanes p (rates.py): it gathers k = sw / gcd(p, sw) consecutive beats of a row into one
beat of k*p lanes (a multiple of sw), so the conv is built as usual on k*p lanes and fires
at most once per k input beats. A row of ceil(W/p) beats gives ceil(W/(k*p)) wide beats;
when k does not divide ceil(W/p), the row's last wide beat is emitted early and its lanes
past the row are don't care (the conv masks them like padding, as for any partial beat).

Hardware: k-1 beat registers and a beat counter within the row (no division); the wide beat
is combinational (slot s holds the current beat when it is the s-th of its group, else the
register loaded when it was), so it is valid with the beat that completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from xdsl.ir import SSAValue

from hashiflex.golden.semantics import bits_for_range
from hashiflex.passes.to_hw.builder import HwBuilder, width_of


def widening(lanes: int, sw: int) -> int:
    """k: input beats per wide beat (1 when sw divides `lanes` or at one lane)."""
    return 1 if lanes <= 1 else sw // gcd(lanes, sw)


@dataclass(frozen=True)
class LaneWidener:
    lanes: int  # p
    k: int  # beats per wide beat
    width: int  # W, the row's pixels

    @property
    def row_beats(self) -> int:
        return -(-self.width // self.lanes)

    def source_items(self, height: int) -> np.ndarray:
        """The input beat (within an image) that completes each wide beat."""
        wide_per_row = -(-self.row_beats // self.k)
        last = np.minimum(np.arange(wide_per_row) * self.k + self.k - 1, self.row_beats - 1)
        return (np.arange(height)[:, None] * self.row_beats + last[None, :]).reshape(-1)

    def build(self, hb: HwBuilder, accept: SSAValue, data: SSAValue,
              name: str) -> tuple[SSAValue, SSAValue]:
        """(the accept of a wide beat, its data of k*p lanes), from the narrow `accept`."""
        cw, _ = bits_for_range(0, self.row_beats - 1)
        col = hb.feedback_reg(cw, 0, f"{name}_widen_col")  # beat within the row
        slot = hb.feedback_reg(max(1, (self.k - 1).bit_length()), 0, f"{name}_widen_slot")
        row_end = hb.eq_const(col.q, self.row_beats - 1)
        group_end = hb.or_(row_end, hb.eq_const(slot.q, self.k - 1))
        col.set(hb.mux(accept, hb.mux(row_end, hb.const(0, cw),
                                      hb.add_wrap(col.q, hb.const(1, cw))), col.q))
        sw_ = width_of(slot.q)
        slot.set(hb.mux(accept, hb.mux(group_end, hb.const(0, sw_),
                                       hb.add_wrap(slot.q, hb.const(1, sw_))), slot.q))
        parts = []
        for s in range(self.k - 1):
            here = hb.eq_const(slot.q, s)
            kept = hb.reg(data, hb.and_(accept, here), name=f"{name}_widen_beat{s}")
            parts.append(hb.mux(here, data, kept))
        parts.append(data)  # slot k-1 is always the completing beat
        return hb.and_(accept, group_end, name=f"{name}_widen_accept"), hb.concat(parts[::-1])
