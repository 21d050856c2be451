"""
`po2-to-hw`: the unrolled po2 network becomes a streaming accelerator in hw/comb/seq.

Input: one `func.func` whose argument is the input image, holding layer-level po2 ops after
`po2-unroll` (`po2.unrolled_conv2d`, `po2.residual_add`, `po2.requant`, `po2.avgpool`,
`po2.flatten`, `po2.npu_linear`). Output: one `hw.module` per layer, the NPU module and the
top `<func>_top`, with the interfaces of docs/microarchitecture.md, bit exact with
docs/semantics.md. The func is erased.

Streams. A stream carries one pixel (all channels, channel 0 in the low bits) per `valid`
cycle in raster order, image after image. Every register of a layer is enabled by `en` (the
global stall), a layer's stream position advances on `en && in_valid`, and a layer's output
is registered: `out_valid` is high for exactly one enabled cycle per output pixel.

Conv layers (the core, `ConvLowering`). Tap j of a per-channel tap chain holds the pixel
accepted j pixels before the newest; the chain is as long as the deepest tap the datapath
reads ((KH-1)*W + KW taps at most). Output (oy, ox) is computed when the newest accepted
pixel sits at raster position V(oy, ox) = by*W + bx with by = oy*sh - top + KH - 1,
bx = ox*sw - left + KW - 1 (V may pass H*W - 1 with bottom/right padding: those positions
are reached by the next image's pixels, which the masks treat as padding). Window element
(kh, kw) is tap (KH-1-kh)*W + (KW-1-kw), zero unless its input row by-(KH-1-kh) and column
bx-(KW-1-kw) lie in the image. Positions are tracked by counters, never divisions: the
position `n` of the next pixel (wrapping at Q_end = max(V_last, H*W-1) to Q_end + 1 - H*W,
into the next image's frame), the next trigger `next_V` (+sw per column, +sh*W per row from
the row's start, back to V(0,0) after the last output) and (by, bx). An accepted pixel at
n == next_V fires; since V is strictly increasing within a frame and the next frame's
first trigger lies beyond the wrapped position (left+right < KW, top+bottom < KH, checked),
no false match can occur and no extra guard flag is needed. The fire bit and the row/column
validity bits are registered with the pixel, so one cycle later the taps, the masks and the
fire bit are consistent; the datapath (the region's shift/add graph, lowered op by op) is
pipelined every `levels_per_stage` adder levels and all output channels are equalised.

Latency (per layer, reported as `pipeline_stages`): cycles from the input handshake of the
pixel that completes an output to that output's `out_valid`: 1 (the fire/tap register) +
the datapath's registers for convs, the datapath's registers for requant, 1 (FIFO) + the
datapath's for residual adds, 1 + the datapath's for average pooling.

Residual adds get a FIFO on BOTH operands (push on each operand's valid, pop when both are
non-empty): robust whichever branch is late. The depths come from a stream timing analysis
(`StreamTiming`): for every stream, the input-pixel index after which each of its items can
exist (convs need their trigger pixel V) and the bounds of its extra latency in cycles; the
FIFO of operand a must hold every a item that can be pushed before b's item of the same index
(at one pixel per cycle at most), see `fifo_depth`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import comb, func, hw, seq
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FlatSymbolRefAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    StringAttr,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format, avgpool_constants, bits_for_range, clamp_bounds
from hashiflex.passes.hw_builders import HwBuilder, Sig, namehint

REPORT_ATTR = "hashiflex.report"


class LoweringError(DiagnosticException):
    """The network cannot be lowered; the message names the layer and the rule broken."""


# ---------------------------------------------------------------------------------------
# Modules and ports
# ---------------------------------------------------------------------------------------


def sv_name(name: str) -> str:
    """A SystemVerilog identifier from a layer name (`features.0.conv` -> `features_0_conv`)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "layer"
    return ident if not ident[0].isdigit() else f"l_{ident}"


@dataclass
class ModuleShell:
    """An `hw.module` under construction: its body block, named input args, output ports."""

    name: str
    inputs: list[tuple[str, Attribute]]
    outputs: list[tuple[str, Attribute]]
    block: Block = field(init=False)
    args: dict[str, SSAValue] = field(init=False)

    def __post_init__(self):
        self.block = Block(arg_types=[t for _, t in self.inputs])
        self.args = {n: a for (n, _), a in zip(self.inputs, self.block.args)}

    def finish(self, values: dict[str, SSAValue], report: dict | None = None) -> hw.HWModuleOp:
        self.block.add_op(hw.OutputOp([values[n] for n, _ in self.outputs]))
        ports = [hw.ModulePort(StringAttr(n), t, hw.DirectionAttr(hw.Direction.INPUT))
                 for n, t in self.inputs]
        ports += [hw.ModulePort(StringAttr(n), t, hw.DirectionAttr(hw.Direction.OUTPUT))
                  for n, t in self.outputs]
        module = hw.HWModuleOp(StringAttr(self.name), hw.ModuleType(ArrayAttr(ports)),
                               Region(self.block))
        if report is not None:
            module.attributes[REPORT_ATTR] = _to_attr(report)
        return module


def _to_attr(value) -> Attribute:
    if isinstance(value, bool):
        return IntegerAttr(int(value), i64)
    if isinstance(value, (int, np.integer)):
        return IntegerAttr(int(value), i64)
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, (list, tuple)):
        return ArrayAttr([_to_attr(v) for v in value])
    if isinstance(value, dict):
        return DictionaryAttr({k: _to_attr(v) for k, v in value.items()})
    raise TypeError(f"cannot store {value!r} in a report attribute")


