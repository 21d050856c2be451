"""
SystemVerilog export of xDSL's CIRCT-compatible `hw`, `comb` and `seq` dialects.

This is the last step of the flow (docs/architecture.md): it turns the hw/comb/seq IR that the
lowering builds into SystemVerilog text that passes `verilator --lint-only -Wall` without a
single warning and without waivers, in the spirit of CIRCT's ExportVerilog:

* Names trace back to the IR: modules and ports keep their IR names, a value keeps the
  `sv.namehint` of its defining op (the CIRCT convention), other named values are `_<n>`.
  Every name is sanitised (illegal characters, SystemVerilog and C++ keywords) and made
  unique within its module.
* A value used once is emitted inline in its user's expression, a value used several times
  (or carrying a name hint, or too big to inline) becomes a `wire`. Only the bits that are
  actually read are declared: a wire or register whose users only extract some bit ranges
  is declared with those ranges (one declaration per contiguous range, `[hi:lo]` in the
  value's own numbering), because Verilator rightly flags declared bits that nothing reads
  (UNUSEDSIGNAL). A register passes the demand for its bits on to its input, so chains of
  pipeline registers narrow together.
* Ops whose results nothing reads are not emitted at all (dead code elimination from the
  module outputs and instance inputs), so dead logic never produces an unused signal.
* Widths are exact everywhere: every inlined expression sits in a context of its own width;
  narrowing is spelled as a part select or a size cast `N'(...)`; signed operations use
  `$signed` and are wrapped in `$unsigned` so that signedness cannot leak into the
  surrounding unsigned expression.
* `seq.compreg` becomes `always_ff @(posedge clk)`, registers of the same clock and reset
  grouped in one block, with a synchronous active-high reset. A constant power-on value
  becomes an `initial` assignment (simulation only; the reset is what defines the state in
  silicon); a non-constant one is ignored.

What the emitter cannot repair, because it is part of a module's interface, is reported
by Verilator and must be avoided by the IR: input ports (including `clk` / `rst`) of which
some bits are never read, and instance outputs of which some bits are never read (an
unread output is left open, `.p()`, which -Wall reports as PINCONNECTEMPTY). Verilator
also wants one module per file named after it (DECLFILENAME): `emit_sv_files` does that,
`emit_sv` writes one stream for everything else.

The emitter is a streaming, iterative (no recursion) pass: one sweep over each module to
count uses and find live ops, one sweep that writes text. Cost is linear in the number of
ops.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, cast

from xdsl.context import Context
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    StringAttr,
)
from xdsl.ir import Attribute, BlockArgument, Operation, OpResult, SSAValue
from xdsl.utils.target import Target

from hashiflex.names import NAMEHINT, legal_chars

__all__ = [
    "EmitError",
    "SystemVerilogTarget",
    "emit_sv",
    "emit_sv_files",
    "emit_sv_string",
    "type_width",
]

# An inlined expression holds at most this many leaves (operand references); beyond it
# the value gets a wire. This keeps lines readable and Verilator's/g++'s expression trees
# shallow (a long single-use chain would otherwise become one enormous expression).
MAX_INLINE_TERMS = 32

SV_KEYWORDS = frozenset(
    """
    accept_on alias always always_comb always_ff always_latch and assert assign assume
    automatic before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex
    casez cell chandle checker class clocking cmos config const constraint context
    continue cover covergroup coverpoint cross deassign default defparam design disable
    dist do edge else end endcase endchecker endclass endclocking endconfig endfunction
    endgenerate endgroup endinterface endmodule endpackage endprimitive endprogram
    endproperty endspecify endsequence endtable endtask enum event eventually expect
    export extends extern final first_match for force foreach forever fork forkjoin
    function generate genvar global highz0 highz1 if iff ifnone ignore_bins illegal_bins
    implements implies import incdir include initial inout input inside instance int
    integer interconnect interface intersect join join_any join_none large let liblist
    library local localparam logic longint macromodule matches medium modport module nand
    negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
    package packed parameter pmos posedge primitive priority program property protected
    pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc
    randcase randsequence rcmos real realtime ref reg reject_on release repeat restrict
    return rnmos rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until
    s_until_with scalared sequence shortint shortreal showcancelled signed small soft solve
    specify specparam static string strong strong0 strong1 struct super supply0 supply1
    sync_accept_on sync_reject_on table tagged task this throughout time timeprecision
    timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union
    unique unique0 unsigned until until_with untyped use uwire var vectored virtual void
    wait wait_order wand weak weak0 weak1 while wildcard wire with within wor xnor xor
    """.split()
)

# Verilator turns every identifier into a C++ one and warns (SYMRSVDWORD) on C++ words.
CXX_KEYWORDS = frozenset(
    """
    alignas alignof and_eq asm auto bitand bitor bool catch char char8_t char16_t
    char32_t compl concept consteval constexpr constinit const_cast co_await co_return
    co_yield decltype delete double dynamic_cast explicit false float friend goto inline
    long mutable namespace noexcept not_eq nullptr operator or_eq private public
    register reinterpret_cast requires short sizeof static_assert static_cast switch
    template thread_local throw true try typeid typename unsigned using volatile wchar_t
    xor_eq main errno NULL stdin stdout stderr
    """.split()
)

RESERVED_NAMES = SV_KEYWORDS | CXX_KEYWORDS



class EmitError(Exception):
    """The IR cannot be written as SystemVerilog; the message names module, op and rule."""


def _block_ops(block) -> list[Operation]:
    """The ops of `block` in order (the linked list walked directly: `block.ops`' iterator
    costs a Python call per op, and big modules have hundreds of thousands)."""
    ops = []
    op = block._first_op  # pyright: ignore[reportPrivateUsage]
    while op is not None:
        ops.append(op)
        op = op._next_op  # pyright: ignore[reportPrivateUsage]
    return ops


def type_width(typ: Attribute) -> int:
    """Bit width of a hw/comb/seq type as it is laid out in SystemVerilog."""
    if type(typ) is IntegerType:  # the common case first, without ABC isinstance
        return typ.width.data
    if isinstance(typ, IntegerType):
        return typ.width.data
    if isinstance(typ, hw.ArrayType):
        return len(typ) * type_width(typ.get_element_type())
    if isinstance(typ, seq.ClockType):
        return 1
    raise EmitError(f"type {typ} has no SystemVerilog equivalent")


def sv_type_dims(typ: Attribute) -> str:
    """The packed dimensions of a declaration, e.g. `[3:0][7:0]`; empty for one bit."""
    if isinstance(typ, hw.ArrayType):
        return f"[{len(typ) - 1}:0]" + (sv_type_dims(typ.get_element_type()) or "[0:0]")
    width = type_width(typ)
    if width < 1:
        raise EmitError(f"zero-width type {typ} cannot be declared in SystemVerilog")
    return "" if width == 1 else f"[{width - 1}:0]"


def sv_literal(value: int, width: int) -> str:
    """A sized hexadecimal literal; negative IR values are taken modulo 2^width."""
    return f"{width}'h{value & ((1 << width) - 1):x}"


def sanitize_name(name: str) -> str:
    """Turn an IR name (possibly a torch path like `features.0.conv`) into an SV identifier."""
    name = legal_chars(name)
    if not name or name[0].isdigit():
        name = "_" + name
    if name in RESERVED_NAMES:
        name += "_"
    return name


class Namespace:
    """Hands out sanitised identifiers, unique within one scope, deterministically."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next_suffix: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        base = sanitize_name(hint)
        name = base
        while name in self._used:
            suffix = self._next_suffix.get(base, 1)
            self._next_suffix[base] = suffix + 1
            name = f"{base}_{suffix}"
        self._used.add(name)
        return name


