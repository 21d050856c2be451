"""
The row buffer of a vertically strided conv at several pixels per cycle (rates.py).

A conv with sh > 1 and q = p/sw output lanes produces an output row as a burst of
G = ceil(OW/q) beats during one input row, then nothing for sh-1 input rows. Downstream
layers only need q/sh lanes on average, so a FIFO of output beats (`builder.Fifo`)
re-serialises each beat into sh beats of q' = q/sh lanes (sub-beat s = lanes s*q' ..
s*q'+q'-1), one per enabled cycle while it holds a beat; the last beat of an output row
gives only the sub-beats holding columns < OW (ceil(OW/q') beats per output row in all). The
output is registered. Latency: 2 cycles (FIFO push, output register) plus the wait behind
earlier beats.

Sizing and timing (`RowBufferPlan.of`, pure): the FIFO depth and the worst wait come from
the schedule at the densest arrival (one conv output beat per input beat of the conv, which
no slower input can beat: arrivals spread out only lower the backlog); the wait is counted
against the top-level input beats (`need`) so the stream timing stays an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.ir import SSAValue

from hashiflex.passes.to_hw.builder import Fifo, HwBuilder, width_of
from hashiflex.passes.to_hw.timing import FRAMES, StreamTiming

#: cycles from a conv output beat's valid to its first sub-beat's valid (FIFO + output reg)
LATENCY = 2


@dataclass(frozen=True)
class RowBufferPlan:
    """What the hardware and the timing need: lanes, sub-beats per beat, depth, wait."""

    lanes_in: int  # q
    lanes_out: int  # q' = q / sh
    groups: int  # beats per output row, G
    last_subbeats: int  # sub-beats of a row's last beat
    depth: int  # FIFO entries (beats of q lanes)
    max_wait: int  # worst extra cycles of a sub-beat behind its beat's arrival + LATENCY

    @property
    def subbeats(self) -> int:
        return self.lanes_in // self.lanes_out

    def per_beat(self, beats: int) -> np.ndarray:
        """Sub-beats of each of `beats` consecutive output beats (rows of G beats)."""
        n = np.full(beats, self.subbeats, dtype=np.int64)
        n[self.groups - 1::self.groups] = self.last_subbeats
        return n

    @classmethod
    def of(cls, lanes_in: int, lanes_out: int, out_width: int, triggers: np.ndarray,
           input_items: int, beats: StreamTiming) -> RowBufferPlan:
        """
        `triggers`: the conv-input item at which each output beat of one image fires, of
        `input_items` items per image; `beats`: the timing of those output beats.
        """
        groups = -(-out_width // lanes_in)
        last = -(-(out_width - (groups - 1) * lanes_in) // lanes_out)
        plan = cls(lanes_in, lanes_out, groups, last, 1, 0)
        total = FRAMES * len(triggers)
        n = plan.per_beat(total)
        k = np.arange(total)
        # densest arrival: beat k pushed at the cycle of its trigger item (one item a cycle)
        a = triggers[k % len(triggers)] + (k // len(triggers)) * input_items
        start = np.empty(total, dtype=np.int64)
        t = int(a[0]) + 1
        for i in range(total):
            t = max(t, int(a[i]) + 1)
            start[i] = t
            t += int(n[i])
        end = start + n  # popped in cycle end-1
        gone = np.searchsorted(end, a + 1, side="right")
        occupancy = int((k + 1 - gone).max())
        # the wait bound against the top-level need (see the module docstring)
        need = beats.needed(k)
        wait, s = 0, 0
        for i in range(total):
            if i:
                s = max(0, s + int(n[i - 1]) - int(need[i] - need[i - 1]))
            wait = max(wait, s + int(n[i]) - 1)
        return cls(lanes_in, lanes_out, groups, last, occupancy + 1, wait)

    def timing(self, beats: StreamTiming) -> StreamTiming:
        """
        The timing of the sub-beats from that of the conv's output beats: each needs its
        beat's input, within LATENCY + max_wait more cycles; `ready` is the full-rate
        schedule of image 0 from reset (its valid cycles exactly, for the report's latency).
        """
        n = self.per_beat(beats.per_frame)
        index = np.repeat(np.arange(beats.per_frame), n)
        arrival = beats.ready_of(np.arange(beats.per_frame))
        ready, t = [], -10**18
        for a, count in zip(arrival.tolist(), n.tolist()):
            t = max(t, a + 1)
            ready.extend(range(t + 1, t + 1 + count))  # + 1: the output register
            t += count
        return StreamTiming.of(beats.need[index], beats.frame_pixels, beats.lat_lo + LATENCY,
                               beats.lat_hi + LATENCY + self.max_wait, ready)

    def build(self, hb: HwBuilder, valid: SSAValue, data: SSAValue,
              name: str) -> tuple[SSAValue, SSAValue]:
        """The FIFO, the sub-beat and column counters, the registered output."""
        en = hb.en
        fifo = Fifo(hb, self.depth, f"{name}_row_buf")
        item_bits = width_of(data) // self.lanes_in * self.lanes_out
        emit = hb.and_(en, fifo.non_empty, name=f"{name}_row_buf_emit")
        sub = hb.feedback_reg(max(1, (self.subbeats - 1).bit_length()), 0, f"{name}_row_buf_sub")
        col = hb.feedback_reg(max(1, (self.groups - 1).bit_length()), 0, f"{name}_row_buf_col")
        last_col = hb.eq_const(col.q, self.groups - 1)
        done = hb.mux(last_col, hb.eq_const(sub.q, self.last_subbeats - 1),
                      hb.eq_const(sub.q, self.subbeats - 1))
        pop = hb.and_(emit, done)
        head = fifo.connect(data, hb.and_(en, valid), pop)
        sw_ = width_of(sub.q)
        sub.set(hb.mux(emit, hb.mux(done, hb.const(0, sw_), hb.add_wrap(sub.q, hb.const(1, sw_))),
                       sub.q))
        cw = width_of(col.q)
        col.set(hb.mux(pop, hb.mux(last_col, hb.const(0, cw), hb.add_wrap(col.q, hb.const(1, cw))),
                       col.q))
        parts = [hb.extract(head, s * item_bits, item_bits) for s in range(self.subbeats)]
        select = [hb.extract(sub.q, bit, 1) for bit in range(width_of(sub.q))]
        chosen = hb.mux_tree(parts, select) if len(parts) > 1 else parts[0]
        out_valid = hb.reg(emit, en, reset_value=0, name=f"{name}_row_buf_valid")
        out_data = hb.reg(chosen, en, name=f"{name}_row_buf_data")
        return out_valid, out_data