def _from_attr(attr: Attribute):
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, ArrayAttr):
        return [_from_attr(a) for a in attr.data]
    if isinstance(attr, DictionaryAttr):
        return {k: _from_attr(v) for k, v in attr.data.items()}
    return str(attr)


def module_report(op: Operation) -> dict | None:
    """The `hashiflex.report` of one hw.module (with its `module` name), else None."""
    if not isinstance(op, hw.HWModuleOp) or REPORT_ATTR not in op.attributes:
        return None
    entry = _from_attr(op.attributes[REPORT_ATTR])
    entry.setdefault("module", op.sym_name.data)
    return entry


def _counted_resources(module: hw.HWModuleOp) -> dict:
    """Adders, multipliers and register bits of a module built without HwBuilder stats."""
    adders = multipliers = register_bits = 0
    for op in module.body.walk():
        if isinstance(op, (comb.AddOp, comb.SubOp)):
            adders += 1
        elif isinstance(op, comb.MulOp):
            multipliers += 1
        elif isinstance(op, seq.CompRegOp):
            register_bits += op.data.type.width.data
    return {"adders": adders, "multipliers": multipliers, "register_bits": register_bits}


def design_report(module: ModuleOp) -> dict:
    """The `hashiflex.report` of every hw.module, in order, plus totals (for report.json)."""
    return design_report_of(filter(None, (module_report(op) for op in module.ops)))


def design_report_of(entries) -> dict:
    """`design_report` from the `module_report`s of the modules, in IR order."""
    layers = []
    top = None
    for entry in entries:
        if entry.get("kind") == "top":
            top = entry
        else:
            layers.append(entry)
    totals = {key: sum(l.get(key, 0) for l in layers)
              for key in ("nonzero_weights", "adders", "register_bits", "line_buffer_bits")}
    totals["max_comb_adder_levels"] = max((l.get("comb_adder_levels", 0) for l in layers), default=0)
    return {"top": top, "layers": layers, "totals": totals}


def layer_ports(data_in: int, data_out: int, two_inputs: bool = False) -> tuple[list, list]:
    ins: list[tuple[str, Attribute]] = [("clk", seq.ClockType()), ("rst", i1), ("en", i1)]
    if two_inputs:
        ins += [("a_valid", i1), ("a_data", IntegerType(data_in)),
                ("b_valid", i1), ("b_data", IntegerType(data_in))]
    else:
        ins += [("in_valid", i1), ("in_data", IntegerType(data_in))]
    return ins, [("out_valid", i1), ("out_data", IntegerType(data_out))]


def _act_type(value: SSAValue) -> po2.ActType:
    typ = value.type
    assert isinstance(typ, po2.ActType)
    return typ


def stream_bits(typ: po2.ActType) -> int:
    """Width of one stream item: all channels of a pixel (a vector: all its elements)."""
    return typ.dims[0] * typ.fmt.bits


@dataclass
class LayerHw:
    """
    A lowered layer: its module and what the top and the timing analysis need. The top
    reads only `symbol` and `module_type`, so a streaming consumer may drop `module` (see
    `NetworkLowering.iter_modules`) once it has written it out.
    """

    module: hw.HWModuleOp | None
    latency: int  # cycles from the completing input handshake to out_valid
    report: dict
    symbol: StringAttr | None = None
    module_type: hw.ModuleType | None = None

    def __post_init__(self):
        if self.module is not None:
            self.symbol = self.module.sym_name
            self.module_type = self.module.module_type


def _take_module(layer: LayerHw) -> hw.HWModuleOp:
    """The layer's module, which `layer` no longer holds (see `NetworkLowering`)."""
    module, layer.module = layer.module, None
    assert module is not None
    return module


def _finish_outputs(hb: HwBuilder, outs: list[Sig], fmt: Format, start_valid: SSAValue,
                    name: str) -> tuple[SSAValue, SSAValue, int]:
    """Register, equalise and concatenate output channels; delay the valid to match."""
    outs = [hb.stage(o) if o.depth > 0 else o for o in outs]
    outs = hb.align(outs)
    latency = max((o.lat for o in outs if not o.const), default=0)
    channels = [hb.resize(o.value, o.signed, fmt.bits) for o in outs]
    data = hb.concat(channels[::-1])
    if len(channels) > 1:
        namehint(data.owner, f"{name}_out")
    valid = hb.delay(start_valid, latency, hb.en, reset_value=0, name=f"{name}_valid")
    return valid, data, latency


def _input_sig(hb: HwBuilder, data: SSAValue, fmt: Format, channel: int) -> Sig:
    value = hb.extract(data, channel * fmt.bits, fmt.bits)
    return Sig(value, fmt.signed, fmt.lo, fmt.hi)