@dataclass(slots=True)
class _Wire:
    """A value that is referred to by name: the segments of it that are declared."""

    # (hi, lo, name) of each declared contiguous bit range, in increasing lo order. A
    # fully used value has the single segment (width - 1, 0, name).
    segments: list[tuple[int, int, str]]
    width: int


@dataclass(slots=True)
class _RegFields:
    """The operands of a seq.compreg, read once (its operand accessors are slow)."""

    input: SSAValue
    clk: SSAValue
    reset: SSAValue | None
    reset_value: SSAValue | None
    power_on: SSAValue | None
    read: tuple[SSAValue, ...]  # what the emitted text reads: all but the power-on value

    @staticmethod
    def of(op: Operation) -> _RegFields:
        # Slice the operand list by its segment sizes directly: the generated accessors
        # decode the segment attribute again for every field.
        sizes = op.attributes.get("operandSegmentSizes") or op.properties.get(
            "operandSegmentSizes"
        )
        if not isinstance(sizes, DenseArrayBase):
            assert isinstance(op, seq.CompRegOp)
            operands = [op.input, op.clk, op.reset, op.reset_value, op.power_on_value]
        else:
            values = iter(op._operands)  # pyright: ignore[reportPrivateUsage]
            operands = [
                next(values) if size else None
                for size in cast(Sequence[int], sizes.get_values())
            ]
        data_in, clk, reset, reset_value, power_on = operands
        assert data_in is not None and clk is not None
        read = (data_in, clk) if reset is None or reset_value is None else (
            data_in, clk, reset, reset_value
        )
        return _RegFields(data_in, clk, reset, reset_value, power_on, read)


@dataclass(slots=True)
class _Usage:
    """How the emitted text of a module reads each value."""

    # All keyed by id(value): SSAValue.__hash__ is Python code, id() is not.
    uses: dict[int, int]  # number of places the value's text appears
    ranges: dict[int, list[tuple[int, int]]]  # (lo, hi) bit ranges read by selects
    whole: set[int]  # values read whole somewhere
    indexed: set[int]  # arrays read by hw.array_get: they need a name

    def read_whole(self, value: SSAValue) -> None:
        key = id(value)
        self.uses[key] = self.uses.get(key, 0) + 1
        self.whole.add(key)

    def read_bits(self, value: SSAValue, lo: int, hi: int) -> None:
        key = id(value)
        self.uses[key] = self.uses.get(key, 0) + 1
        self.ranges.setdefault(key, []).append((lo, hi))

    def segments(self, value: SSAValue) -> list[tuple[int, int]]:
        """The contiguous (lo, hi) ranges to declare for a value (all of it if read whole)."""
        key = id(value)
        if key in self.whole:
            return [(0, type_width(value.type) - 1)]
        merged = _merge_ranges(self.ranges[key])
        self.ranges[key] = merged
        return merged


