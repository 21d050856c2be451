"""
The streaming module of one `po2.unrolled_conv2d` (the core of the accelerator).

Tap j of a per-channel tap chain holds the pixel accepted j pixels before the newest; the
chain is as long as the deepest tap the datapath reads ((KH-1)*W + KW taps at most).
Output (oy, ox) is computed when the newest accepted pixel sits at raster position
V(oy, ox) = by*W + bx with by = oy*sh - top + KH - 1, bx = ox*sw - left + KW - 1 (V may pass
H*W - 1 with bottom/right padding: those positions are reached by the next image's pixels,
which the masks treat as padding). Window element (kh, kw) is tap (KH-1-kh)*W + (KW-1-kw),
zero unless its input row by-(KH-1-kh) and column bx-(KW-1-kw) lie in the image. Positions
are tracked by counters, never divisions: the position `n` of the next pixel (wrapping at
Q_end = max(V_last, H*W-1) to Q_end + 1 - H*W, into the next image's frame), the next
trigger `next_V` (+sw per column, +sh*W per row from the row's start, back to V(0,0) after
the last output) and (by, bx). An accepted pixel at n == next_V fires; since V is strictly
increasing within a frame and the next frame's first trigger lies beyond the wrapped
position (left+right < KW, top+bottom < KH, checked), no false match can occur and no extra
guard flag is needed. The fire bit and the row/column validity bits are registered with the
pixel, so one cycle later the taps, the masks and the fire bit are consistent; the datapath
(the region's shift/add graph, lowered op by op by `lower_scalar_region`) is pipelined every
`levels_per_stage` adder levels and all output channels are equalised.

Several pixels per cycle (rates.py). With an input of p > 1 lanes (p consecutive pixels of
a row per beat, lane 0 leftmost) the layer counts *beats* in the padded raster of width
Wp = ceil(W/p)*p (the lanes past a row's end are don't-care, masked like padding), the tap
chain shifts p pixels per accepted beat, and q = p/sw copies of the datapath compute the
outputs ox = g*q .. g*q+q-1 of group g together, one output beat. The group fires with the
beat holding the trigger of its last lane, VL = V(oy, g*q+q-1) (lanes past OW are
don't-care); VL mod p is the same for every group (Wp and q*sw are multiples of p), so
lane i reads window element (kh, kw) at the fixed chain depth
(p-1 - VL mod p) + (q-1-i)*sw + (KH-1-kh)*Wp + (KW-1-kw). The counters are the ones above,
in beats (next trigger +1 per group, +sh*Wp/p per row); the column masks are per lane.

Whole rows per beat (rates.py: k = p/W > 1 rows per beat, lane i*W + x holding row r*k + i,
column x; sh divides k). Every output column of k' = k/sh output rows is computed per beat:
k'*OW copies of the datapath, lane i*OW + ox computing output (j*k' + i, ox) of output beat
j. The lowest window row of the group's last output row lies in input beat j + d,
d = (k - sh + by0) // k, the same for every j, so output beat j fires with input beat j + d
(the last ones in the next image's beats when d > 0, masked like the bottom padding) and
window element (kh, kw) of lane (i, ox) sits at the fixed chain depth
(d*k + k - i*sh - by0 + KH-1-kh)*W - 1 - col, col = ox*sw + bx0 - (KW-1-kw); a col outside
[0, W) is a padding column known statically (a constant zero, no tap), and the rows are
masked per lane row from one row counter (by: the corner row of lane row 0, +k per beat).

Latency (reported as `pipeline_stages`): 1 (the fire/tap register) + the datapath's
registers, from the input handshake of the pixel that completes an output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.ir import Block, BlockArgument, SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import bits_for_range
from hashiflex.passes.to_hw.builder import HwBuilder, Sig, width_of
from hashiflex.passes.to_hw.multicycle import UNPIPELINED, multicycle_plan
from hashiflex.passes.to_hw.layer import (LayerHw, LayerOptions, LoweringError, act_type,
                                          finish_outputs, lanes_entry, stream_module)
from hashiflex.passes.to_hw.lane_widener import LaneWidener, widening
from hashiflex.passes.to_hw.rates import row_buffer_lanes
from hashiflex.passes.to_hw.row_buffer import LATENCY as ROW_BUFFER_LATENCY, RowBufferPlan
from hashiflex.passes.to_hw.timing import StreamTiming


@dataclass
class ConvGeometry:
    """The trigger positions and masks of a streaming conv (see the module docstring)."""

    C: int
    H: int
    W: int
    KH: int
    KW: int
    sh: int
    sw: int
    top: int
    left: int
    bottom: int
    right: int
    OH: int
    OW: int
    lanes: int = 1  # input pixels per beat (p); the output has p/sw lanes when p > 1
    rows: int = 1  # whole input rows per beat (k = p/W) when > 1, else part of one row

    @classmethod
    def of(cls, op: po2.UnrolledConv2dOp, lanes: int = 1, rows: int = 1) -> ConvGeometry:
        c, h, w = act_type(op.input).dims
        _, oh, ow = act_type(op.output).dims
        (kh, kw), (sh, sw), (top, left, bottom, right) = op.kernel, op.stride, op.padding
        geo = cls(c, h, w, kh, kw, sh, sw, top, left, bottom, right, oh, ow, lanes, rows)
        layer = op.layer
        if left + right >= kw or top + bottom >= kh:
            raise LoweringError(
                f"layer '{layer}': padding (top {top}, left {left}, bottom {bottom}, right "
                f"{right}) must satisfy left+right < KW={kw} and top+bottom < KH={kh} for the "
                f"streaming window (output triggers must increase along the raster)"
            )
        return geo

    @property
    def by0(self) -> int:
        return self.KH - 1 - self.top

    @property
    def bx0(self) -> int:
        return self.KW - 1 - self.left

    @property
    def by_last(self) -> int:
        return (self.OH - 1) * self.sh + self.by0

    @property
    def bx_last(self) -> int:
        return (self.OW - 1) * self.sw + self.bx0

    def trigger(self, oy: int, ox: int) -> int:
        return (oy * self.sh + self.by0) * self.W + ox * self.sw + self.bx0

    @property
    def q_end(self) -> int:
        return max(self.trigger(self.OH - 1, self.OW - 1), self.H * self.W - 1)

    def tap(self, kh: int, kw: int) -> int:
        return (self.KH - 1 - kh) * self.W + (self.KW - 1 - kw)

    @property
    def pointwise(self) -> bool:
        """1x1, stride 1, no padding: every pixel is an output, no counters or masks."""
        return (self.KH, self.KW, self.sh, self.sw) == (1, 1, 1, 1) and \
            (self.top, self.left, self.bottom, self.right) == (0, 0, 0, 0)

    def triggers(self) -> np.ndarray:
        """The input item (pixel, or beat with lanes) at which each output item fires."""
        if self.rows > 1:
            return np.arange(self.OH // self.out_rows) + self.beat_delay
        if self.lanes > 1:
            oy, g = np.meshgrid(np.arange(self.OH), np.arange(self.groups), indexing="ij")
            return ((oy * self.sh + self.by0) * self.row_beats + g + self.last_lane_beat).reshape(-1)
        oy, ox = np.meshgrid(np.arange(self.OH), np.arange(self.OW), indexing="ij")
        return ((oy * self.sh + self.by0) * self.W + ox * self.sw + self.bx0).reshape(-1)

    # -- several pixels per beat (lanes > 1) -------------------------------------------------

    @property
    def out_lanes(self) -> int:
        if self.rows > 1:
            return self.out_rows * self.OW
        return self.lanes // self.sw if self.lanes > 1 else 1

    # -- whole rows per beat (rows > 1) ------------------------------------------------------

    @property
    def out_rows(self) -> int:
        """Output rows per output beat (rates.conv_rows checked that sh divides rows)."""
        return self.rows // self.sh

    @property
    def beat_delay(self) -> int:
        """d: output beat j fires with input beat j + d (the module docstring)."""
        return (self.rows - self.sh + self.by0) // self.rows

    @property
    def by_last_beat(self) -> int:
        """The corner row of lane row 0 in an image's last output beat."""
        return (self.OH // self.out_rows - 1) * self.rows + self.by0

    @property
    def row_beats(self) -> int:
        return -(-self.W // self.lanes)

    @property
    def padded_width(self) -> int:
        return self.row_beats * self.lanes

    @property
    def groups(self) -> int:
        """Output beats per output row."""
        return -(-self.OW // self.out_lanes)

    @property
    def last_lane_beat(self) -> int:
        """Beat, within its row, of the last lane's trigger column in group 0."""
        return ((self.out_lanes - 1) * self.sw + self.bx0) // self.lanes

    def lane_depth(self, lane: int, kh: int, kw: int) -> int | None:
        """Chain depth (pixels before the newest) of window element (kh, kw) for `lane`;
        None with whole rows per beat when its column lies in the padding."""
        if self.rows > 1:
            row, ox = divmod(lane, self.OW)
            col = ox * self.sw + self.bx0 - (self.KW - 1 - kw)
            if not 0 <= col < self.W:
                return None
            k = self.rows
            return (self.beat_delay * k + k - row * self.sh - self.by0 + self.KH - 1 - kh) \
                * self.W - 1 - col
        r = ((self.out_lanes - 1) * self.sw + self.bx0) % self.lanes
        return (self.lanes - 1 - r) + (self.out_lanes - 1 - lane) * self.sw + \
            (self.KH - 1 - kh) * self.padded_width + (self.KW - 1 - kw)

    def counters(self) -> Counters:
        """The constants of the position counters (pixels at one lane, beats with lanes)."""
        if self.lanes == 1:
            return Counters(self.H * self.W, self.q_end, self.trigger(0, 0), self.sw,
                            self.sh * self.W, self.sw, self.bx_last, self.sh, self.by_last)
        trig = self.triggers()
        if self.rows > 1:  # one output beat per "row" of the counters: bx stays at bx0
            frame = self.H // self.rows
            return Counters(frame, max(int(trig[-1]), frame - 1), int(trig[0]), 1, 1, 0,
                            self.bx0, self.rows, self.by_last_beat)
        frame = self.H * self.row_beats
        bx_last = (self.groups - 1) * self.lanes + self.bx0
        return Counters(frame, max(int(trig[-1]), frame - 1), int(trig[0]), 1,
                        self.sh * self.row_beats, self.lanes, bx_last, self.sh, self.by_last)


@dataclass(frozen=True)
class Counters:
    """
    The position counters of a streaming conv: `frame` items per image, the position wraps
    at `q_end`, the first trigger `v0`, the trigger's step per output item (`v_col`) and per
    output row (`v_row`, from the row's start), the step of the window's corner column per
    output item (`bx_step`) and its last value (`bx_last`), the step of the window's corner
    row per output row (`by_step`) and its last value (`by_last`).
    """

    frame: int
    q_end: int
    v0: int
    v_col: int
    v_row: int
    bx_step: int
    bx_last: int
    by_step: int
    by_last: int


class ConvLowering:
    """Builds the streaming module of one `po2.unrolled_conv2d`."""

    kind = "conv"  # the report's layer kind
    pad_value = 0  # what padded window elements read (a conv's zero padding)

    def __init__(self, op: po2.UnrolledConv2dOp, name: str, options: LayerOptions):
        self.op, self.name = op, name
        lanes_in, rows_in = options.lanes_of(op.input), options.rows_of(op.input)
        # sw not dividing the lanes: gather k beats into one of k*p lanes (lane_widener.py)
        k = widening(lanes_in, op.stride[1]) if rows_in == 1 else 1
        self.widener = LaneWidener(lanes_in, k, act_type(op.input).dims[2]) if k > 1 else None
        self.geo = geo = ConvGeometry.of(op, lanes_in * k, rows_in)
        self.options = options
        # a row buffer re-serialises output bursts after a vertical stride (row_buffer.py);
        # whole rows per beat give whole output rows, no bursts
        self.lanes_out = geo.out_lanes if rows_in > 1 else row_buffer_lanes(
            geo.out_lanes, geo.sh, geo.OH, geo.OW, options.frame_pixels)
        self.row_buffer: RowBufferPlan | None = None
        self.in_fmt, self.out_fmt = act_type(op.input).fmt, act_type(op.output).fmt
        self.shell, self.hb = stream_module(name, act_type(op.input), act_type(op.output), options,
                                            lanes_in=lanes_in,
                                            lanes_out=self.lanes_out)
        self.in_data = self.shell.args["in_data"]
        self.line_buffer_bits = 0

    def build(self) -> LayerHw:
        hb, geo, a = self.hb, self.geo, self.shell.args
        interval, cycles = multicycle_plan(self.op, geo, self.options)
        if interval:  # rate-aware: unpipelined trees on held inputs (multicycle.py)
            hb.levels_per_stage = UNPIPELINED
        accept = hb.and_(a["en"], a["in_valid"], name=f"{self.name}_accept")
        if self.widener is not None:
            accept, self.in_data = self.widener.build(hb, accept, self.in_data, self.name)
        if geo.pointwise:
            fire = accept
            row_ok, col_ok = {}, {}
        else:
            fire, row_ok, col_ok = self.position_logic(accept)
        fire_r = hb.reg(fire, a["en"], reset_value=0, name=f"{self.name}_fire")
        if geo.lanes == 1:
            outs = self.datapath(self.window(accept, row_ok, col_ok))
        else:  # one datapath per output lane, all reading the one tap chain
            windows = self.lane_windows(accept, row_ok, col_ok)
            outs = [o for window in windows for o in self.datapath(window)]
        # inputs held between items (one lane): early channels wait in their registers
        hold = self.options.intervals.get(self.op.input, 1) if geo.lanes == 1 else 1
        valid, data, lat = finish_outputs(hb, outs, self.out_fmt, fire_r, self.name,
                                          sample_after=cycles, hold=hold)
        latency = 1 + lat
        if self.lanes_out != geo.out_lanes:
            valid, data = self.serialise_rows(valid, data, latency)
            latency += ROW_BUFFER_LATENCY
        report = {
            "kind": self.kind,
            "layer": self.op.layer,
            "input_shape": list(act_type(self.op.input).dims),
            "output_shape": list(act_type(self.op.output).dims),
            "kernel": [geo.KH, geo.KW],
            "stride": [geo.sh, geo.sw],
            "padding": [geo.top, geo.left, geo.bottom, geo.right],
            "groups": self.op.groups,
            "nonzero_weights": self.nonzero_weights(),
            "adders": hb.stats.adders,
            "register_bits": hb.stats.register_bits,
            "line_buffer_bits": self.line_buffer_bits,
            "pipeline_stages": latency,
            "comb_adder_levels": hb.stats.max_depth,
            **lanes_entry(geo.out_lanes),
            **({"input_lanes": geo.lanes} if geo.lanes > 1 else {}),
            **({"input_rows": geo.rows, "output_rows": geo.out_rows} if geo.rows > 1 else {}),
            # the gap between input items the module relies on (held inputs): a test bench
            # must not feed it faster (hashiflex verify paces it)
            **({"input_interval_cycles": hold} if hold > 1 else {}),
            **({"multicycle_cycles": cycles} if interval else {}),
            **({"output_lanes": self.lanes_out, "row_buffer_depth": self.row_buffer.depth}
               if self.row_buffer is not None else {}),
        }
        module = self.shell.finish({"out_valid": valid, "out_data": data}, report)
        return LayerHw(module, latency, report, timing=None)

    def serialise_rows(self, valid: SSAValue, data: SSAValue, latency: int):
        """The row buffer bringing the output bursts down to `lanes_out` (row_buffer.py)."""
        src = self.options.streams[self.op.input]
        triggers = self.input_items(self.geo.triggers())
        beats = src.fired_by(latency, triggers)
        self.row_buffer = RowBufferPlan.of(self.geo.out_lanes, self.lanes_out, self.geo.OW,
                                           triggers, src.per_frame, beats)
        return self.row_buffer.build(self.hb, valid, data, self.name)

    def input_items(self, items: np.ndarray) -> np.ndarray:
        """Items of the conv's (widened) input stream -> items of its input port's stream."""
        if self.widener is None:
            return items
        source = self.widener.source_items(self.geo.H)
        frames, k = np.divmod(np.asarray(items, dtype=np.int64), len(source))
        return source[k] + frames * self.widener.row_beats * self.geo.H

    def position_logic(self, accept: SSAValue):
        """
        Counters n, next_V, row start, (by, bx); the fire bit and registered masks. In
        pixels at one lane, in beats with lanes (`ConvGeometry.counters`).
        """
        hb, geo, nm = self.hb, self.geo, self.name
        cnt = geo.counters()
        frame = cnt.frame
        q_end = cnt.q_end
        pw, _ = bits_for_range(0, q_end)
        v0 = cnt.v0
        n_reg = hb.feedback_reg(pw, 0, f"{nm}_pos")
        v_reg = hb.feedback_reg(pw, v0, f"{nm}_next_v")
        row_reg = hb.feedback_reg(pw, v0, f"{nm}_row_v")
        n, next_v, row_v = n_reg.q, v_reg.q, row_reg.q
        byw, _ = bits_for_range(0, cnt.by_last)
        bxw, _ = bits_for_range(0, cnt.bx_last)
        by_reg = hb.feedback_reg(byw, geo.by0, f"{nm}_by")
        bx_reg = hb.feedback_reg(bxw, geo.bx0, f"{nm}_bx")
        by, bx = by_reg.q, bx_reg.q

        # n: +1 per accepted pixel (beat), at Q_end into the next image's frame.
        wrap = hb.eq_const(n, q_end)
        n_next = hb.mux(wrap, hb.const(q_end + 1 - frame, pw), hb.add_wrap(n, hb.const(1, pw)))
        n_reg.set(hb.mux(accept, n_next, n))

        fire = hb.and_(accept, hb.eq(n, next_v), name=f"{nm}_fire_now")
        last_col = hb.eq_const(bx, cnt.bx_last)
        last_row = hb.eq_const(by, cnt.by_last)
        last_out = hb.and_(last_col, last_row)
        row_step = hb.add_wrap(row_v, hb.const(cnt.v_row, pw))
        v_after = hb.mux(last_col, row_step, hb.add_wrap(next_v, hb.const(cnt.v_col, pw)))
        v_reg.set(hb.mux(fire, hb.mux(last_out, hb.const(v0, pw), v_after), next_v))
        row_after = hb.mux(last_row, hb.const(v0, pw), row_step)
        row_done = hb.and_(fire, last_col)
        row_reg.set(hb.mux(row_done, row_after, row_v))
        by_after = hb.mux(last_row, hb.const(geo.by0, byw),
                          hb.add_wrap(by, hb.const(cnt.by_step, byw)))
        by_reg.set(hb.mux(row_done, by_after, by))
        bx_after = hb.mux(last_col, hb.const(geo.bx0, bxw),
                          hb.add_wrap(bx, hb.const(cnt.bx_step, bxw)))
        bx_reg.set(hb.mux(fire, bx_after, bx))

        # Validity of the window's rows and columns for the output being fired, registered
        # with the pixel (loaded on accept, like the taps).
        if geo.rows > 1:  # lane row i's corner row is by + i*sh; the columns are static
            row_ok = {(row, kh): m for row in range(geo.out_rows)
                      for kh, m in self._lane_row_masks(hb, by, cnt.by_last, row, accept).items()}
            return fire, row_ok, {}
        row_ok = self._edge_masks(hb, by, geo.by0, geo.by_last, geo.KH, 0, geo.H, accept,
                                  lambda kh: f"{nm}_row_ok{kh}")
        if geo.lanes == 1:
            col_ok = self._edge_masks(hb, bx, geo.bx0, geo.bx_last, geo.KW, 0, geo.W, accept,
                                      lambda kw: f"{nm}_col_ok{kw}")
        else:  # lane i's corner column is bx + i*sw
            col_ok = {(lane, kw): m for lane in range(geo.out_lanes)
                      for kw, m in self._lane_col_masks(hb, bx, cnt.bx_last, lane, accept).items()}
        return fire, row_ok, col_ok

    def _lane_col_masks(self, hb: HwBuilder, bx: SSAValue, bx_last: int, lane: int,
                        accept: SSAValue) -> dict[int, SSAValue]:
        """
        Per kernel column kw, a registered bit: lane `lane`'s input column
        bx + lane*sw - (KW-1-kw) lies in [0, W) (the padded raster's extra columns are
        outside, as the padding is), for the columns that can fail.
        """
        geo = self.geo
        return self._edge_masks(hb, bx, geo.bx0, bx_last, geo.KW, lane * geo.sw, geo.W, accept,
                                lambda kw: f"{self.name}_col_ok{kw}_lane{lane}")

    def _lane_row_masks(self, hb: HwBuilder, by: SSAValue, by_last: int, row: int,
                        accept: SSAValue) -> dict[int, SSAValue]:
        """
        With whole rows per beat: per kernel row kh, a registered bit: lane row `row`'s
        input row by + row*sh - (KH-1-kh) lies in [0, H), for the rows that can fail.
        """
        geo = self.geo
        return self._edge_masks(hb, by, geo.by0, by_last, geo.KH, row * geo.sh, geo.H, accept,
                                lambda kh: f"{self.name}_row_ok{kh}_row{row}")

    @staticmethod
    def _edge_masks(hb: HwBuilder, pos: SSAValue, pos_first: int, pos_last: int, taps: int,
                    offset: int, size: int, accept: SSAValue, name) -> dict[int, SSAValue]:
        """
        Per tap k of a kernel `taps` wide, a registered bit: position pos + offset -
        (taps-1-k) lies in [0, size), for the taps whose position can fall outside (the
        counter `pos` runs from pos_first to pos_last); `name(k)` names the register.
        """
        masks = {}
        top = (1 << width_of(pos)) - 1
        for k in range(taps):
            d = taps - 1 - k - offset  # position = pos - d
            conds = []
            if pos_first - d < 0:  # can lie before the start
                conds.append(hb.cmp_const(pos, "uge", d) if d <= top else hb.const(0, 1))
            if pos_last - d >= size:  # can lie past the end
                conds.append(hb.cmp_const(pos, "ult", size + d) if size + d > 0
                             else hb.const(0, 1))
            if conds:
                masks[k] = hb.reg(hb.and_(*conds) if len(conds) > 1 else conds[0], accept,
                                  name=name(k))
        return masks

    def window(self, accept: SSAValue, row_ok: dict, col_ok: dict) -> dict[int, Sig]:
        """Sigs of the used window arguments: per-channel tap chains plus padding masks."""
        hb, geo, fmt = self.hb, self.geo, self.in_fmt
        kk = geo.KH * geo.KW
        used = self.window_elements()
        depth_of: dict[int, int] = {}
        for i in used:
            c, (kh, kw) = i // kk, divmod(i % kk, geo.KW)
            depth_of[c] = max(depth_of.get(c, -1), geo.tap(kh, kw))
        data = self.shell.args["in_data"]
        chains: dict[int, list[SSAValue]] = {}
        for c, deepest in sorted(depth_of.items()):
            prev = hb.extract(data, c * fmt.bits, fmt.bits)
            chain = []
            for j in range(deepest + 1):
                prev = hb.reg(prev, accept, name=f"{self.name}_line_buf_c{c}_t{j}")
                chain.append(prev)
            chains[c] = chain
            self.line_buffer_bits += (deepest + 1) * fmt.bits
        masks: dict[tuple[int, int], SSAValue] = {}
        window: dict[int, Sig] = {}
        pad = self.pad_value
        for i in used:
            c, (kh, kw) = i // kk, divmod(i % kk, geo.KW)
            value = chains[c][geo.tap(kh, kw)]
            conds = [m for m in (row_ok.get(kh), col_ok.get(kw)) if m is not None]
            if conds:
                if (kh, kw) not in masks:
                    masks[(kh, kw)] = hb.and_(*conds)
                value = hb.mux(masks[(kh, kw)], value, self.pad_code())
            window[i] = Sig(value, fmt.signed, min(fmt.lo, pad), max(fmt.hi, pad))
        return window

    def lane_windows(self, accept: SSAValue, row_ok: dict, col_ok: dict) -> list[dict[int, Sig]]:
        """
        The windows of the output lanes over one tap chain per channel that shifts p pixels
        per accepted beat: depth f holds lane p-1 - f%p of the beat accepted f//p beats
        before the newest (registered on accept, so it lines up with the fire bit).
        """
        hb, geo, fmt = self.hb, self.geo, self.in_fmt
        p = geo.lanes
        kk = geo.KH * geo.KW
        used = self.window_elements()
        data = self.in_data
        pad = self.pad_value
        taps: dict[tuple[int, int], SSAValue] = {}

        def tap(c: int, f: int) -> SSAValue:
            if (c, f) not in taps:
                src = hb.extract(data, ((p - 1 - f) * geo.C + c) * fmt.bits, fmt.bits) \
                    if f < p else tap(c, f - p)
                taps[(c, f)] = hb.reg(src, accept, name=f"{self.name}_line_buf_c{c}_t{f}")
            return taps[(c, f)]

        windows = []
        masks: dict[tuple[int, int, int], SSAValue] = {}
        for lane in range(geo.out_lanes):
            window: dict[int, Sig] = {}
            for i in used:
                c, (kh, kw) = i // kk, divmod(i % kk, geo.KW)
                depth = geo.lane_depth(lane, kh, kw)
                if depth is None:  # whole rows per beat: a padding column, known statically
                    window[i] = hb.constant(0)
                    continue
                value = tap(c, depth)
                row_key = (lane // geo.OW, kh) if geo.rows > 1 else kh
                conds = [m for m in (row_ok.get(row_key), col_ok.get((lane, kw)))
                         if m is not None]
                if conds:
                    if (lane, kh, kw) not in masks:
                        masks[(lane, kh, kw)] = hb.and_(*conds) if len(conds) > 1 else conds[0]
                    value = hb.mux(masks[(lane, kh, kw)], value, self.pad_code())
                window[i] = Sig(value, fmt.signed, min(fmt.lo, pad), max(fmt.hi, pad))
            windows.append(window)
        self.line_buffer_bits += len(taps) * fmt.bits
        return windows

    def window_elements(self) -> list[int]:
        """The window elements (c*KH*KW + kh*KW + kw) the datapath reads: the region's
        used arguments."""
        return [i for i, arg in enumerate(self.op.body.block.args) if arg.uses]

    def pad_code(self) -> SSAValue:
        """The code a padded (or past-the-row) window element reads."""
        bits = self.in_fmt.bits
        return self.hb.const(self.pad_value & ((1 << bits) - 1), bits)

    def datapath(self, window: dict[int, Sig]) -> list[Sig]:
        """Lower the region's scalar ops to comb, pipelined (see builder.py)."""
        return lower_scalar_region(self.hb, self.op.body.block, window, self.name)

    def nonzero_weights(self) -> int:
        # After po2-cse operands are shared terms, not weights: count the Po2 terms of the
        # channels' linear forms instead (one per nonzero weight).
        from hashiflex.passes.po2_cse import count_weight_terms

        shared = count_weight_terms(self.op.body.block)
        if shared is not None:
            return shared
        count = 0
        for op in self.op.body.block.ops:
            if isinstance(op, (po2.SumOp, po2.AddOp, po2.SubOp, po2.NegOp, po2.RescaleOp)):
                for v in op.operands:
                    if isinstance(v, BlockArgument) or isinstance(v.owner, po2.ShlOp):
                        count += 1
        return count


def lower_scalar_region(hb: HwBuilder, block: Block, inputs: dict[int, Sig], name: str) -> list[Sig]:
    """
    The comb datapath of an unrolled region. Every value is a `Sig` carrying its latency
    and combinational depth; operands are aligned to the latest one, a register is placed
    when `levels_per_stage` adder levels have been reached, `po2.sum` becomes a balanced
    pipelined adder tree. Returns the yielded values (not yet registered).
    """
    env: dict[SSAValue, Sig] = {block.args[i]: s for i, s in inputs.items()}
    for op in block.ops:
        if isinstance(op, po2.ConstOp):
            env[op.result] = hb.constant(op.value)
        elif isinstance(op, po2.ShlOp):
            env[op.result] = hb.shl_sig(env[op.input], op.amount)
        elif isinstance(op, (po2.AddOp, po2.SubOp)):
            a, b = hb.align([env[op.lhs], env[op.rhs]])
            a, b = hb.make_room(a, 1), hb.make_room(b, 1)
            a, b = hb.align([a, b])
            res = hb.add_sig(a, b) if isinstance(op, po2.AddOp) else hb.sub_sig(a, b)
            env[op.result] = hb.settle(res)
        elif isinstance(op, po2.NegOp):
            x = hb.make_room(env[op.input], 1)
            env[op.result] = hb.settle(hb.neg_sig(x))
        elif isinstance(op, po2.SumOp):
            res = hb.adder_tree([env[v] for v in op.inputs], name=f"{name}_acc")
            env[op.result] = hb.settle(res)
        elif isinstance(op, po2.RescaleOp):
            x = hb.make_room(env[op.input], 2)
            res = hb.rescale(x, op.shift, op.lo, op.hi)
            env[op.result] = hb.settle(res)
        elif isinstance(op, po2.YieldOp):
            return [env[v] for v in op.values]
        else:
            raise LoweringError(f"layer '{name}': cannot lower '{op.name}' inside a datapath")
    raise LoweringError(f"layer '{name}': the datapath has no po2.yield")




def lower(op: po2.UnrolledConv2dOp, name: str, options: LayerOptions) -> LayerHw:
    """The conv's module; its output items exist from their trigger pixel on."""
    return lower_window(ConvLowering(op, name, options))


def lower_window(lowering: ConvLowering) -> LayerHw:
    """The module of a streaming-window layer (a conv, or windowed pooling: pool2d.py) and
    its output timing: its output items exist from their trigger item on."""
    layer = lowering.build()
    src = lowering.options.streams[lowering.op.input]
    plan = lowering.row_buffer
    triggers = lowering.input_items(lowering.geo.triggers())
    if plan is None:
        layer.timing = src.fired_by(layer.latency, triggers)
    else:  # the sub-beats, from the timing of the conv's output beats
        beats = src.fired_by(layer.latency - ROW_BUFFER_LATENCY, triggers)
        layer.timing = plan.timing(beats)
    return layer


def lowers_alone(op: po2.UnrolledConv2dOp | po2.Conv2dOp, options: LayerOptions) -> bool:
    """Whether the conv's module depends only on its op and `options`' scalars (adder
    levels, clock, input lanes, frame), not on the stream timing, and its output timing
    is `output_timing`'s: no lane widener, no row buffer (multicycle trees read only the
    input's item gap, `options.intervals`). A worker process can lower it."""
    lanes = options.lanes_of(op.input)
    if widening(lanes, op.stride[1]) > 1 or options.rows_of(op.input) > 1:
        return False
    geo = ConvGeometry.of(op, lanes)
    return row_buffer_lanes(geo.out_lanes, geo.sh, geo.OH, geo.OW,
                            options.frame_pixels) == geo.out_lanes


def output_timing(op: po2.UnrolledConv2dOp | po2.Conv2dOp, latency: int,
                  options: LayerOptions) -> StreamTiming:
    """The timing of the output stream of a conv that `lowers_alone`: its geometry and
    latency on its input's stream (as `lower` computes it)."""
    src = options.streams[op.input]
    geo = ConvGeometry.of(op, options.lanes_of(op.input))
    return src.fired_by(latency, geo.triggers())


def reject_layer_level(op: po2.Conv2dOp, name: str, options: LayerOptions) -> LayerHw:
    raise LoweringError(f"layer '{op.layer}': po2.conv2d must be unrolled first "
                        f"(run po2-unroll before po2-to-hw)")