# ---------------------------------------------------------------------------------------
# Conv layers
# ---------------------------------------------------------------------------------------


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

    @classmethod
    def of(cls, op: po2.UnrolledConv2dOp) -> ConvGeometry:
        c, h, w = _act_type(op.input).dims
        _, oh, ow = _act_type(op.output).dims
        (kh, kw), (sh, sw), (top, left, bottom, right) = op.kernel_hw, op.stride_hw, op.pads
        geo = cls(c, h, w, kh, kw, sh, sw, top, left, bottom, right, oh, ow)
        layer = op.layer.data
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

    def row_checks(self, kh: int) -> tuple[bool, bool]:
        """(can the row be above the image, can it be below) for kernel row kh."""
        d = self.KH - 1 - kh
        return self.by0 - d < 0, self.by_last - d >= self.H

    def col_checks(self, kw: int) -> tuple[bool, bool]:
        d = self.KW - 1 - kw
        return self.bx0 - d < 0, self.bx_last - d >= self.W

    @property
    def pointwise(self) -> bool:
        """1x1, stride 1, no padding: every pixel is an output, no counters or masks."""
        return (self.KH, self.KW, self.sh, self.sw) == (1, 1, 1, 1) and \
            (self.top, self.left, self.bottom, self.right) == (0, 0, 0, 0)

    def triggers(self) -> np.ndarray:
        oy, ox = np.meshgrid(np.arange(self.OH), np.arange(self.OW), indexing="ij")
        return ((oy * self.sh + self.by0) * self.W + ox * self.sw + self.bx0).reshape(-1)


class ConvLowering:
    """Builds the streaming module of one `po2.unrolled_conv2d`."""

    def __init__(self, op: po2.UnrolledConv2dOp, name: str, levels_per_stage: int):
        self.op, self.name = op, name
        self.geo = ConvGeometry.of(op)
        self.in_fmt, self.out_fmt = _act_type(op.input).fmt, _act_type(op.output).fmt
        cout = _act_type(op.output).dims[0]
        ins, outs = layer_ports(stream_bits(_act_type(op.input)), cout * self.out_fmt.bits)
        self.shell = ModuleShell(name, ins, outs)
        a = self.shell.args
        self.hb = HwBuilder(self.shell.block, a["clk"], a["rst"], a["en"], levels_per_stage)
        self.line_buffer_bits = 0

    def build(self) -> LayerHw:
        hb, geo, a = self.hb, self.geo, self.shell.args
        accept = hb.and_(a["en"], a["in_valid"])
        namehint(accept.owner, f"{self.name}_accept")
        if geo.pointwise:
            fire = accept
            row_ok, col_ok = {}, {}
        else:
            fire, row_ok, col_ok = self.position_logic(accept)
        fire_r = hb.reg(fire, a["en"], reset_value=0, name=f"{self.name}_fire")
        window = self.window(accept, row_ok, col_ok)
        outs = self.datapath(window)
        valid, data, lat = _finish_outputs(hb, outs, self.out_fmt, fire_r, self.name)
        latency = 1 + lat
        report = {
            "kind": "conv",
            "layer": self.op.layer.data,
            "input_shape": list(_act_type(self.op.input).dims),
            "output_shape": list(_act_type(self.op.output).dims),
            "kernel": [geo.KH, geo.KW],
            "stride": [geo.sh, geo.sw],
            "padding": [geo.top, geo.left, geo.bottom, geo.right],
            "groups": self.op.num_groups,
            "nonzero_weights": self.nonzero_weights(),
            "adders": hb.stats.adders,
            "register_bits": hb.stats.register_bits,
            "line_buffer_bits": self.line_buffer_bits,
            "pipeline_stages": latency,
            "comb_adder_levels": hb.stats.max_depth,
        }
        module = self.shell.finish({"out_valid": valid, "out_data": data}, report)
        return LayerHw(module, latency, report)

    def position_logic(self, accept: SSAValue):
        """Counters n, next_V, row start, (by, bx); the fire bit and registered masks."""
        hb, geo, nm = self.hb, self.geo, self.name
        hw_pixels = geo.H * geo.W
        q_end = geo.q_end
        pw, _ = bits_for_range(0, q_end)
        v0 = geo.trigger(0, 0)
        n, n_reg = hb.feedback_reg(pw, 0, f"{nm}_pos")
        next_v, v_reg = hb.feedback_reg(pw, v0, f"{nm}_next_v")
        row_v, row_reg = hb.feedback_reg(pw, v0, f"{nm}_row_v")
        byw, _ = bits_for_range(0, geo.by_last)
        bxw, _ = bits_for_range(0, geo.bx_last)
        by, by_reg = hb.feedback_reg(byw, geo.by0, f"{nm}_by")
        bx, bx_reg = hb.feedback_reg(bxw, geo.bx0, f"{nm}_bx")

        # n: +1 per accepted pixel, at Q_end into the next image's frame.
        wrap = hb.eq_const(n, q_end)
        n_next = hb.mux(wrap, hb.const(q_end + 1 - hw_pixels, pw), hb.add_wrap(n, hb.const(1, pw)))
        hb.close_loop(n_reg, hb.mux(accept, n_next, n))

        fire = hb.and_(accept, hb.eq(n, next_v))
        namehint(fire.owner, f"{nm}_fire_now")
        last_col = hb.eq_const(bx, geo.bx_last)
        last_row = hb.eq_const(by, geo.by_last)
        last_out = hb.and_(last_col, last_row)
        row_step = hb.add_wrap(row_v, hb.const(geo.sh * geo.W, pw))
        v_after = hb.mux(last_col, row_step, hb.add_wrap(next_v, hb.const(geo.sw, pw)))
        hb.close_loop(v_reg, hb.mux(fire, hb.mux(last_out, hb.const(v0, pw), v_after), next_v))
        row_after = hb.mux(last_row, hb.const(v0, pw), row_step)
        row_done = hb.and_(fire, last_col)
        hb.close_loop(row_reg, hb.mux(row_done, row_after, row_v))
        by_after = hb.mux(last_row, hb.const(geo.by0, byw),
                          hb.add_wrap(by, hb.const(geo.sh, byw)))
        hb.close_loop(by_reg, hb.mux(row_done, by_after, by))
        bx_after = hb.mux(last_col, hb.const(geo.bx0, bxw), hb.add_wrap(bx, hb.const(geo.sw, bxw)))
        hb.close_loop(bx_reg, hb.mux(fire, bx_after, bx))

        # Validity of the window's rows and columns for the output being fired, registered
        # with the pixel (loaded on accept, like the taps).
        row_ok = self._tap_masks(hb, by, geo.KH, geo.H, geo.row_checks, accept, f"{nm}_row_ok")
        col_ok = self._tap_masks(hb, bx, geo.KW, geo.W, geo.col_checks, accept, f"{nm}_col_ok")
        return fire, row_ok, col_ok

    @staticmethod
    def _tap_masks(hb: HwBuilder, corner: SSAValue, taps: int, size: int, checks,
                   accept: SSAValue, name: str) -> dict[int, SSAValue]:
        """
        For each kernel row (or column) k that can hang over the padding, a registered bit:
        its input coordinate `corner - (taps - 1 - k)` lies in [0, size). `checks(k)` says
        which of the two bounds can fail for this layer (the others need no logic).
        """
        masks: dict[int, SSAValue] = {}
        for k in range(taps):
            low_edge, high_edge = checks(k)
            d = taps - 1 - k
            conds = []
            if low_edge:
                conds.append(hb.cmp_const(corner, "uge", d))
            if high_edge:
                conds.append(hb.cmp_const(corner, "ult", size + d))
            if conds:
                masks[k] = hb.reg(hb.and_(*conds), accept, name=f"{name}{k}")
        return masks

    def window(self, accept: SSAValue, row_ok: dict, col_ok: dict) -> dict[int, Sig]:
        """Sigs of the used window arguments: per-channel tap chains plus padding masks."""
        hb, geo, fmt = self.hb, self.geo, self.in_fmt
        args = self.op.body.block.args
        kk = geo.KH * geo.KW
        used = [i for i, arg in enumerate(args) if arg.uses]
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
        for i in used:
            c, (kh, kw) = i // kk, divmod(i % kk, geo.KW)
            value = chains[c][geo.tap(kh, kw)]
            conds = [m for m in (row_ok.get(kh), col_ok.get(kw)) if m is not None]
            if conds:
                if (kh, kw) not in masks:
                    masks[(kh, kw)] = hb.and_(*conds)
                value = hb.mux(masks[(kh, kw)], value, hb.const(0, fmt.bits))
            window[i] = Sig(value, fmt.signed, min(fmt.lo, 0), max(fmt.hi, 0))
        return window

    def datapath(self, window: dict[int, Sig]) -> list[Sig]:
        """Lower the region's scalar ops to comb, pipelined (see hw_builders)."""
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
            env[op.result] = hb.constant(op.value.value.data)
        elif isinstance(op, po2.ShlOp):
            env[op.result] = hb.shl_sig(env[op.input], op.amount.value.data)
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
            res = hb.rescale(x, op.shift.value.data, op.lo.value.data, op.hi.value.data)
            env[op.result] = hb.settle(res)
        elif isinstance(op, po2.YieldOp):
            return [env[v] for v in op.values]
        else:
            raise LoweringError(f"layer '{name}': cannot lower '{op.name}' inside a datapath")
    raise LoweringError(f"layer '{name}': the datapath has no po2.yield")