def _namehint(op: Operation) -> str | None:
    attributes = op.attributes
    if not attributes:
        return None
    hint = attributes.get(NAMEHINT)
    if isinstance(hint, StringAttr) and hint.data:
        return hint.data
    # CIRCT's seq.compreg carries its name as a `name` attribute.
    if type(op) is seq.CompRegOp:
        name = op.attributes.get("name")
        if isinstance(name, StringAttr) and name.data:
            return name.data
    return None


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of bit ranges (lo, hi) into contiguous (lo, hi) segments, adjacent ones joined."""
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


# Names, bit selects of names and literals: operands that need no parentheses.
_ATOMIC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+(:[0-9]+)?\])?|[0-9]+'h[0-9a-f]+")

# Ops whose expression is a concatenation `{...}`, itself an operand needing no parentheses.
_BRACED_OPS = (comb.ConcatOp, comb.ReplicateOp, hw.ArrayCreateOp)
_BRACED_OPS_SET = frozenset(_BRACED_OPS)


_atomic_match = _ATOMIC.fullmatch


def _is_atomic(text: str) -> bool:
    """Whether an expression can be used as an operand without parentheses."""
    return _atomic_match(text) is not None


# Operator spelled between the operands of each binary or variadic comb op.
_INFIX: dict[type[Operation], str] = {
    comb.AddOp: " + ",
    comb.MulOp: " * ",
    comb.AndOp: " & ",
    comb.OrOp: " | ",
    comb.XorOp: " ^ ",
    comb.SubOp: " - ",
    comb.ShlOp: " << ",
    comb.ShrUOp: " >> ",
    comb.DivUOp: " / ",
    comb.ModUOp: " % ",
}

# Signed ops: their operands are reinterpreted with $signed, and their result goes back
# through $unsigned so that the surrounding (unsigned) context does not turn the operator
# into its unsigned twin (IEEE 1800 11.8.1: signedness propagates into operands).
_SIGNED_INFIX: dict[type[Operation], str] = {
    comb.ShrSOp: " >>> ",
    comb.DivSOp: " / ",
    comb.ModSOp: " % ",
}

_ICMP: dict[str, tuple[str, bool]] = {
    "eq": ("==", False),
    "ne": ("!=", False),
    "slt": ("<", True),
    "sle": ("<=", True),
    "sgt": (">", True),
    "sge": (">=", True),
    "ult": ("<", False),
    "ule": ("<=", False),
    "ugt": (">", False),
    "uge": (">=", False),
}

def _constant_value(value: SSAValue) -> int | None:
    """The value of an hw.constant operand, as an unsigned integer; None otherwise."""
    if type(value) is OpResult and type(value.op) is hw.ConstantOp:
        data = value.op.properties["value"].value.data  # pyright: ignore
        return data & ((1 << type_width(value.type)) - 1)
    return None


def _trivial_icmp(op: Operation) -> int | None:
    """The value of an unsigned comparison that its constant operand decides, else None.

    `x >= 0`, `x > 2^w-1` and their mirrors are constants; Verilator -Wall reports them
    (UNSIGNED, CMPCONST), so they are emitted as literals and their operand is not read.
    """
    if not isinstance(op, comb.ICmpOp):
        return None
    mnemonic = comb.ICMP_COMPARISON_OPERATIONS[op.predicate.value.data]
    if mnemonic[0] != "u":
        return None
    top = (1 << type_width(op.lhs.type)) - 1
    rhs = _constant_value(op.rhs)
    if rhs is not None:
        if rhs == 0 and mnemonic in ("uge", "ult"):
            return int(mnemonic == "uge")
        if rhs == top and mnemonic in ("ule", "ugt"):
            return int(mnemonic == "ule")
    lhs = _constant_value(op.lhs)
    if lhs is not None:
        if lhs == 0 and mnemonic in ("ule", "ugt"):
            return int(mnemonic == "ule")
        if lhs == top and mnemonic in ("uge", "ult"):
            return int(mnemonic == "uge")
    return None


_PURE_OPS: tuple[type[Operation], ...] = (
    *_INFIX,
    *_SIGNED_INFIX,
    comb.ICmpOp,
    comb.ParityOp,
    comb.ExtractOp,
    comb.ConcatOp,
    comb.ReplicateOp,
    comb.MuxOp,
    hw.ConstantOp,
    hw.ArrayCreateOp,
    hw.ArrayGetOp,
    hw.BitcastOp,
)
_PURE_OP_SET = frozenset(_PURE_OPS)


class _ModuleEmitter:
    """Writes one hw.module; see the module docstring for the emission strategy."""

    def __init__(self, module: hw.HWModuleOp, symbols: _Symbols, out: IO[str]) -> None:
        self.module = module
        self.symbols = symbols
        self.out = out
        self.names = Namespace()
        self.name_of: dict[int, str] = {}  # whole-value names (ports, regs, ...)
        self.wires: dict[int, _Wire] = {}  # materialised comb values
        # Pending inline expressions: (text, whether it needs no parentheses).
        self.inline: dict[int, tuple[str, bool]] = {}
        self.terms: dict[int, int] = {}
        self.reg_fields: dict[int, _RegFields] = {}
        self.unnamed = 0

    # -- analysis ------------------------------------------------------------------

    # Hot loops below dispatch on `type(op)` and read `op._operands` (a tuple) instead of
    # isinstance on ABC-based op classes and operand descriptors: 3-5x faster, and these
    # loops see every op of designs with millions of them.

    def _live_ops(self, ops: list[Operation]) -> list[Operation]:
        """Ops that contribute to an output or an instance, found backwards, iteratively."""
        live: set[int] = set()
        stack: list[Operation] = []
        for op in ops:
            kind = type(op)
            if kind is hw.OutputOp or kind is hw.InstanceOp:
                live.add(id(op))
                stack.append(op)
            elif kind is seq.CompRegOp:
                self.reg_fields[id(op)] = _RegFields.of(op)
            elif kind not in _PURE_OP_SET:
                raise EmitError(
                    f"module @{self.module.sym_name.data}: op '{op.name}' is not "
                    "supported by the SystemVerilog emitter"
                )
        read_operands = self._read_operands
        special = (seq.CompRegOp, comb.ICmpOp)
        while stack:
            op = stack.pop()
            operands = read_operands(op) if type(op) in special else op._operands  # pyright: ignore
            for value in operands:
                if type(value) is OpResult:
                    owner = value.op
                    if id(owner) not in live:
                        live.add(id(owner))
                        stack.append(owner)
        return [op for op in ops if id(op) in live]

    def _read_operands(self, op: Operation) -> Sequence[SSAValue]:
        """The operands that the emitted text of `op` reads."""
        kind = type(op)
        if kind is seq.CompRegOp:
            # The power-on value becomes an `initial` literal, or is ignored.
            return self.reg_fields[id(op)].read
        if kind is comb.ICmpOp and _trivial_icmp(op) is not None:
            return ()
        return op._operands  # pyright: ignore[reportPrivateUsage]

    def _count_uses(self, live_ops: list[Operation]) -> _Usage:
        """How each value is read: use counts, bit ranges read, values read whole.

        A register reads of its input only the bits that its own users read, so the
        demand on register inputs is resolved after all other uses are known, from the
        last register of a chain back to the first (registers in a cycle are taken whole).
        """
        usage = _Usage({}, {}, set(), set())
        registers: list[seq.CompRegOp] = []
        uses, whole, ranges = usage.uses, usage.whole, usage.ranges
        for op in live_ops:
            kind = type(op)
            if kind is comb.ExtractOp:
                lo = op.properties["lowBit"].value.data  # pyright: ignore
                (result,) = op.results
                (source,) = op._operands  # pyright: ignore[reportPrivateUsage]
                # usage.read_bits, inlined
                key = id(source)
                uses[key] = uses.get(key, 0) + 1
                span = (lo, lo + type_width(result.type) - 1)
                if key in ranges:
                    ranges[key].append(span)
                else:
                    ranges[key] = [span]
                continue
            if kind is seq.CompRegOp:
                registers.append(op)
                for value in self.reg_fields[id(op)].read[1:]:  # the input is resolved below
                    usage.read_whole(value)
                continue
            if kind is hw.ArrayGetOp:
                usage.indexed.add(id(op._operands[0]))  # pyright: ignore
            operands = self._read_operands(op) if kind is comb.ICmpOp else op._operands  # pyright: ignore
            for value in operands:
                # usage.read_whole, inlined
                key = id(value)
                uses[key] = uses.get(key, 0) + 1
                whole.add(key)

        # A register's demand is final once every register reading it has been resolved.
        fields = self.reg_fields
        readers = {id(op.data): 0 for op in registers}
        for op in registers:
            if id(fields[id(op)].input) in readers:
                readers[id(fields[id(op)].input)] += 1
        ready = [op for op in reversed(registers) if readers[id(op.data)] == 0]
        resolved: set[int] = set()
        remaining = iter(registers)
        while len(resolved) < len(registers):
            if ready:
                op = ready.pop()
            else:  # only cycles of registers are left: take one of them whole
                op = next(r for r in remaining if id(r) not in resolved)
                usage.whole.add(id(op.data))
            resolved.add(id(op))
            data_in = fields[id(op)].input
            if id(op.data) in usage.whole:
                usage.read_whole(data_in)
            else:
                for lo, hi in usage.segments(op.data):
                    usage.read_bits(data_in, lo, hi)
            if id(data_in) in readers and type(data_in) is OpResult:
                readers[id(data_in)] -= 1
                source = data_in.op
                if readers[id(data_in)] == 0 and id(source) not in resolved:
                    ready.append(source)
        return usage

    def _ordered(self, live_ops: list[Operation]) -> list[Operation]:
        """Comb ops in an order where definitions precede uses.

        hw.module bodies are graph regions, so a use may precede its definition. Values of
        registers and instances are declared up front and can be used anywhere; for comb
        values a topological sort is done only when the block order is not one already.
        """
        comb_ops = [op for op in live_ops if type(op) in _PURE_OP_SET]
        position = {id(op): i for i, op in enumerate(comb_ops)}
        in_order = True
        for i, op in enumerate(comb_ops):
            for value in op._operands:  # pyright: ignore[reportPrivateUsage]
                if type(value) is OpResult and position.get(id(value.op), -1) > i:
                    in_order = False
                    break
            if not in_order:
                break
        if in_order:
            return comb_ops
        # Kahn's algorithm, stable with respect to block order.
        pending = {id(op): 0 for op in comb_ops}
        users: dict[int, list[Operation]] = {}
        for op in comb_ops:
            for value in op.operands:
                if type(value) is OpResult and id(value.op) in pending:
                    pending[id(op)] += 1
                    users.setdefault(id(value.op), []).append(op)
        ready = [op for op in reversed(comb_ops) if pending[id(op)] == 0]
        order: list[Operation] = []
        while ready:
            op = ready.pop()
            order.append(op)
            for user in reversed(users.get(id(op), ())):
                pending[id(user)] -= 1
                if pending[id(user)] == 0:
                    ready.append(user)
        if len(order) != len(comb_ops):
            raise EmitError(
                f"module @{self.module.sym_name.data}: combinational cycle "
                "(a loop that does not pass through a seq.compreg)"
            )
        return order

    # -- rendering of operands -----------------------------------------------------

    def _fresh_value_name(self, value: SSAValue) -> str:
        hint = _namehint(value.op) if isinstance(value, OpResult) else None
        if hint is None:
            hint = f"_{self.unnamed}"
            self.unnamed += 1
        return self.names.fresh(hint)

    def full(self, value: SSAValue) -> str:
        """The expression for all bits of a value, parenthesised if not atomic."""
        key = id(value)
        name = self.name_of.get(key)
        if name is not None:
            return name
        pending = self.inline.pop(key, None)
        if pending is not None:
            text, atomic = pending
            return text if atomic else f"({text})"
        wire = self.wires.get(key)
        if wire is not None:
            return wire.segments[0][2]
        owner = value.op if type(value) is OpResult else None
        if type(owner) is hw.ConstantOp:
            return sv_literal(_constant_value(value) or 0, type_width(value.type))
        raise EmitError(
            f"module @{self.module.sym_name.data}: value of '{owner.name if owner else value}'"
            " used before it is defined"
        )

    def bits(self, value: SSAValue, lo: int, width: int) -> str:
        """The expression for bits [lo + width - 1 : lo] of a value."""
        hi = lo + width - 1
        wire = self.wires.get(id(value))
        if wire is not None:
            for seg_hi, seg_lo, name in wire.segments:
                if seg_lo <= lo and hi <= seg_hi:
                    if (seg_hi, seg_lo) == (hi, lo):
                        return name
                    return f"{name}[{hi}]" if width == 1 else f"{name}[{hi}:{lo}]"
            raise AssertionError("extract outside the declared segments")
        name = self.name_of.get(id(value))
        if name is not None:
            if width == type_width(value.type):
                return name
            return f"{name}[{hi}]" if width == 1 else f"{name}[{hi}:{lo}]"
        owner = value.op if type(value) is OpResult else None
        if type(owner) is hw.ConstantOp:
            return sv_literal((_constant_value(value) or 0) >> lo, width)
        # An inlined expression cannot be part-selected in SystemVerilog: shift, then
        # size-cast. The expression is evaluated at its own width (that of the cast's
        # context), so this is exact.
        text = self.full(value)
        if width == type_width(value.type):
            return text
        return f"{width}'({text})" if lo == 0 else f"{width}'({text} >> {lo})"

    # -- expressions of ops --------------------------------------------------------

    def expression(self, op: Operation) -> str:
        """The SystemVerilog expression computing all bits of a pure op's result."""
        kind = type(op)
        operands = op._operands  # pyright: ignore[reportPrivateUsage]
        full = self.full
        infix = _INFIX.get(kind)
        if infix is not None:
            return infix.join([full(v) for v in operands])
        infix = _SIGNED_INFIX.get(kind)
        if infix is not None:
            lhs, rhs = operands
            if kind is comb.ShrSOp:  # the shift amount stays unsigned
                return f"$unsigned($signed({full(lhs)}){infix}{full(rhs)})"
            return f"$unsigned($signed({full(lhs)}){infix}$signed({full(rhs)}))"
        (result,) = op.results
        result_type = result.type
        if kind is comb.ExtractOp:
            low_bit = op.properties["lowBit"]
            assert type(low_bit) is IntegerAttr or isinstance(low_bit, IntegerAttr)
            return self.bits(operands[0], low_bit.value.data, type_width(result_type))
        if kind is comb.ConcatOp or kind is hw.ArrayCreateOp:
            # For arrays, CIRCT's order: the first operand is the highest index.
            if len(operands) == 1 and kind is comb.ConcatOp:
                return full(operands[0])
            return "{" + ", ".join([full(v) for v in operands]) + "}"
        if kind is comb.MuxOp:
            cond, true_value, false_value = operands
            return f"{full(cond)} ? {full(true_value)} : {full(false_value)}"
        if kind is comb.ICmpOp:
            constant = _trivial_icmp(op)
            if constant is not None:
                return f"1'h{constant}"
            predicate = op.properties["predicate"]
            assert isinstance(predicate, IntegerAttr)
            mnemonic = comb.ICMP_COMPARISON_OPERATIONS[predicate.value.data]
            symbol, signed = _ICMP[mnemonic]
            lhs, rhs = full(operands[0]), full(operands[1])
            if signed:
                return f"$signed({lhs}) {symbol} $signed({rhs})"
            return f"{lhs} {symbol} {rhs}"
        if kind is comb.ReplicateOp:
            times = type_width(result_type) // type_width(operands[0].type)
            return f"{{{times}{{{full(operands[0])}}}}}"
        if kind is comb.ParityOp:
            return f"^{full(operands[0])}"
        if kind is hw.ConstantOp:
            assert isinstance(op, hw.ConstantOp)
            return sv_literal(op.value.value.data, type_width(result_type))
        if kind is hw.ArrayGetOp:
            array, index = operands
            if type_width(index.type) == 0:
                return f"{self.name_of[id(array)]}[0]"
            return f"{self.name_of[id(array)]}[{full(index)}]"
        if kind is hw.BitcastOp:
            if type_width(operands[0].type) != type_width(result_type):
                raise EmitError(
                    f"module @{self.module.sym_name.data}: hw.bitcast between types of "
                    f"different widths ({operands[0].type} to {result_type})"
                )
            return full(operands[0])
        raise EmitError(f"op '{op.name}' has no SystemVerilog expression")

    def _operand_terms(self, op: Operation) -> int:
        terms = self.terms
        return sum([terms.get(id(v), 1) for v in op._operands])  # pyright: ignore

    # -- writing -------------------------------------------------------------------

    def emit(self) -> None:
        module = self.module
        block = module.body.block
        live_ops = self._live_ops(_block_ops(block))
        usage = self._count_uses(live_ops)
        write = self.out.write

        write(self._header(block.args))

        # Registers and instance outputs are declared up front: in a graph region they may
        # be read before the op that defines them.
        registers: list[seq.CompRegOp] = []
        instances: list[hw.InstanceOp] = []
        for op in live_ops:
            kind = type(op)  # not isinstance: ABC checks, once per op of big modules
            if kind is seq.CompRegOp:
                registers.append(op)
                (data,) = op.results
                self._declare(data, usage, None)
            elif kind is hw.InstanceOp:
                instances.append(op)
                inst_hint = op.instance_name.data
                for port, value in zip(op.result_names.data, op.outputs):
                    if id(value) not in usage.uses:
                        continue
                    name = self.names.fresh(f"{inst_hint}_{port.data}")
                    self.name_of[id(value)] = name
                    write(f"  wire {_dims(value.type)}{name};\n")

        for op in self._ordered(live_ops):
            self._emit_pure(op, usage)

        for op in instances:
            self._emit_instance(op)
        self._emit_registers(registers)

        terminator = block.last_op
        assert isinstance(terminator, hw.OutputOp)
        for port_name, value in zip(self.output_names, terminator.inputs):
            write(f"  assign {port_name} = {self._unparenthesised(value)};\n")
        write("endmodule\n\n")

    def _unparenthesised(self, value: SSAValue) -> str:
        """An operand in a context of its own (an assignment, a port connection)."""
        pending = self.inline.pop(id(value), None)
        return pending[0] if pending is not None else self.full(value)

    def _header(self, args: Sequence[BlockArgument]) -> str:
        module = self.module
        lines: list[str] = []
        arg_iter = iter(args)
        self.output_names: list[str] = []
        for port in module.module_type.ports.data:
            name = self.names.fresh(port.port_name.data)
            dims = _dims(port.type)
            if port.dir.data.is_input_like():
                self.name_of[id(next(arg_iter))] = name
                lines.append(f"  input  wire {dims}{name}")
            else:
                self.output_names.append(name)
                lines.append(f"  output wire {dims}{name}")
        module_name = self.symbols.modules[module.sym_name.data]
        if not lines:
            return f"module {module_name};\n"
        return f"module {module_name} (\n" + ",\n".join(lines) + "\n);\n"

    def _emit_pure(self, op: Operation, usage: _Usage) -> None:
        kind = type(op)
        if kind is hw.ConstantOp:
            return  # always printed as a literal where used
        (value,) = op.results  # tuple unpacking: SSAValues.__getitem__ is Python code
        key = id(value)
        terms_of = self.terms
        terms = sum([terms_of.get(id(v), 1) for v in op._operands])  # pyright: ignore
        if (
            usage.uses.get(key, 0) == 1
            and key not in usage.indexed
            and terms <= MAX_INLINE_TERMS
            and (not op.attributes or _namehint(op) is None)
        ):
            text = self.expression(op)
            braced = kind in _BRACED_OPS_SET and text[0] == "{"
            self.inline[key] = (text, braced or _atomic_match(text) is not None)
            terms_of[key] = terms
            return
        self._declare(value, usage, self.expression(op))

    def _declare(self, value: SSAValue, usage: _Usage, text: str | None) -> None:
        """Declare the read bits of a value: a wire computing `text`, or a register.

        A value read whole gets one declaration of its own type. Otherwise only the
        contiguous bit ranges that are read are declared, `[hi:lo]` in the value's own bit
        numbering so that selects keep their indices, one declaration per range.
        """
        name = self._fresh_value_name(value)
        write = self.out.write
        if id(value) in usage.whole or id(value) in usage.indexed:
            self.name_of[id(value)] = name
            if text is None:
                write(f"  logic {_dims(value.type)}{name};\n")
            else:
                write(f"  wire {_dims(value.type)}{name} = {text};\n")
            return
        width = type_width(value.type)
        wire = _Wire([], width)
        operand = "" if text is None else text if _is_atomic(text) else f"({text})"
        for index, (lo, hi) in enumerate(usage.segments(value)):
            seg_name = name if index == 0 else self.names.fresh(f"{name}_{lo}")
            seg_width = hi - lo + 1
            dims = "" if seg_width == width == 1 else f"[{hi}:{lo}] "
            wire.segments.append((hi, lo, seg_name))
            if text is None:
                write(f"  logic {dims}{seg_name};\n")
                continue
            if seg_width == width:
                seg_text = text
            elif lo == 0:
                seg_text = f"{seg_width}'({operand})"
            else:
                seg_text = f"{seg_width}'({operand} >> {lo})"
            write(f"  wire {dims}{seg_name} = {seg_text};\n")
        self.wires[id(value)] = wire

    def _emit_instance(self, op: hw.InstanceOp) -> None:
        target = op.module_name.string_value()
        module_name = self.symbols.modules.get(target)
        if module_name is None:
            raise EmitError(
                f"module @{self.module.sym_name.data}: instance "
                f"'{op.instance_name.data}' refers to unknown module {op.module_name}"
            )
        ports = self.symbols.ports[target]
        instance_name = self.names.fresh(op.instance_name.data)
        connections = [
            f"    .{ports[port.data]}({self._unparenthesised(value)})"
            for port, value in zip(op.arg_names.data, op.inputs)
        ]
        for port, value in zip(op.result_names.data, op.outputs):
            # An unread output is left open (`.p()`), which Verilator -Wall reports as
            # PINCONNECTEMPTY: the IR should not leave instance outputs unread.
            connections.append(f"    .{ports[port.data]}({self.name_of.get(id(value), '')})")
        self.out.write(f"  {module_name} {instance_name} (\n")
        self.out.write(",\n".join(connections))
        self.out.write("\n  );\n")

    def _emit_registers(self, registers: list[seq.CompRegOp]) -> None:
        """One always_ff block per (clock, reset) pair, in order of first appearance."""
        # (clock, reset) -> [(register name, next value, reset value)]
        groups: dict[tuple[str, str | None], list[tuple[str, str, str | None]]] = {}
        initial: list[str] = []
        for op in registers:
            fields = self.reg_fields[id(op)]
            clock = self.name_of.get(id(fields.clk))
            if clock is None:
                raise EmitError(
                    f"module @{self.module.sym_name.data}: the clock of a seq.compreg "
                    "must be a port or an instance output"
                )
            reset = fields.reset
            reset_text = self._unparenthesised(reset) if reset is not None else None
            group = groups.setdefault((clock, reset_text), [])
            power_on = (
                _constant_value(fields.power_on) if fields.power_on is not None else None
            )
            reset_value = fields.reset_value
            for hi, lo, name in self._register_segments(op.data):
                width = hi - lo + 1
                if width == type_width(op.data.type):
                    data = self._unparenthesised(fields.input)
                    reset_text = (
                        self._unparenthesised(reset_value)
                        if reset_value is not None
                        else None
                    )
                else:
                    data = self.bits(fields.input, lo, width)
                    reset_text = (
                        self.bits(reset_value, lo, width) if reset_value is not None else None
                    )
                group.append((name, data, reset_text))
                if power_on is not None:  # a non-constant power-on value is ignored
                    literal = sv_literal(power_on >> lo, width)
                    initial.append(f"  initial {name} = {literal};\n")
        write = self.out.write
        for line in initial:
            write(line)
        for (clock, reset), regs in groups.items():
            write(f"  always_ff @(posedge {clock}) begin\n")
            if reset is None:
                for name, data, _ in regs:
                    write(f"    {name} <= {data};\n")
            else:
                write(f"    if ({reset}) begin\n")
                for name, _, reset_value in regs:
                    write(f"      {name} <= {reset_value};\n")
                write("    end else begin\n")
                for name, data, _ in regs:
                    write(f"      {name} <= {data};\n")
                write("    end\n")
            write("  end\n")

    def _register_segments(self, value: SSAValue) -> list[tuple[int, int, str]]:
        wire = self.wires.get(id(value))
        if wire is not None:
            return wire.segments
        return [(type_width(value.type) - 1, 0, self.name_of[id(value)])]


