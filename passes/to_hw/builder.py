"""
The one builder of hw/comb/seq structure, shared by every lowering to hardware.

Why one library: the lowering of a MobileNetV2 builds hundreds of thousands of comb ops, all
from a handful of shapes (extend, shift as wiring, registers with enable, feedback registers,
an exact adder tree, the requantisation, mux trees, a FIFO, a constant multiply). Writing
each shape once, in CIRCT's strict style (comb operands have equal widths, nothing is
extended implicitly, a constant shift is `concat`/`extract`), keeps the lowerings short and
makes each shape testable on its own. Conventions, once: `concat` takes its parts MSB first
(as `comb.concat`), `resize(value, width, signed)`, predicates by their names in xDSL's
`comb.ICMP_COMPARISON_OPERATIONS`, `name=` sets CIRCT's `sv.namehint`.

Numbers travel as `Sig`: a signless `iN` SSA value plus what the bits mean (signed or not)
and the exact interval of values it can hold, so that every adder is exactly as wide as
`golden.semantics.bits_for_range` of its result interval and never overflows; `lat` is the
number of pipeline registers since the datapath's input, `depth` the adder levels since the
last register (the combinational path the clock must cover).

Arithmetic is modular on purpose: an operand is sign/zero-extended or truncated to the width
of the result. Truncation is exact because the true result fits the result's width, and
addition modulo 2^w only needs its operands modulo 2^w.

The bit-level logic folds the trivial cases CIRCT's folders would (an `and` with all ones,
an `or` with zero, the `not` of a constant, a mux on a constant or between equal values), so
that generated control logic for degenerate sizes (one group, one chunk) costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import UNKNOWN_LOC, DenseArrayBase, IntegerAttr, IntegerType, i32, i64
from xdsl.ir import Block, Operation, OpResult, SSAValue, Use
from xdsl.ir.core import SSAValues

from hashiflex.golden.semantics import bits_for_range, round_shift, saturate
from hashiflex.passes.to_hw import delay
from hashiflex.names import namehint

# Ops are made with `new_op` and types come from a cache: the IRDL constructors verify
# and infer far more than a lowering that knows its types needs, and cost ~4x as much.


def new_op(cls: type[Operation], operands: Sequence[SSAValue], result_type,
           properties: dict | None = None, attributes: dict | None = None) -> Operation:
    """
    The op `cls.create(operands=..., result_types=[result_type], properties=...,
    attributes=...)` makes, built field by field: `Operation.create` goes through the
    generic operand/successor setters, a location factory and the IRDL default-property
    fill, which for the few comb/hw/seq ops of a lowering (one result, no regions, no
    default properties) come to ~4x the work of the op itself, and a MobileNetV2 makes
    millions of them. test/passes/test_hw_builder_fast.py checks that both give the same
    op for every kind the builder makes.
    """
    op = cls.__new__(cls)
    uses = []
    for index, value in enumerate(operands):
        use = Use(op, index)
        # SSAValue.add_use, inlined
        first = value.first_use
        use._next_use = first
        if first is not None:
            first._prev_use = use
        value.first_use = use
        uses.append(use)
    op._operands = SSAValues(operands)
    op._operand_uses = tuple(uses)
    op.results = SSAValues((OpResult(result_type, op, 0),))
    op.properties = {} if properties is None else properties
    op.attributes = {} if attributes is None else attributes
    op.location = UNKNOWN_LOC
    op._successors = ()
    op._successor_uses = ()
    op.regions = ()
    return op


def append_op(block: Block, op: Operation) -> None:
    """`block.add_op(op)` for a new op without regions (nothing to check: it is in no
    block and cannot contain `block`)."""
    last = block._last_op
    op.parent = block
    if last is None:
        block._first_op = op
    else:
        last._next_op = op
        op._prev_op = last
    block._last_op = op


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
    typ = value._type  # SSAValue.type is a property; this runs once per operand built
    if type(typ) is not IntegerType:
        assert isinstance(typ, IntegerType), f"expected an integer value, got {typ}"
    return typ.width.data


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


#: A `mux_tree` leaf for an index that never occurs (either neighbour may stand in for it).
DONT_CARE = object()


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
    #: Low bits that are constant zeros (a shift's wiring): an adder's carry chain starts
    #: above its operands' zeros, which the delay model needs (delay.py).
    zeros: int = 0

    @property
    def width(self) -> int:
        return width_of(self.value)


@dataclass
class HwStats:
    """What the report counts while a module is built."""

    adders: int = 0
    register_bits: int = 0
    max_depth: int = 0
    max_carry_width: int = 0  # the longest carry chain of an adder (delay.py's index)


class Register:
    """A `seq.compreg` whose next value is connected later (`set`): counters, FSMs, loops."""

    def __init__(self, op: seq.CompRegOp):
        self.op = op
        self.q: SSAValue = op.results[0]

    def set(self, next_value: SSAValue) -> None:
        assert next_value.type == self.q.type, (next_value.type, self.q.type)
        self.op.operands[0] = next_value


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
    #: Adder levels between pipeline registers; 0: as many as the delay model fits in a
    #: period of `clock_mhz` (delay.py), depending on the carry width of the adders.
    levels_per_stage: int = 2
    clock_mhz: float = 1000.0
    stats: HwStats = field(default_factory=HwStats)
    _consts: dict[tuple[int, int], SSAValue] = field(default_factory=dict)
    _delays: dict[SSAValue, list[SSAValue]] = field(default_factory=dict)
    _wired: dict[tuple[SSAValue, int], SSAValue] = field(default_factory=dict)
    # The stand-in next value of feedback registers, one per width, never inserted.
    _placeholders: dict[int, hw.ConstantOp] = field(default_factory=dict)

    # -- plumbing ----------------------------------------------------------------------

    def add(self, op: Operation, name: str | None = None) -> SSAValue:
        append_op(self.block, op)
        if name:
            namehint(op, name)
        (result,) = op.results  # unpacking: SSAValues.__getitem__ is Python code
        return result

    def _op(self, cls, operands: Sequence[SSAValue], result_type=None,
            name: str | None = None) -> SSAValue:
        typ = result_type or operands[-1].type
        return self.add(new_op(cls, operands, typ), name)

    # -- constants and wiring ------------------------------------------------------------

    def const(self, value: int, width: int) -> SSAValue:
        """hw.constant of `value` (two's complement modulo 2^width), one per module."""
        value &= (1 << width) - 1
        if value >= 1 << (width - 1):
            value -= 1 << width
        key = (value, width)
        if (found := self._consts.get(key)) is None:
            op = new_op(hw.ConstantOp, (), int_type(width),
                        {"value": IntegerAttr(value, int_type(width))})
            found = self._consts[key] = self.add(op)
        return found

    @staticmethod
    def constant_value(value: SSAValue) -> int | None:
        """The bits of `value` as an unsigned number if it is an hw.constant, else None."""
        op = value.owner
        if isinstance(op, hw.ConstantOp):
            return op.value.value.data & ((1 << width_of(value)) - 1)
        return None

    def extract(self, value: SSAValue, low: int, width: int) -> SSAValue:
        """Bits [low, low + width) of `value` (truncation when low == 0)."""
        if low == 0 and width == width_of(value):
            return value
        return self.add(new_op(comb.ExtractOp, (value,), int_type(width),
                               {"lowBit": _low_bit(low)}))

    def concat(self, parts_msb_first: Sequence[SSAValue], name: str | None = None) -> SSAValue:
        """`comb.concat`: the first part lands in the high bits (reverse a vector's elements)."""
        if len(parts_msb_first) == 1 and name is None:
            return parts_msb_first[0]
        total = sum([width_of(p) for p in parts_msb_first])
        return self._op(comb.ConcatOp, parts_msb_first, int_type(total), name)

    def zext(self, value: SSAValue, width: int) -> SSAValue:
        extra = width - width_of(value)
        assert extra >= 0, "zext cannot narrow"
        return value if extra == 0 else self.concat([self.const(0, extra), value])

    def sext(self, value: SSAValue, width: int) -> SSAValue:
        """{extra copies of the sign bit, value}: `extract` of the sign bit, a `replicate`
        of it when more than one bit is added, a `concat` (built directly: every adder
        operand goes through here)."""
        w = width_of(value)
        extra = width - w
        assert extra >= 0, "sext cannot narrow"
        if extra == 0:
            return value
        block = self.block
        if w == 1:  # the value is its own sign bit (as `extract` gives it)
            fill = value
        else:
            op = new_op(comb.ExtractOp, (value,), int_type(1), {"lowBit": _low_bit(w - 1)})
            append_op(block, op)
            (fill,) = op.results
        if extra > 1:
            op = new_op(comb.ReplicateOp, (fill,), int_type(extra))
            append_op(block, op)
            (fill,) = op.results
        op = new_op(comb.ConcatOp, (fill, value), int_type(width))
        append_op(block, op)
        (result,) = op.results
        return result

    def resize(self, value: SSAValue, width: int, signed: bool) -> SSAValue:
        """Extend (by signedness) or truncate `value` to `width` bits (modular, see module doc)."""
        w = width_of(value)
        if width <= w:
            return self.extract(value, 0, width)
        return self.sext(value, width) if signed else self.zext(value, width)

    def shl_const(self, value: SSAValue, amount: int) -> SSAValue:
        """value * 2^amount as wiring: concat with `amount` zero bits."""
        return value if amount == 0 else self.concat([value, self.const(0, amount)])

    # -- logic -----------------------------------------------------------------------------

    def and_(self, *values: SSAValue, name: str | None = None) -> SSAValue:
        ones = [v for v in values if self.constant_value(v) != (1 << width_of(v)) - 1]
        if not ones:
            return self.const(1, 1)
        if len(ones) == 1 and name is None:
            return ones[0]
        return self._op(comb.AndOp, ones, ones[0].type, name)

    def or_(self, *values: SSAValue) -> SSAValue:
        nonzero = [v for v in values if self.constant_value(v) != 0]
        if not nonzero:
            return self.const(0, 1)
        return nonzero[0] if len(nonzero) == 1 else self._op(comb.OrOp, nonzero)

    def xor(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._op(comb.XorOp, [a, b])

    def not_(self, value: SSAValue) -> SSAValue:
        c = self.constant_value(value)
        if c is not None:
            return self.const(~c, width_of(value))
        return self.xor(value, self.const(-1, width_of(value)))

    def mux(self, cond: SSAValue, if_true: SSAValue, if_false: SSAValue,
            name: str | None = None) -> SSAValue:
        if if_true is if_false:
            return if_true
        c = self.constant_value(cond)
        if c is not None:
            return if_true if c else if_false
        return self._op(comb.MuxOp, [cond, if_true, if_false], name=name)

    def mux_tree(self, leaves: Sequence, select_bits: Iterable[SSAValue],
                 zero: SSAValue | None = None) -> SSAValue:
        """
        `leaves[index]` with index = sum(bit_i << i) over `select_bits` (least significant
        first; may be a generator: each bit is made just before its level). A leaf is a
        value, None (the constant `zero`) or DONT_CARE (never selected; a missing partner at
        an odd level is one too). Equal or don't-care halves cost no mux.
        """
        level = list(leaves)
        for bit in select_bits:
            if len(level) % 2:
                level.append(DONT_CARE)
            nxt = []
            for lo, hi in zip(level[0::2], level[1::2]):
                if hi is DONT_CARE or hi is lo:
                    nxt.append(lo)
                elif lo is DONT_CARE:
                    nxt.append(hi)
                else:
                    nxt.append(self.mux(bit, zero if hi is None else hi, zero if lo is None else lo))
            level = nxt
        assert len(level) == 1, "a mux tree needs log2(len(leaves)) select bits"
        out = level[0]
        return zero if out is None or out is DONT_CARE else out

    def icmp(self, a: SSAValue, b: SSAValue, pred: str) -> SSAValue:
        """comb.icmp by predicate name (eq, ne, slt, sle, sgt, sge, ult, ule, ugt, uge)."""
        return self.add(new_op(comb.ICmpOp, (a, b), int_type(1), {"predicate": _predicate(pred)}))

    def cmp_const(self, value: SSAValue, pred: str, constant: int) -> SSAValue:
        """comb.icmp `pred` of `value` against a constant."""
        return self.icmp(value, self.const(constant, width_of(value)), pred)

    def eq(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.icmp(a, b, "eq")

    def eq_const(self, value: SSAValue, constant: int) -> SSAValue:
        return self.cmp_const(value, "eq", constant)

    def add_wrap(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Plain modular a + b of equal widths (counters; not counted as datapath adders)."""
        return self._op(comb.AddOp, [a, b])

    def sub_wrap(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._op(comb.SubOp, [a, b])

    def mul_wrap(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._op(comb.MulOp, [a, b])

    def sum_wrap(self, terms: Sequence[SSAValue], zero: SSAValue) -> SSAValue:
        """A balanced tree of modular adds of equal-width terms (`zero` if there are none)."""
        if not terms:
            return zero
        level = list(terms)
        while len(level) > 1:
            nxt = [self.add_wrap(x, y) for x, y in zip(level[0::2], level[1::2])]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return level[0]

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
        reg = self._compreg(value, reset_value, name)
        if enable is not None:
            # The register feeds its own hold mux: build it after the register, then close
            # the loop (hw.module bodies are graph regions).
            reg.operands[0] = self.mux(enable, value, reg.results[0])
        return reg.results[0]

    def feedback_reg(self, width: int, reset_value: int | None = None,
                     name: str | None = None) -> Register:
        """A register whose next value is connected later with `Register.set`."""
        placeholder = self._placeholders.get(width)
        if placeholder is None:
            placeholder = self._placeholders[width] = hw.ConstantOp.create(
                result_types=[int_type(width)], properties={"value": IntegerAttr(0, int_type(width))})
        return Register(self._compreg(placeholder.result, reset_value, name))

    def check_closed(self) -> None:
        """Every feedback register has been connected (call when the module is complete)."""
        for placeholder in self._placeholders.values():
            assert not placeholder.result.uses, "a feedback register was never connected"

    def _compreg(self, value: SSAValue, reset_value: int | None,
                 name: str | None) -> seq.CompRegOp:
        width = width_of(value)
        operands = [value, self.clk]
        if reset_value is not None:
            assert self.rst is not None, "a reset register needs the module's rst"
            operands += [self.rst, self.const(reset_value, width)]
        reg = new_op(seq.CompRegOp, operands, value.type,
                     attributes={"operandSegmentSizes": _reg_segments(reset_value is not None)})
        self.add(reg, name)
        self.stats.register_bits += width
        return reg

    def delay(self, value: SSAValue, cycles: int, enable: SSAValue | None = None,
              reset_value: int | None = None, name: str | None = None) -> SSAValue:
        """
        `value` delayed by `cycles` registers (enabled by `enable`); shared per value. Bits
        that are wiring are not registered (issue 10): a `concat` is delayed part by part,
        its constant parts (the zeros of a shift) pass through, and a `replicate` (the copies
        of a sign extension) is rebuilt after the delayed bit it copies.
        """
        if cycles == 0:
            return value
        if reset_value is None:
            wired = self._delay_wiring(value, cycles, enable, name)
            if wired is not None:
                return wired
        line = self._delays.setdefault(value, [value])
        while len(line) <= cycles:
            stage = len(line)
            line.append(self.reg(line[-1], enable, reset_value,
                                 f"{name}_d{stage}" if name else None))
        return line[cycles]

    def _delay_wiring(self, value: SSAValue, cycles: int, enable: SSAValue | None,
                      name: str | None) -> SSAValue | None:
        """`delay` of a value that is partly wiring, or None if it is plain logic."""
        key = (value, cycles)
        if (found := self._wired.get(key)) is not None:
            return found
        op = value.owner
        if isinstance(op, comb.ReplicateOp):
            bit = self.delay(op.operands[0], cycles, enable, None, name)
            out = self.add(new_op(comb.ReplicateOp, (bit,), value.type))
        elif isinstance(op, comb.ConcatOp) and any(
                self.constant_value(p) is not None
                or isinstance(p.owner, comb.ReplicateOp | comb.ExtractOp) for p in op.operands):
            # LSB part first: a sign bit (extract of a lower part) then reuses its delay line.
            parts = [p if self.constant_value(p) is not None
                     else self.delay(p, cycles, enable, None, name)
                     for p in reversed(op.operands)]
            out = self.concat(parts[::-1])
        elif isinstance(op, comb.ExtractOp) and (
                (key2 := (op.operands[0], cycles)) in self._wired
                or len(self._delays.get(op.operands[0], ())) > cycles):
            # A slice of a value that is delayed anyway (a sign bit): slice the delayed value.
            src = self._wired.get(key2) or self._delays[op.operands[0]][cycles]
            out = self.extract(src, op.low_bit.value.data, width_of(value))
        else:
            return None
        self._wired[key] = out
        return out

    def counter(self, limit: int, step: SSAValue, name: str | None = None) -> SSAValue:
        """Counts 0, 1, ..., limit, 0, ... advancing when `step` is 1 (reset to 0)."""
        width, _ = bits_for_range(0, limit)
        count = self.feedback_reg(width, 0, name)
        wrap = self.eq_const(count.q, limit)
        inc = self.add_wrap(count.q, self.const(1, width))
        nxt = self.mux(wrap, self.const(0, width), inc)
        count.set(self.mux(step, nxt, count.q))
        return count.q

    # -- exact arithmetic on Sig -------------------------------------------------------------

    def constant(self, value: int) -> Sig:
        width, signed = bits_for_range(value, value)
        return Sig(self.const(value, width), signed, value, value, const=True)

    def _extend(self, x: Sig, width: int) -> SSAValue:
        return self.resize(x.value, width, x.signed)

    def _result(self, lo: int, hi: int, a: Sig, b: Sig | None, op_cls, *operands) -> Sig:
        width, signed = bits_for_range(lo, hi)
        args = []
        for x in operands:  # self._extend(x, width), inlined: every adder comes here
            v = x.value
            w = width_of(v)
            if w == width:
                args.append(v)
            elif w > width:
                args.append(self.extract(v, 0, width))
            else:
                args.append(self.sext(v, width) if x.signed else self.zext(v, width))
        value = self._op(op_cls, args)
        self.stats.adders += 1
        depth = max(a.depth, b.depth if b else 0) + 1
        self.stats.max_depth = max(self.stats.max_depth, depth)
        self.stats.max_carry_width = max(self.stats.max_carry_width,
                                         width - max(a.zeros, b.zeros if b else 0))
        lat = max(a.lat, b.lat if b else 0)
        zeros = min(a.zeros, b.zeros) if b else a.zeros
        return Sig(value, signed, lo, hi, lat, depth, zeros=min(zeros, width))

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
                       lo=a.lo << amount, hi=a.hi << amount, zeros=a.zeros + amount)

    def fit(self, a: Sig, lo: int, hi: int) -> Sig:
        """`a` narrowed or widened to the minimal type of [lo, hi] (a's values lie inside)."""
        width, signed = bits_for_range(lo, hi)
        return replace(a, value=self._extend(a, width), signed=signed, lo=lo, hi=hi,
                       zeros=min(a.zeros, width))

    def mul_const(self, x: Sig, multiplier: int, name: str, neg_name: str) -> Sig:
        """
        Exact x * multiplier (>= 0) as shift/add over the multiplier's canonical signed
        digits: a tree of the positive terms (named `name`) minus a tree of the negative
        ones (`neg_name`), pipelined like every adder tree.
        """
        pos, neg = [], []
        for bit, digit in enumerate(csd_digits(multiplier)):
            if digit:
                (pos if digit > 0 else neg).append(self.shl_sig(x, bit))
        prod = self.adder_tree(pos, name=name)
        if neg:
            n = self.adder_tree(neg, name=neg_name)
            prod, n = self.align([self.make_room(prod, 1), self.make_room(n, 1)])
            prod = self.settle(self.sub_sig(prod, n))
        return prod

    # -- pipelining ----------------------------------------------------------------------------

    def stage(self, x: Sig, name: str | None = None) -> Sig:
        """A pipeline register (enabled by `en`) after `x`; constants and wiring bits pass
        through (`delay`), and the register is shared with any delay line of `x`."""
        if x.const:
            return x
        return replace(x, value=self.delay(x.value, 1, self.en, name=name), lat=x.lat + 1,
                       depth=0)

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

    def levels_for(self, carry_width: int) -> int:
        """Adder levels with a `carry_width`-bit carry chain allowed between two registers:
        the override `levels_per_stage`, or the delay model at `clock_mhz`."""
        if self.levels_per_stage > 0:
            return self.levels_per_stage
        return delay.levels_per_stage(self.clock_mhz, carry_width)

    @staticmethod
    def carry_width(x: Sig, extra_bits: int = 0) -> int:
        """The live bits of `x` as an adder operand (the width the delay table is indexed
        by: its trees' operand width), `extra_bits` wider."""
        return max(1, x.width + extra_bits - x.zeros)

    def make_room(self, x: Sig, levels: int) -> Sig:
        """Register `x` first if `levels` more adder levels would not fit in its stage."""
        if x.depth > 0 and x.depth + levels > self.levels_for(self.carry_width(x)):
            return self.stage(x)
        return x

    def settle(self, x: Sig) -> Sig:
        """Register `x` when its combinational depth has filled a stage (one more adder level,
        one bit wider, would not fit)."""
        return self.stage(x) if x.depth >= self.levels_for(self.carry_width(x)) else x

    def _stage_full(self, level: Sequence[Sig]) -> bool:
        """Would one more adder level on `level` overflow the stage? The delay of a chain of
        adders grows with its levels and its longest carry chain; the next adder is about
        one bit wider than its operands."""
        depth = max(t.depth for t in level)
        return depth + 1 > self.levels_for(max(self.carry_width(t) for t in level))

    def adder_tree(self, terms: Sequence[Sig], name: str | None = None) -> Sig:
        """
        The exact sum of `terms` as a balanced binary tree of two-input adders, each as
        wide as the interval of its result, with a register before a level that would not
        fit in the stage (`_stage_full`: `levels_per_stage`, or the delay model); all values
        of a level are registered together, so the tree stays latency-balanced. Returns the sum; its `lat` is the tree's output latency.
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
        if depth > 0 and self._stage_full(level):
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
            if len(level) > 1 and self._stage_full(level):
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
        self._count = hb.feedback_reg(self.cw, 0, f"{name}_count")
        self.count = self._count.q
        self.non_empty = hb.cmp_const(self.count, "ne", 0)

    def connect(self, data: SSAValue, push: SSAValue, pop: SSAValue) -> SSAValue:
        hb, depth, name, cw = self.hb, self.depth, self.name, self.cw
        wptr = hb.counter(depth - 1, push, f"{name}_wptr")
        rptr = hb.counter(depth - 1, pop, f"{name}_rptr")
        entries = [hb.reg(data, hb.and_(push, hb.eq_const(wptr, i)), name=f"{name}_mem{i}")
                   for i in range(depth)]
        zero = hb.const(0, cw)
        inc = hb.mux(push, hb.mux(pop, zero, hb.const(1, cw)), hb.mux(pop, hb.const(-1, cw), zero))
        self._count.set(hb.add_wrap(self.count, inc))
        select = (hb.extract(rptr, bit, 1) for bit in range((depth - 1).bit_length()))
        return hb.mux_tree(entries, select)