# ---------------------------------------------------------------------------------------
# Requant, residual add, average pool
# ---------------------------------------------------------------------------------------


def build_requant(op: po2.RequantOp, name: str, levels: int) -> LayerHw:
    x_t, y_t = _act_type(op.input), _act_type(op.output)
    ins, outs = layer_ports(stream_bits(x_t), y_t.dims[0] * y_t.fmt.bits)
    shell = ModuleShell(name, ins, outs)
    a = shell.args
    hb = HwBuilder(shell.block, a["clk"], a["rst"], a["en"], levels)
    lo, hi = clamp_bounds(y_t.fmt, op.act.data)
    shift = x_t.fmt.frac - y_t.fmt.frac
    outs_ = []
    for c in range(x_t.dims[0]):
        x = _input_sig(hb, a["in_data"], x_t.fmt, c)
        outs_.append(hb.settle(hb.rescale(x, shift, lo, hi)))
    valid_in = hb.and_(a["en"], a["in_valid"])
    valid, data, lat = _finish_outputs(hb, outs_, y_t.fmt, valid_in, name)
    report = _simple_report("requant", op, hb, lat)
    return LayerHw(shell.finish({"out_valid": valid, "out_data": data}, report), lat, report)


def _simple_report(kind: str, op: po2.LayerOp, hb: HwBuilder, latency: int, **extra) -> dict:
    report = {
        "kind": kind,
        "layer": op.layer.data,
        "input_shape": list(_act_type(op.operands[0]).dims),
        "output_shape": list(_act_type(op.results[0]).dims),
        "nonzero_weights": 0,
        "adders": hb.stats.adders,
        "register_bits": hb.stats.register_bits,
        "line_buffer_bits": 0,
        "pipeline_stages": latency,
        "comb_adder_levels": hb.stats.max_depth,
    }
    report.update(extra)
    return report