def _dims(typ: Attribute) -> str:
    dims = sv_type_dims(typ)
    return dims + " " if dims else ""


def _hw_modules(module: ModuleOp) -> Iterator[hw.HWModuleOp | hw.HWModuleExternOp]:
    for op in module.ops:
        if isinstance(op, hw.HWModuleOp | hw.HWModuleExternOp):
            yield op
        elif isinstance(op, ModuleOp):
            yield from _hw_modules(op)
        else:
            raise EmitError(f"top-level op '{op.name}' is not a hw.module")


@dataclass(slots=True)
class _Symbols:
    """SystemVerilog names of the modules and their ports, shared by all modules."""

    modules: dict[str, str]  # sym_name -> module name
    ports: dict[str, dict[str, str]]  # sym_name -> IR port name -> port name


def _add_symbol(symbols: _Symbols, names: Namespace,
                op: hw.HWModuleOp | hw.HWModuleExternOp) -> None:
    sym = op.sym_name.data
    if isinstance(op, hw.HWModuleExternOp) and op.verilog_name is not None:
        symbols.modules[sym] = op.verilog_name.data
    else:
        symbols.modules[sym] = names.fresh(sym)
    # The same namespace discipline as _ModuleEmitter._header, which starts each
    # module's namespace with its ports in this order.
    port_names = Namespace()
    symbols.ports[sym] = {
        port.port_name.data: port_names.fresh(port.port_name.data)
        for port in op.module_type.ports.data
    }


