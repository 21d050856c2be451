"""
Named builders of hw/comb/seq structure, shared by the lowerings to hardware.

Why a library: the lowering of a MobileNetV2 builds hundreds of thousands of comb ops, all
from a handful of shapes (extend, shift as wiring, registers with enable, an exact adder
tree, the requantisation). Writing each shape once, in CIRCT's strict style (comb operands
have equal widths, nothing is extended implicitly, a constant shift is `concat`/`extract`),
keeps the lowerings short and makes each shape testable on its own.

Numbers travel as `Sig`: a signless `iN` SSA value plus what the bits mean (signed or not)
and the exact interval of values it can hold, so that every adder is exactly as wide as
`golden.semantics.bits_for_range` of its result interval and never overflows; `lat` is the
number of pipeline registers since the datapath's input, `depth` the adder levels since the
last register (the combinational path the clock must cover).

Arithmetic is modular on purpose: an operand is sign/zero-extended or truncated to the width
of the result. Truncation is exact because the true result fits the result's width, and
addition modulo 2^w only needs its operands modulo 2^w.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from functools import lru_cache

from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, IntegerType, StringAttr, i32, i64
from xdsl.ir import Block, Operation, SSAValue

from hashiflex.golden.semantics import bits_for_range, round_shift, saturate

NAMEHINT = "sv.namehint"


def namehint(op: Operation, name: str) -> Operation:
    """Name the value of `op` in the generated SystemVerilog (CIRCT's `sv.namehint`)."""
    op.attributes[NAMEHINT] = StringAttr(name)
    return op


# Ops are made with `Op.create` and types come from a cache: the IRDL constructors verify
# and infer far more than a lowering that knows its types needs, and cost ~4x as much.


@lru_cache(maxsize=None)
def int_type(width: int) -> IntegerType:
    return IntegerType(width)


@lru_cache(maxsize=None)
def _predicate(pred: str) -> IntegerAttr:
    return IntegerAttr(comb.ICMP_COMPARISON_OPERATIONS.index(pred), i64)


@lru_cache(maxsize=None)
def _low_bit(low: int) -> IntegerAttr:
    return IntegerAttr(low, i32)


@lru_cache(maxsize=None)
def _reg_segments(with_reset: bool) -> DenseArrayBase:
    n = int(with_reset)
    return DenseArrayBase.from_list(i32, [1, 1, n, n, 0])


def width_of(value: SSAValue) -> int:
    typ = value.type
    assert isinstance(typ, IntegerType), f"expected an integer value, got {typ}"
    return typ.width.data


@dataclass(frozen=True)
class Sig:
    """An exact integer on wires: `value` read as signed/unsigned holds a number in [lo, hi]."""

    value: SSAValue
    signed: bool
    lo: int
    hi: int
    lat: int = 0
    depth: int = 0
    const: bool = False

    @property
    def width(self) -> int:
        return width_of(self.value)


@dataclass
class HwStats:
    """What the report counts while a module is built."""

    adders: int = 0
    register_bits: int = 0
    max_depth: int = 0


@dataclass
class HwBuilder:
    """
    Appends hw/comb/seq ops to `block` (the body of an `hw.module`). `clk`/`rst` are the
    module's clock and synchronous reset, `en` the global stall enable (every pipeline
    register of a layer holds when it is 0).
    """

    block: Block
    clk: SSAValue
    rst: SSAValue | None = None
    en: SSAValue | None = None
    levels_per_stage: int = 2
    stats: HwStats = field(default_factory=HwStats)
    _consts: dict[tuple[int, int], SSAValue] = field(default_factory=dict)
    _delays: dict[SSAValue, list[SSAValue]] = field(default_factory=dict)

    # -- plumbing ----------------------------------------------------------------------

    def add(self, op: Operation, name: str | None = None) -> SSAValue:
        self.block.add_op(op)
        if name:
            namehint(op, name)
        return op.results[0]

    # -- constants and wiring ------------------------------------------------------------

    def const(self, value: int, width: int) -> SSAValue:
        """hw.constant of `value` (two's complement modulo 2^width), one per module."""
        value &= (1 << width) - 1
        if value >= 1 << (width - 1):
            value -= 1 << width
        key = (value, width)
        if (found := self._consts.get(key)) is None:
            op = hw.ConstantOp.create(result_types=[int_type(width)],
                                      properties={"value": IntegerAttr(value, int_type(width))})
            found = self._consts[key] = self.add(op)
        return found

    def extract(self, value: SSAValue, low: int, width: int) -> SSAValue:
        """Bits [low, low + width) of `value` (truncation when low == 0)."""
        if low == 0 and width == width_of(value):
            return value
        return self.add(comb.ExtractOp.create(operands=[value], result_types=[int_type(width)],
                                              properties={"lowBit": _low_bit(low)}))

    def concat(self, parts_msb_first: Sequence[SSAValue]) -> SSAValue:
        if len(parts_msb_first) == 1:
            return parts_msb_first[0]
        total = sum(width_of(p) for p in parts_msb_first)
        return self.add(comb.ConcatOp.create(operands=list(parts_msb_first),
                                             result_types=[int_type(total)]))

    def zext(self, value: SSAValue, width: int) -> SSAValue:
        extra = width - width_of(value)
        assert extra >= 0, "zext cannot narrow"
        return value if extra == 0 else self.concat([self.const(0, extra), value])

    def sext(self, value: SSAValue, width: int) -> SSAValue:
        w = width_of(value)
        extra = width - w
        assert extra >= 0, "sext cannot narrow"
        if extra == 0:
            return value
        sign = self.extract(value, w - 1, 1)
        fill = sign if extra == 1 else self.add(
            comb.ReplicateOp.create(operands=[sign], result_types=[int_type(extra)]))
        return self.concat([fill, value])

    def resize(self, value: SSAValue, signed: bool, width: int) -> SSAValue:
        """Extend (by signedness) or truncate `value` to `width` bits (modular, see module doc)."""
        w = width_of(value)
        if width <= w:
            return self.extract(value, 0, width)
        return self.sext(value, width) if signed else self.zext(value, width)

    def shl_const(self, value: SSAValue, amount: int) -> SSAValue:
        """value * 2^amount as wiring: concat with `amount` zero bits."""
        return value if amount == 0 else self.concat([value, self.const(0, amount)])

    # -- logic -----------------------------------------------------------------------------

    def _op(self, cls, operands: list[SSAValue], result_type=None) -> SSAValue:
        typ = result_type or operands[-1].type
        return self.add(cls.create(operands=operands, result_types=[typ]))

    def and_(self, *values: SSAValue) -> SSAValue:
        return values[0] if len(values) == 1 else self._op(comb.AndOp, list(values))

    def or_(self, *values: SSAValue) -> SSAValue:
        return values[0] if len(values) == 1 else self._op(comb.OrOp, list(values))

    def not_(self, value: SSAValue) -> SSAValue:
        return self._op(comb.XorOp, [value, self.const(-1, width_of(value))])

    def mux(self, cond: SSAValue, if_true: SSAValue, if_false: SSAValue) -> SSAValue:
        return self._op(comb.MuxOp, [cond, if_true, if_false])

    def icmp(self, a: SSAValue, b: SSAValue, pred: str) -> SSAValue:
        return self.add(comb.ICmpOp.create(operands=[a, b], result_types=[int_type(1)],
                                           properties={"predicate": _predicate(pred)}))

    def cmp_const(self, value: SSAValue, pred: str, constant: int) -> SSAValue:
        """comb.icmp `pred` (eq, ne, ult, slt, ...) of `value` against a constant."""
        return self.icmp(value, self.const(constant, width_of(value)), pred)

    def eq(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.icmp(a, b, "eq")

    def eq_const(self, value: SSAValue, constant: int) -> SSAValue:
        return self.cmp_const(value, "eq", constant)

    def add_wrap(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Plain modular a + b of equal widths (counters; not counted as datapath adders)."""
        return self._op(comb.AddOp, [a, b])

    # -- registers -------------------------------------------------------------------------

    def reg(
        self,
        value: SSAValue,
        enable: SSAValue | None = None,
        reset_value: int | None = None,
        name: str | None = None,
    ) -> SSAValue:
        """
        A `seq.compreg` of `value` that loads only when `enable` is 1 (a `comb.mux` holding
        its own output otherwise) and, if `reset_value` is given, is set by the synchronous
        reset. Returns the register's output.
        """
        width = width_of(value)
        reset = None
        if reset_value is not None:
            assert self.rst is not None, "a reset register needs the module's rst"
            reset = (self.rst, self.const(reset_value, width))
        reg = self._compreg(value, reset)
        if name:
            namehint(reg, name)
        self.stats.register_bits += width
        if enable is not None:
            # The register feeds its own hold mux: build it after the register, then close
            # the loop (hw.module bodies are graph regions).
            reg.operands[0] = self.mux(enable, value, reg.results[0])
        return reg.results[0]

    def feedback_reg(
        self, width: int, reset_value: int | None = None, name: str | None = None
    ) -> tuple[SSAValue, seq.CompRegOp]:
        """A register whose next value is set later with `close_loop` (counters, FSMs)."""
        placeholder = self.const(0, width)
        reset = None if reset_value is None else (self.rst, self.const(reset_value, width))
        reg = self._compreg(placeholder, reset)
        if name:
            namehint(reg, name)
        self.stats.register_bits += width
        return reg.results[0], reg

    def _compreg(self, value: SSAValue, reset: tuple[SSAValue, SSAValue] | None) -> seq.CompRegOp:
        operands = [value, self.clk, *(reset or ())]
        reg = seq.CompRegOp.create(operands=operands, result_types=[value.type],
                                   attributes={"operandSegmentSizes": _reg_segments(bool(reset))})
        self.block.add_op(reg)
        return reg

    @staticmethod
    def close_loop(reg: seq.CompRegOp, next_value: SSAValue) -> None:
        reg.operands[0] = next_value

    def delay(self, value: SSAValue, cycles: int, enable: SSAValue | None = None,
              reset_value: int | None = None, name: str | None = None) -> SSAValue:
        """`value` delayed by `cycles` registers (enabled by `enable`); shared per value."""
        line = self._delays.setdefault(value, [value])
        while len(line) <= cycles:
            stage = len(line)
            line.append(self.reg(line[-1], enable, reset_value,
                                 f"{name}_d{stage}" if name else None))
        return line[cycles]

    def counter(self, limit: int, step: SSAValue, name: str | None = None) -> SSAValue:
        """Counts 0, 1, ..., limit, 0, ... advancing when `step` is 1 (reset to 0)."""
        width, _ = bits_for_range(0, limit)
        count, reg = self.feedback_reg(width, 0, name)
        wrap = self.eq_const(count, limit)
        inc = self.add_wrap(count, self.const(1, width))
        nxt = self.mux(wrap, self.const(0, width), inc)
        self.close_loop(reg, self.mux(step, nxt, count))
        return count

    # -- exact arithmetic on Sig -------------------------------------------------------------

    def constant(self, value: int) -> Sig:
        width, signed = bits_for_range(value, value)
        return Sig(self.const(value, width), signed, value, value, const=True)

    def _extend(self, x: Sig, width: int) -> SSAValue:
        return self.resize(x.value, x.signed, width)

    def _result(self, lo: int, hi: int, a: Sig, b: Sig | None, op_cls, *operands) -> Sig:
        width, signed = bits_for_range(lo, hi)
        args = [self._extend(x, width) for x in operands]
        value = self._op(op_cls, args)
        self.stats.adders += 1
        depth = max(a.depth, b.depth if b else 0) + 1
        self.stats.max_depth = max(self.stats.max_depth, depth)
        lat = max(a.lat, b.lat if b else 0)
        return Sig(value, signed, lo, hi, lat, depth)

    def add_sig(self, a: Sig, b: Sig) -> Sig:
        """Exact a + b (operands must already be at the same latency)."""
        return self._result(a.lo + b.lo, a.hi + b.hi, a, b, comb.AddOp, a, b)

    def sub_sig(self, a: Sig, b: Sig) -> Sig:
        return self._result(a.lo - b.hi, a.hi - b.lo, a, b, comb.SubOp, a, b)

    def neg_sig(self, a: Sig) -> Sig:
        zero = Sig(self.const(0, 1), False, 0, 0, const=True)
        return self._result(-a.hi, -a.lo, a, None, comb.SubOp, zero, a)

    def shl_sig(self, a: Sig, amount: int) -> Sig:
        return replace(a, value=self.shl_const(a.value, amount),
                       lo=a.lo << amount, hi=a.hi << amount)

    def fit(self, a: Sig, lo: int, hi: int) -> Sig:
        """`a` narrowed or widened to the minimal type of [lo, hi] (a's values lie inside)."""
        width, signed = bits_for_range(lo, hi)
        return replace(a, value=self._extend(a, width), signed=signed, lo=lo, hi=hi)

    # -- pipelining ----------------------------------------------------------------------------

    def stage(self, x: Sig, name: str | None = None) -> Sig:
        """A pipeline register (enabled by `en`) after `x`; constants pass through."""
        if x.const:
            return x
        return replace(x, value=self.reg(x.value, self.en, name=name), lat=x.lat + 1, depth=0)

    def retime(self, x: Sig, lat: int) -> Sig:
        """`x` delayed to latency `lat` (>= x.lat) through shared delay registers."""
        if x.const or x.lat == lat:
            return x
        assert lat > x.lat, "cannot make a value earlier"
        value = self.delay(x.value, lat - x.lat, self.en)
        return replace(x, value=value, lat=lat, depth=0)

    def align(self, xs: Sequence[Sig]) -> list[Sig]:
        lat = max((x.lat for x in xs if not x.const), default=0)
        return [self.retime(x, lat) for x in xs]

    def make_room(self, x: Sig, levels: int) -> Sig:
        """Register `x` first if `levels` more adder levels would exceed levels_per_stage."""
        if x.depth > 0 and x.depth + levels > self.levels_per_stage:
            return self.stage(x)
        return x

    def settle(self, x: Sig) -> Sig:
        """Register `x` when its combinational depth has reached levels_per_stage."""
        return self.stage(x) if x.depth >= self.levels_per_stage else x

    def adder_tree(self, terms: Sequence[Sig], name: str | None = None) -> Sig:
        """
        The exact sum of `terms` as a balanced binary tree of two-input adders, each as
        wide as the interval of its result, with a register after every `levels_per_stage`
        adder levels (all values of a level are registered together, so the tree stays
        latency-balanced). Returns the sum; its `lat` is the tree's output latency.
        """
        assert terms, "an adder tree needs at least one term"
        consts = [t for t in terms if t.const]
        level = self.align([t for t in terms if not t.const])
        if consts:
            total = sum(c.lo for c in consts)
            if total != 0 or not level:
                level.append(self.constant(total))
        if len(level) == 1:
            return level[0]
        # Pair terms of similar magnitude so that narrow adders add narrow values.
        level.sort(key=lambda t: max(abs(t.lo), abs(t.hi)))
        depth = max(t.depth for t in level)
        if depth + 1 > self.levels_per_stage and depth > 0:
            level = [self.stage(t) for t in level]
        index = 0
        while len(level) > 1:
            nxt = [self.add_sig(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if name:
                for t in nxt:
                    namehint(t.value.owner, f"{name}_{index}")
                    index += 1
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
            if max(t.depth for t in level) >= self.levels_per_stage and len(level) > 1:
                level = [self.stage(t) for t in level]
        return level[0]

    def rescale(self, x: Sig, shift: int, lo: int, hi: int) -> Sig:
        """
        saturate(round_shift(x, shift), lo, hi) of docs/semantics.md: add 2^(shift-1),
        arithmetic shift right as `extract` (left shift as wiring when shift <= 0), then
        clamp with comparators and muxes. Costs at most two adder levels (the rounding adder,
        the comparators); the result is the minimal type of [lo, hi].
        """
        if x.const:
            return self.constant(saturate(round_shift(x.lo, shift), lo, hi))
        if shift > 0:
            half = self.constant(1 << (shift - 1))
            t = self.add_sig(x, half)
            w = t.width
            y_lo, y_hi = t.lo >> shift, t.hi >> shift
            if shift < w:
                value = self.extract(t.value, shift, w - shift)
            elif t.signed:
                value = self.extract(t.value, w - 1, 1)
            else:
                value = self.const(0, 1)
            # Dropping the low bits of two's complement is the arithmetic shift (floor);
            # when every bit is shifted out only the sign (-1 or 0) is left.
            y = self.fit(Sig(value, t.signed, y_lo, y_hi, t.lat, t.depth), y_lo, y_hi)
        elif shift < 0:
            y = self.shl_sig(x, -shift)
        else:
            y = x
        if y.hi <= lo:
            return self.constant(lo)
        if y.lo >= hi:
            return self.constant(hi)
        value = y.value
        pred_lt, pred_gt = ("slt", "sgt") if y.signed else ("ult", "ugt")
        depth = y.depth
        if y.hi > hi:
            over = self.cmp_const(value, pred_gt, hi)
            value = self.mux(over, self.const(hi, y.width), value)
            depth = y.depth + 1
        if y.lo < lo:
            under = self.cmp_const(y.value, pred_lt, lo)
            value = self.mux(under, self.const(lo, y.width), value)
            depth = y.depth + 1
        self.stats.max_depth = max(self.stats.max_depth, depth)
        out = Sig(value, y.signed, max(y.lo, lo), min(y.hi, hi), y.lat, depth)
        return self.fit(out, out.lo, out.hi)