class Fifo:
    """
    A FIFO of `depth` registers: a circular buffer whose head is a mux tree on the read
    pointer. Built in two steps because the pop condition usually depends on `non_empty`
    (of this and other FIFOs): `Fifo(...)` makes the occupancy counter, `connect` the rest.
    `push`/`pop` must include `en`; pop only when non-empty. A push is visible (non_empty,
    head) one cycle later.
    """

    def __init__(self, hb: HwBuilder, depth: int, name: str):
        self.hb, self.depth, self.name = hb, max(depth, 1), name
        self.cw, _ = bits_for_range(0, self.depth)
        self.count, self._count_reg = hb.feedback_reg(self.cw, 0, f"{name}_count")
        self.non_empty = hb.cmp_const(self.count, "ne", 0)

    def connect(self, data: SSAValue, push: SSAValue, pop: SSAValue) -> SSAValue:
        hb, depth, name, cw = self.hb, self.depth, self.name, self.cw
        wptr = hb.counter(depth - 1, push, f"{name}_wptr")
        rptr = hb.counter(depth - 1, pop, f"{name}_rptr")
        entries = [hb.reg(data, hb.and_(push, hb.eq_const(wptr, i)), name=f"{name}_mem{i}")
                   for i in range(depth)]
        zero = hb.const(0, cw)
        inc = hb.mux(push, hb.mux(pop, zero, hb.const(1, cw)), hb.mux(pop, hb.const(-1, cw), zero))
        hb.close_loop(self._count_reg, hb.add_wrap(self.count, inc))
        level, bit = entries, 0
        while len(level) > 1:
            sel = hb.extract(rptr, bit, 1)
            level = [level[i] if i + 1 == len(level) else hb.mux(sel, level[i + 1], level[i])
                     for i in range(0, len(level), 2)]
            bit += 1
        return level[0]


def build_residual(op: po2.ResidualAddOp, name: str, levels: int, depth_a: int,
                   depth_b: int) -> LayerHw:
    a_t, b_t, y_t = _act_type(op.lhs), _act_type(op.rhs), _act_type(op.output)
    ins, outs = layer_ports(stream_bits(a_t), y_t.dims[0] * y_t.fmt.bits, two_inputs=True)
    # The two operands may have different formats: give b its own width.
    ins[6] = ("b_data", IntegerType(stream_bits(b_t)))
    shell = ModuleShell(name, ins, outs)
    a = shell.args
    hb = HwBuilder(shell.block, a["clk"], a["rst"], a["en"], levels)
    en = a["en"]
    fifo_a = Fifo(hb, depth_a, f"{name}_fifo_a")
    fifo_b = Fifo(hb, depth_b, f"{name}_fifo_b")
    pop = hb.and_(en, fifo_a.non_empty, fifo_b.non_empty)
    namehint(pop.owner, f"{name}_pop")
    head_a = fifo_a.connect(a["a_data"], hb.and_(en, a["a_valid"]), pop)
    head_b = fifo_b.connect(a["b_data"], hb.and_(en, a["b_valid"]), pop)
    fa, fb, fy = a_t.fmt.frac, b_t.fmt.frac, y_t.fmt.frac
    frac = max(fa, fb)
    lo, hi = clamp_bounds(y_t.fmt, op.act.data)
    outs_ = []
    for c in range(y_t.dims[0]):
        xa = hb.shl_sig(_input_sig(hb, head_a, a_t.fmt, c), frac - fa)
        xb = hb.shl_sig(_input_sig(hb, head_b, b_t.fmt, c), frac - fb)
        s = hb.settle(hb.add_sig(xa, xb))
        s = hb.make_room(s, 2)
        outs_.append(hb.settle(hb.rescale(s, frac - fy, lo, hi)))
    valid, data, lat = _finish_outputs(hb, outs_, y_t.fmt, pop, name)
    latency = 1 + lat
    report = _simple_report("residual_add", op, hb, latency, fifo_depths=[depth_a, depth_b])
    return LayerHw(shell.finish({"out_valid": valid, "out_data": data}, report), latency, report)


def build_avgpool(op: po2.AvgPoolOp, name: str, levels: int) -> LayerHw:
    x_t, y_t = _act_type(op.input), _act_type(op.output)
    c_in, h, w = x_t.dims
    count = h * w
    ins, outs = layer_ports(stream_bits(x_t), y_t.dims[0] * y_t.fmt.bits)
    shell = ModuleShell(name, ins, outs)
    a = shell.args
    hb = HwBuilder(shell.block, a["clk"], a["rst"], a["en"], levels)
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
    outs_ = []
    for c in range(c_in):
        x = hb.resize(hb.extract(a["in_data"], c * x_t.fmt.bits, x_t.fmt.bits), x_t.fmt.signed, aw)
        acc, reg = hb.feedback_reg(aw, None, f"{name}_sum{c}")
        base = hb.mux(first, hb.const(0, aw), acc)
        hb.close_loop(reg, hb.mux(accept, hb.add_wrap(base, x), acc))
        hb.stats.adders += 1
        total = Sig(acc, asigned, acc_lo, acc_hi)
        # total * mult as shift/add over the multiplier's signed digits (CSD).
        pos, neg = [], []
        for bit, digit in enumerate(csd_digits(mult)):
            if digit:
                (pos if digit > 0 else neg).append(hb.shl_sig(total, bit))
        prod = hb.adder_tree(pos, name=f"{name}_mul{c}")
        if neg:
            n = hb.adder_tree(neg, name=f"{name}_mulneg{c}")
            prod, n = hb.align([hb.make_room(prod, 1), hb.make_room(n, 1)])
            prod = hb.settle(hb.sub_sig(prod, n))
        prod = hb.make_room(hb.settle(prod), 2)
        outs_.append(hb.settle(hb.rescale(prod, rshift, lo, hi)))
    valid, data, lat = _finish_outputs(hb, outs_, y_t.fmt, fire_r, name)
    latency = 1 + lat
    report = _simple_report("avgpool", op, hb, latency, multiplier=mult, shift=shift)
    return LayerHw(shell.finish({"out_valid": valid, "out_data": data}, report), latency, report)