def _symbols(modules: Iterable[hw.HWModuleOp | hw.HWModuleExternOp]) -> _Symbols:
    names = Namespace()
    symbols = _Symbols({}, {})
    for op in modules:
        _add_symbol(symbols, names, op)
    return symbols


BANNER = "// Generated by HaShiFlex (backends/sv_emitter.py) from hw/comb/seq IR.\n"


def emit_sv(module: ModuleOp, out: IO[str]) -> None:
    """Write every hw.module of `module` to `out` as SystemVerilog, streaming."""
    modules = list(_hw_modules(module))
    symbols = _symbols(modules)
    out.write(BANNER)
    for op in modules:
        if isinstance(op, hw.HWModuleOp):
            _ModuleEmitter(op, symbols, out).emit()


def emit_sv_string(module: ModuleOp) -> str:
    """The SystemVerilog of `module` as one string (for tests and small designs)."""
    buffer = io.StringIO()
    emit_sv(module, buffer)
    return buffer.getvalue()


def emit_sv_files(module: ModuleOp, directory: Path) -> list[Path]:
    """Write one `<module>.sv` file per hw.module (Verilator's DECLFILENAME rule).

    Returns the files in IR order (submodules before their users when the IR is so
    ordered); pass them all to Verilator.
    """
    directory.mkdir(parents=True, exist_ok=True)
    modules = list(_hw_modules(module))
    symbols = _symbols(modules)
    paths: list[Path] = []
    for op in modules:
        if not isinstance(op, hw.HWModuleOp):
            continue
        path = directory / f"{symbols.modules[op.sym_name.data]}.sv"
        with path.open("w") as out:
            out.write(BANNER)
            _ModuleEmitter(op, symbols, out).emit()
        paths.append(path)
    return paths


class SvFileWriter:
    """
    `emit_sv_files` one module at a time, for a caller that builds the modules one by one
    and drops each after writing it (hashiflex/flow.py). Module names are given in the
    order of `add`, so adding the modules in IR order gives the same files as
    `emit_sv_files`. An instance may only refer to modules added before it; only the
    names and ports of the modules are kept.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.names = Namespace()
        self.symbols = _Symbols({}, {})

    def add(self, op: hw.HWModuleOp | hw.HWModuleExternOp) -> Path | None:
        """Write `op` to `<module>.sv` (None for an extern module, which has no body)."""
        _add_symbol(self.symbols, self.names, op)
        if not isinstance(op, hw.HWModuleOp):
            return None
        path = self.directory / f"{self.symbols.modules[op.sym_name.data]}.sv"
        with path.open("w") as out:
            out.write(BANNER)
            _ModuleEmitter(op, self.symbols, out).emit()
        return path

    def declare(self, sym_name: StringAttr, module_type: hw.ModuleType) -> Path:
        """
        Name a module as `add` would, without writing it (another process wrote its file:
        hashiflex/flow.py's workers); returns the file `add` would have written.
        """
        _add_symbol(self.symbols, self.names,
                    cast(hw.HWModuleOp, _Declared(sym_name, module_type)))
        return self.directory / f"{self.symbols.modules[sym_name.data]}.sv"


@dataclass(frozen=True)
class _Declared:
    """What `_add_symbol` reads of a module: its symbol and its ports."""

    sym_name: StringAttr
    module_type: hw.ModuleType


@dataclass(frozen=True)
class SystemVerilogTarget(Target):
    """`po2-opt -t sv`: print the hw/comb/seq IR as SystemVerilog."""

    name: ClassVar[str] = "sv"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        emit_sv(module, output)