def csd_digits(value: int) -> list[int]:
    """Canonical signed digits of value >= 0, least significant first (digits in -1, 0, 1)."""
    digits = []
    while value:
        if value & 1:
            d = 2 - (value & 3)  # 1 if value % 4 == 1, -1 if value % 4 == 3
            value -= d
        else:
            d = 0
        digits.append(d)
        value >>= 1
    return digits


# ---------------------------------------------------------------------------------------
# Stream timing (FIFO depths)
# ---------------------------------------------------------------------------------------

FRAMES = 4


@dataclass
class StreamTiming:
    """
    When the items of a stream can exist: item k of an image needs the top-level input
    pixel `need[k]` (index over back-to-back images: image i's pixels are i*frame_pixels
    onwards) to have been accepted, then between `lat_lo` and `lat_hi` more enabled cycles
    pass before its valid.
    """

    need: np.ndarray  # per item of image 0
    frame_pixels: int
    lat_lo: int
    lat_hi: int

    @property
    def per_frame(self) -> int:
        return len(self.need)

    def needed(self, index: np.ndarray) -> np.ndarray:
        """`need` of global item indices (images are periodic)."""
        frames, k = np.divmod(np.asarray(index, dtype=np.int64), self.per_frame)
        return self.need[k] + frames * self.frame_pixels


def _timing(need: np.ndarray, frame_pixels: int, lat_lo: int, lat_hi: int) -> StreamTiming:
    return StreamTiming(np.asarray(need, dtype=np.int64), frame_pixels, lat_lo, lat_hi)


def fifo_depth(early: StreamTiming, late: StreamTiming) -> int:
    """
    Depth for the FIFO of operand `early` (pushed by its valid, popped with `late`'s items):
    when `late` pushes item k, every early item j with need[j] <= need_late[k] + slack may
    have been pushed (slack: how many more pixels can arrive, one per cycle at most, during
    late's extra latency), and at most k - 1 have been popped. Plus one for the pop that is
    registered a cycle after the push, plus one of margin.
    """
    slack = max(0, late.lat_hi - early.lat_lo)
    ks = np.arange(2 * early.per_frame)
    early_need = early.needed(np.arange(FRAMES * early.per_frame))
    late_need = late.needed(ks)
    pushed = np.searchsorted(early_need, late_need + slack, side="right")
    return int(max(1, (pushed - ks).max())) + 2


# ---------------------------------------------------------------------------------------
# The pass
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Po2ToHwPass(ModulePass):
    """Lower the unrolled po2 network to hw/comb/seq: one module per layer, NPU, top."""

    name = "po2-to-hw"

    levels_per_stage: int = 2
    top_name: str = ""
    npu_lanes: int = 0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        funcs = [f for f in op.ops if isinstance(f, func.FuncOp)]
        if len(funcs) != 1:
            raise LoweringError(f"po2-to-hw expects exactly one func.func, found {len(funcs)}")
        fn = funcs[0]
        modules = NetworkLowering(fn, self).build()
        fn.detach()
        fn.erase()
        for m in modules:
            op.body.block.add_op(m)


class NetworkLowering:
    """
    Layer modules in graph order, then the top that instantiates and wires them.

    `iter_modules` yields each module as soon as it is built, before building the next,
    and keeps no reference to it (only its name and port types, which the top needs): a
    consumer that writes each module out and erases it holds one layer's IR at a time
    (hashiflex/flow.py). `prepare`, if given, maps each layer-level op of the func to the op
    to lower in its place: the streaming flow unrolls a `po2.conv2d` there, just in time,
    into a detached `po2.unrolled_conv2d` (same operand; the conv's result stays the key of
    the stream). `build` is the whole-module form used by the pass.
    """

    def __init__(self, fn: func.FuncOp, options: Po2ToHwPass, prepare=None):
        self.fn, self.opt = fn, options
        self.levels = max(1, options.levels_per_stage)
        self.used_names: set[str] = set()
        self.prepare = prepare

    def unique(self, name: str) -> str:
        base, i = sv_name(name), 1
        cand = base
        while cand in self.used_names:
            i += 1
            cand = f"{base}_{i}"
        self.used_names.add(cand)
        return cand

    def build(self) -> list[hw.HWModuleOp]:
        return list(self.iter_modules())

    def iter_modules(self):
        fn = self.fn
        if len(fn.args) != 1 or not isinstance(fn.args[0].type, po2.ActType):
            raise LoweringError(f"@{fn.sym_name.data} must take one !po2.act image argument")
        in_t = fn.args[0].type
        top_name = self.opt.top_name or f"{fn.sym_name.data}_top"
        self.used_names.add(sv_name(top_name))
        frame_pixels = in_t.dims[1] * in_t.dims[2] if len(in_t.dims) == 3 else 1
        timing: dict[SSAValue, StreamTiming] = {
            fn.args[0]: _timing(np.arange(frame_pixels), frame_pixels, 0, 0)}
        plan: list[tuple[Operation, LayerHw | None, str]] = []
        npu_op = None
        result = None
        for op in fn.body.block.ops:
            if isinstance(op, func.ReturnOp):
                result = op.operands[0]
                break
            layer = op.properties.get("layer")
            lname = layer.data if isinstance(layer, StringAttr) else op.name
            lowered = self.prepare(op) if self.prepare is not None else op
            if isinstance(lowered, po2.UnrolledConv2dOp):
                # `lowered` may be a detached stand-in for `op` with the same operand: the
                # streams are keyed by `op`'s values.
                name = self.unique(lname)
                hw_ = ConvLowering(lowered, name, self.levels).build()
                geo = ConvGeometry.of(lowered)
                src = timing[op.operands[0]]
                need = src.needed(geo.triggers())
                timing[op.results[0]] = _timing(need, frame_pixels, src.lat_lo + hw_.latency,
                                                src.lat_hi + hw_.latency)
            elif isinstance(op, po2.RequantOp):
                name = self.unique(lname)
                hw_ = build_requant(op, name, self.levels)
                src = timing[op.input]
                timing[op.output] = _timing(src.need, frame_pixels, src.lat_lo + hw_.latency,
                                            src.lat_hi + hw_.latency)
            elif isinstance(op, po2.ResidualAddOp):
                name = self.unique(lname)
                ta, tb = timing[op.lhs], timing[op.rhs]
                da, db = fifo_depth(ta, tb), fifo_depth(tb, ta)
                hw_ = build_residual(op, name, self.levels, da, db)
                need = np.maximum(ta.need, tb.need)
                timing[op.output] = _timing(need, frame_pixels,
                                            min(ta.lat_lo, tb.lat_lo) + hw_.latency,
                                            max(ta.lat_hi, tb.lat_hi) + hw_.latency)
            elif isinstance(op, po2.AvgPoolOp):
                name = self.unique(lname)
                hw_ = build_avgpool(op, name, self.levels)
                src = timing[op.input]
                need = src.needed(np.array([src.per_frame - 1]))
                timing[op.output] = _timing(need, frame_pixels, src.lat_lo + hw_.latency,
                                            src.lat_hi + hw_.latency)
            elif isinstance(op, po2.FlattenOp):
                x_t = _act_type(op.input)
                if len(x_t.dims) == 3 and x_t.dims[1:] != (1, 1):
                    raise LoweringError(
                        f"layer '{lname}': po2-to-hw flattens only Cx1x1 tensors (after global "
                        f"pooling); got {list(x_t.dims)}")
                name, hw_ = "", None
                timing[op.output] = timing[op.input]
            elif isinstance(op, po2.NpuLinearOp):
                if npu_op is not None:
                    raise LoweringError(f"layer '{lname}': only one po2.npu_linear is supported")
                npu_op = op
                name = self.unique(lname)
                hw_ = self.build_npu(op, name, frame_pixels)
                timing[op.output] = timing[op.input]
            elif isinstance(op, po2.Conv2dOp):
                raise LoweringError(f"layer '{lname}': po2.conv2d must be unrolled first "
                                    f"(run po2-unroll before po2-to-hw)")
            else:
                raise LoweringError(f"layer '{lname}': po2-to-hw cannot lower '{op.name}'")
            lowered = None  # the stand-in's datapath may be freed while suspended
            if hw_ is not None and hw_.module is not None:
                # No local keeps the module while the generator is suspended.
                yield _take_module(hw_)
            plan.append((op, hw_, name))
        if result is None:
            raise LoweringError(f"@{fn.sym_name.data} has no func.return")
        if npu_op is not None and result is not npu_op.output:
            raise LoweringError("the network must return the result of its po2.npu_linear")
        # Latency model: image 0's pixels are accepted one per cycle from cycle 0; its result
        # needs input pixel `need[-1]`, then at most `lat_hi` cycles of layer pipelines and
        # the NPU's own latency. Simulation measures the same quantity.
        final = timing[result]
        npu_latency = next((hw_.latency for op, hw_, _ in plan if op is npu_op), 0)
        latency = int(final.need[-1]) + final.lat_hi + npu_latency
        yield self.build_top(sv_name(top_name), in_t, plan, result, npu_op, latency)

    def build_npu(self, op: po2.NpuLinearOp, name: str, frame_pixels: int) -> LayerHw:
        from hashiflex.passes import npu_to_hw

        x_t, y_t = _act_type(op.input), _act_type(op.output)
        k, n = x_t.dims[0], y_t.dims[0]
        lanes = self.opt.npu_lanes or npu_to_hw.default_lanes(k, n, frame_pixels)
        module = npu_to_hw.build_npu_module(
            name,
            in_features=k,
            out_features=n,
            in_bits=x_t.fmt.bits,
            in_signed=x_t.fmt.signed,
            weight_bits=op.weight_bits.value.data,
            bias_bits=op.bias_bits.value.data,
            logit_bits=y_t.fmt.bits,
            lanes=lanes,
            init_weights=op.weight_matrix(),
            init_bias=np.asarray(po2._array_prop(op, "bias")),
        )
        report = {
            "kind": "npu",
            "layer": op.layer.data,
            "input_shape": list(x_t.dims),
            "output_shape": list(y_t.dims),
            "lanes": lanes,
            "weight_bits": op.weight_bits.value.data,
            # two banks of N*K weights and N biases (see npu_to_hw)
            "weight_memory_bits": 2 * (n * k * op.weight_bits.value.data + n * op.bias_bits.value.data),
            "cycles_per_image": npu_to_hw.npu_cycles_per_image(k, n, lanes),
            "pipeline_stages": npu_to_hw.npu_latency(k, n, lanes),
            **_counted_resources(module),
        }
        if REPORT_ATTR not in module.attributes:
            module.attributes[REPORT_ATTR] = _to_attr(report)
        return LayerHw(module, npu_to_hw.npu_latency(k, n, lanes), report)

    @staticmethod
    def _drive_swap_at(hb: HwBuilder, in_t: po2.ActType, in_valid: SSAValue, en: SSAValue,
                       npu_inst: hw.InstanceOp) -> None:
        """
        The NPU flips weight banks at an image boundary given by `swap_at`: the number of
        images whose first pixel the top had accepted *before* the cycle of the swap pulse.
        So every image is classified with the weights that were current when it entered,
        however many images are still in flight inside the pipeline.
        """
        pixels_per_image = in_t.dims[1] * in_t.dims[2]
        accept = hb.and_(in_valid, en)
        pixel = hb.counter(pixels_per_image - 1, accept, name="in_pixel")
        first_pixel = hb.and_(accept, hb.eq_const(pixel, 0))
        started, reg = hb.feedback_reg(32, 0, "images_started")
        hb.close_loop(reg, hb.mux(first_pixel, hb.add_wrap(started, hb.const(1, 32)), started))
        names = [n.data for n in npu_inst.arg_names.data]
        npu_inst.operands[names.index("swap_at")] = started

    def build_top(self, name: str, in_t: po2.ActType, plan, result: SSAValue,
                  npu_op: po2.NpuLinearOp | None, latency_cycles: int = 0) -> hw.HWModuleOp:
        ins: list[tuple[str, Attribute]] = [
            ("clk", seq.ClockType()), ("rst", i1), ("in_valid", i1),
            ("in_data", IntegerType(stream_bits(in_t)))]
        outs: list[tuple[str, Attribute]] = [("in_ready", i1), ("out_valid", i1)]
        npu_mod = None
        if npu_op is not None:
            npu_hw = next(hw_ for op, hw_, _ in plan if op is npu_op)
            ports = {p.port_name.data: p.type for p in npu_hw.module_type.ports.data}
            ins += [("npu_we", i1), ("npu_waddr", ports["waddr"]), ("npu_wdata", ports["wdata"]),
                    ("npu_swap", i1)]
            outs += [("out_class", ports["out_class"]), ("out_logits", ports["out_logits"])]
        else:
            outs += [("out_data", IntegerType(stream_bits(_act_type(result))))]
        shell = ModuleShell(name, ins, outs)
        a = shell.args
        hb = HwBuilder(shell.block, a["clk"], a["rst"])
        en_placeholder = hb.const(1, 1)
        streams: dict[SSAValue, tuple[SSAValue, SSAValue]] = {
            self.fn.args[0]: (a["in_valid"], a["in_data"])}
        gated: list[hw.InstanceOp] = []
        npu_inst = None
        for op, hw_, lname in plan:
            if hw_ is None:  # flatten: wiring
                streams[op.results[0]] = streams[op.operands[0]]
                continue
            mod_ports = hw_.module_type.ports.data
            out_types = [(p.port_name.data, p.type) for p in mod_ports
                         if p.dir.data == hw.Direction.OUTPUT]
            if op is npu_op:
                valid, data = streams[op.operands[0]]
                inputs = [("clk", a["clk"]), ("rst", a["rst"]), ("in_valid", valid),
                          ("in_data", data), ("we", a["npu_we"]), ("waddr", a["npu_waddr"]),
                          ("wdata", a["npu_wdata"]), ("swap", a["npu_swap"]),
                          ("swap_at", hb.const(0, 32))]
                names = [p.port_name.data for p in mod_ports
                         if p.dir.data == hw.Direction.INPUT]
                inputs = [(n, v) for n, v in inputs if n in names]
                inst = hw.InstanceOp(f"{lname}_inst", FlatSymbolRefAttr(hw_.symbol),
                                     inputs, out_types)
                shell.block.add_op(inst)
                npu_inst = inst
                continue
            inputs = [("clk", a["clk"]), ("rst", a["rst"]), ("en", en_placeholder)]
            if isinstance(op, po2.ResidualAddOp):
                (va, da), (vb, db) = streams[op.lhs], streams[op.rhs]
                inputs += [("a_valid", va), ("a_data", da), ("b_valid", vb), ("b_data", db)]
            else:
                valid, data = streams[op.operands[0]]
                inputs += [("in_valid", valid), ("in_data", data)]
            inst = hw.InstanceOp(f"{lname}_inst", FlatSymbolRefAttr(hw_.symbol), inputs, out_types)
            shell.block.add_op(inst)
            gated.append(inst)
            streams[op.results[0]] = (inst.results[0], inst.results[1])
        if npu_inst is not None:
            results = dict(zip([n.data for n in npu_inst.result_names.data], npu_inst.results))
            en = hb.not_(results["stall"])
            namehint(en.owner, "en")
            for inst in gated:
                inst.operands[2] = en
            self._drive_swap_at(hb, in_t, a["in_valid"], en, npu_inst)
            values = {"in_ready": en, "out_valid": results["out_valid"],
                      "out_class": results["out_class"], "out_logits": results["out_logits"]}
        else:
            valid, data = streams[result]
            values = {"in_ready": en_placeholder, "out_valid": valid, "out_data": data}
        layers = [hw_.report for _, hw_, _ in plan if hw_ is not None]
        report = {
            "kind": "top",
            "layer": name,
            "input_shape": list(in_t.dims),
            "output_shape": list(_act_type(result).dims),
            "cycles_per_image": in_t.dims[1] * in_t.dims[2] if len(in_t.dims) == 3 else 1,
            "pipeline_stages": sum(l.get("pipeline_stages", 0) for l in layers),
            "latency_cycles": latency_cycles,
        }
        return shell.finish(values, report)
