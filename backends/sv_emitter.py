"""
SystemVerilog export of xDSL's CIRCT-compatible `hw`, `comb` and `seq` dialects.

This is the last step of the flow (DESIGN.md): it turns the hw/comb/seq IR that the
lowering builds into SystemVerilog text that passes `verilator --lint-only -Wall` without a
single warning and without waivers, in the spirit of CIRCT's ExportVerilog:

* Names trace back to the IR: modules and ports keep their IR names, a value keeps the
  `sv.namehint` of its defining op (the CIRCT convention), other named values are `_<n>`.
  Every name is sanitised (illegal characters, SystemVerilog and C++ keywords) and made
  unique within its module.
* A value used once is emitted inline in its user's expression, a value used several times
  (or carrying a name hint, or too big to inline) becomes a `wire`. Only the bits that are
  actually read are declared: a wire whose users only extract some bit ranges is declared
  with those ranges (one wire per contiguous used range), because Verilator rightly flags
  declared bits that nothing reads (UNUSEDSIGNAL).
* Ops whose results nothing reads are not emitted at all (dead code elimination from the
  module outputs and instance inputs), so dead logic never produces an unused signal.
* Widths are exact everywhere: every inlined expression sits in a context of its own width;
  narrowing is spelled as a part select or a size cast `N'(...)`; signed operations use
  `$signed` and are wrapped in `$unsigned` so that signedness cannot leak into the
  surrounding unsigned expression.
* `seq.compreg` becomes `always_ff @(posedge clk)`, registers of the same clock and reset
  grouped in one block, with a synchronous active-high reset. The power-on value is ignored
  (a synthesisable flop has none; the reset defines the state).

What the emitter cannot repair, because it is part of the module's interface, is reported
by Verilator and must be avoided by the IR: input ports (including `clk` / `rst`) of which
some bits are never read, instance outputs of which some bits are never read, and registers
of which some bits are never read.

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
from typing import IO, ClassVar

from xdsl.context import Context
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import IntegerAttr, IntegerType, ModuleOp, StringAttr
from xdsl.ir import Attribute, BlockArgument, Operation, OpResult, SSAValue
from xdsl.utils.target import Target

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

NAMEHINT = "sv.namehint"

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

_ILLEGAL_CHARS = re.compile(r"[^A-Za-z0-9_]")


class EmitError(Exception):
    """The IR cannot be written as SystemVerilog; the message names module, op and rule."""


def type_width(typ: Attribute) -> int:
    """Bit width of a hw/comb/seq type as it is laid out in SystemVerilog."""
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
    name = _ILLEGAL_CHARS.sub("_", name)
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


def _namehint(op: Operation) -> str | None:
    hint = op.attributes.get(NAMEHINT)
    if isinstance(hint, StringAttr) and hint.data:
        return hint.data
    # CIRCT's seq.compreg carries its name as a `name` attribute.
    if isinstance(op, seq.CompRegOp):
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


def _is_atomic(text: str) -> bool:
    """Whether an expression can be used as an operand without parentheses."""
    return text.isidentifier() or text[0] == "{" and text[-1] == "}" or (
        "'" in text and " " not in text and "(" not in text
    )


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

    def __init__(
        self, module: hw.HWModuleOp, module_names: dict[str, str], out: IO[str]
    ) -> None:
        self.module = module
        self.module_names = module_names
        self.out = out
        self.names = Namespace()
        self.name_of: dict[SSAValue, str] = {}  # whole-value names (ports, regs, ...)
        self.wires: dict[SSAValue, _Wire] = {}  # materialised comb values
        self.inline: dict[SSAValue, str] = {}  # pending inline expression texts
        self.terms: dict[SSAValue, int] = {}
        self.unnamed = 0

    # -- analysis ------------------------------------------------------------------

    def _live_ops(self, ops: list[Operation]) -> list[Operation]:
        """Ops that contribute to an output or an instance, found backwards, iteratively."""
        live: set[Operation] = set()
        stack: list[Operation] = []
        for op in ops:
            if isinstance(op, hw.OutputOp | hw.InstanceOp):
                live.add(op)
                stack.append(op)
            elif type(op) not in _PURE_OP_SET and not isinstance(op, seq.CompRegOp):
                raise EmitError(
                    f"module @{self.module.sym_name.data}: op '{op.name}' is not "
                    "supported by the SystemVerilog emitter"
                )
        while stack:
            op = stack.pop()
            operands = op.operands
            if isinstance(op, seq.CompRegOp) and op.power_on_value is not None:
                # The power-on value is ignored, so it keeps nothing alive.
                operands = [v for v in operands if v is not op.power_on_value]
            for value in operands:
                if isinstance(value, OpResult) and value.op not in live:
                    live.add(value.op)
                    stack.append(value.op)
        return [op for op in ops if op in live]

    def _count_uses(
        self, live_ops: list[Operation]
    ) -> tuple[dict[SSAValue, int], dict[SSAValue, list[tuple[int, int]]], set[SSAValue]]:
        """Use counts, bit ranges read through comb.extract, and values read whole."""
        uses: dict[SSAValue, int] = {}
        ranges: dict[SSAValue, list[tuple[int, int]]] = {}
        whole: set[SSAValue] = set()
        for op in live_ops:
            if isinstance(op, comb.ExtractOp):
                value = op.input
                lo = op.low_bit.value.data
                hi = lo + type_width(op.result.type) - 1
                ranges.setdefault(value, []).append((lo, hi))
                uses[value] = uses.get(value, 0) + 1
                continue
            operands = op.operands
            if isinstance(op, seq.CompRegOp) and op.power_on_value is not None:
                operands = [v for v in operands if v is not op.power_on_value]
            for value in operands:
                uses[value] = uses.get(value, 0) + 1
                whole.add(value)
        return uses, ranges, whole

    def _ordered(self, live_ops: list[Operation]) -> list[Operation]:
        """Comb ops in an order where definitions precede uses.

        hw.module bodies are graph regions, so a use may precede its definition. Values of
        registers and instances are declared up front and can be used anywhere; for comb
        values a topological sort is done only when the block order is not one already.
        """
        comb_ops = [op for op in live_ops if type(op) in _PURE_OP_SET]
        position = {op: i for i, op in enumerate(comb_ops)}
        in_order = True
        for i, op in enumerate(comb_ops):
            for value in op.operands:
                if isinstance(value, OpResult) and position.get(value.op, -1) > i:
                    in_order = False
                    break
            if not in_order:
                break
        if in_order:
            return comb_ops
        # Kahn's algorithm, stable with respect to block order.
        pending = {op: 0 for op in comb_ops}
        users: dict[Operation, list[Operation]] = {}
        for op in comb_ops:
            for value in op.operands:
                if isinstance(value, OpResult) and value.op in pending:
                    pending[op] += 1
                    users.setdefault(value.op, []).append(op)
        ready = [op for op in reversed(comb_ops) if pending[op] == 0]
        order: list[Operation] = []
        while ready:
            op = ready.pop()
            order.append(op)
            for user in reversed(users.get(op, ())):
                pending[user] -= 1
                if pending[user] == 0:
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
        name = self.name_of.get(value)
        if name is not None:
            return name
        text = self.inline.pop(value, None)
        if text is not None:
            return text if _is_atomic(text) else f"({text})"
        wire = self.wires.get(value)
        if wire is not None:
            return wire.segments[0][2]
        owner = value.op if isinstance(value, OpResult) else None
        if isinstance(owner, hw.ConstantOp):
            return sv_literal(owner.value.value.data, type_width(value.type))
        raise EmitError(
            f"module @{self.module.sym_name.data}: value of '{owner.name if owner else value}'"
            " used before it is defined"
        )

    def bits(self, value: SSAValue, lo: int, width: int) -> str:
        """The expression for bits [lo + width - 1 : lo] of a value."""
        hi = lo + width - 1
        wire = self.wires.get(value)
        if wire is not None:
            for seg_hi, seg_lo, name in wire.segments:
                if seg_lo <= lo and hi <= seg_hi:
                    if (seg_hi, seg_lo) == (hi, lo):
                        return name
                    return f"{name}[{hi}]" if width == 1 else f"{name}[{hi}:{lo}]"
            raise AssertionError("extract outside the declared segments")
        name = self.name_of.get(value)
        if name is not None:
            if width == type_width(value.type):
                return name
            return f"{name}[{hi}]" if width == 1 else f"{name}[{hi}:{lo}]"
        owner = value.op if isinstance(value, OpResult) else None
        if isinstance(owner, hw.ConstantOp):
            return sv_literal(owner.value.value.data >> lo, width)
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
        infix = _INFIX.get(kind)
        if infix is not None:
            return infix.join(self.full(v) for v in op.operands)
        infix = _SIGNED_INFIX.get(kind)
        if infix is not None:
            lhs, rhs = op.operands
            if kind is comb.ShrSOp:  # the shift amount stays unsigned
                return f"$unsigned($signed({self.full(lhs)}){infix}{self.full(rhs)})"
            return (
                f"$unsigned($signed({self.full(lhs)}){infix}$signed({self.full(rhs)}))"
            )
        if isinstance(op, comb.ICmpOp):
            mnemonic = comb.ICMP_COMPARISON_OPERATIONS[op.predicate.value.data]
            symbol, signed = _ICMP[mnemonic]
            lhs, rhs = self.full(op.lhs), self.full(op.rhs)
            if signed:
                return f"$signed({lhs}) {symbol} $signed({rhs})"
            return f"{lhs} {symbol} {rhs}"
        if isinstance(op, comb.ExtractOp):
            return self.bits(op.input, op.low_bit.value.data, type_width(op.result.type))
        if isinstance(op, comb.ConcatOp):
            if len(op.inputs) == 1:
                return self.full(op.inputs[0])
            return "{" + ", ".join(self.full(v) for v in op.inputs) + "}"
        if isinstance(op, comb.ReplicateOp):
            times = type_width(op.result.type) // type_width(op.input.type)
            return f"{{{times}{{{self.full(op.input)}}}}}"
        if isinstance(op, comb.MuxOp):
            return (
                f"{self.full(op.cond)} ? {self.full(op.true_value)} : "
                f"{self.full(op.false_value)}"
            )
        if isinstance(op, comb.ParityOp):
            return f"^{self.full(op.input)}"
        if isinstance(op, hw.ConstantOp):
            return sv_literal(op.value.value.data, type_width(op.result.type))
        if isinstance(op, hw.ArrayCreateOp):
            # CIRCT's order: the first operand is the highest index, as in a concatenation.
            return "{" + ", ".join(self.full(v) for v in op.inputs) + "}"
        if isinstance(op, hw.ArrayGetOp):
            array = self.name_of[op.input]
            if type_width(op.index.type) == 0:
                return f"{array}[0]"
            return f"{array}[{self.full(op.index)}]"
        if isinstance(op, hw.BitcastOp):
            if type_width(op.input.type) != type_width(op.result.type):
                raise EmitError(
                    f"module @{self.module.sym_name.data}: hw.bitcast between types of "
                    f"different widths ({op.input.type} to {op.result.type})"
                )
            return self.full(op.input)
        raise EmitError(f"op '{op.name}' has no SystemVerilog expression")

    def _operand_terms(self, op: Operation) -> int:
        return sum(self.terms.get(v, 1) for v in op.operands)

    # -- writing -------------------------------------------------------------------

    def emit(self) -> None:
        module = self.module
        block = module.body.block
        ops = list(block.ops)
        live_ops = self._live_ops(ops)
        uses, ranges, whole = self._count_uses(live_ops)
        write = self.out.write

        write(self._header(block.args))

        # Registers and instance outputs are declared up front: in a graph region they may
        # be read before the op that defines them.
        registers: list[seq.CompRegOp] = []
        instances: list[hw.InstanceOp] = []
        for op in live_ops:
            if isinstance(op, seq.CompRegOp):
                registers.append(op)
                name = self._fresh_value_name(op.data)
                self.name_of[op.data] = name
                write(f"  logic {_dims(op.data.type)}{name};\n")
            elif isinstance(op, hw.InstanceOp):
                instances.append(op)
                inst_hint = op.instance_name.data
                for port, value in zip(op.result_names.data, op.outputs):
                    if value not in uses:
                        continue
                    name = self.names.fresh(f"{inst_hint}_{port.data}")
                    self.name_of[value] = name
                    write(f"  wire {_dims(value.type)}{name};\n")

        for op in self._ordered(live_ops):
            self._emit_pure(op, uses, ranges, whole)

        for op in instances:
            self._emit_instance(op)
        self._emit_registers(registers)

        outputs = [
            port for port in module.module_type.ports.data if port.dir.data.is_output_like()
        ]
        terminator = block.last_op
        assert isinstance(terminator, hw.OutputOp)
        for port_name, value in zip(self.output_names, terminator.inputs):
            write(f"  assign {port_name} = {self._unparenthesised(value)};\n")
        del outputs
        write("endmodule\n\n")

    def _unparenthesised(self, value: SSAValue) -> str:
        text = self.inline.pop(value, None)
        return text if text is not None else self.full(value)

    def _header(self, args: Sequence[BlockArgument]) -> str:
        module = self.module
        lines: list[str] = []
        arg_iter = iter(args)
        self.output_names: list[str] = []
        for port in module.module_type.ports.data:
            name = self.names.fresh(port.port_name.data)
            dims = _dims(port.type)
            if port.dir.data.is_input_like():
                self.name_of[next(arg_iter)] = name
                lines.append(f"  input  wire {dims}{name}")
            else:
                self.output_names.append(name)
                lines.append(f"  output wire {dims}{name}")
        module_name = self.module_names[module.sym_name.data]
        if not lines:
            return f"module {module_name};\n"
        return f"module {module_name} (\n" + ",\n".join(lines) + "\n);\n"

    def _emit_pure(
        self,
        op: Operation,
        uses: dict[SSAValue, int],
        ranges: dict[SSAValue, list[tuple[int, int]]],
        whole: set[SSAValue],
    ) -> None:
        value = op.results[0]
        if isinstance(op, hw.ConstantOp):
            return  # always printed as a literal where used
        count = uses.get(value, 0)
        terms = self._operand_terms(op)
        needs_name = isinstance(op, hw.ArrayCreateOp) or any(
            isinstance(use.operation, hw.ArrayGetOp) and use.index == 0
            for use in value.uses
        )
        if (
            count == 1
            and not needs_name
            and terms <= MAX_INLINE_TERMS
            and _namehint(op) is None
        ):
            self.inline[value] = self.expression(op)
            self.terms[value] = terms
            return
        text = self.expression(op)
        width = type_width(value.type)
        name = self._fresh_value_name(value)
        if value in whole or needs_name:
            self.name_of[value] = name
            self.out.write(f"  wire {_dims(value.type)}{name} = {text};\n")
            return
        # Only extracts read this value: declare just the bit ranges they read.
        segments = _merge_ranges(ranges[value])
        wire = _Wire([], width)
        operand = text if _is_atomic(text) else f"({text})"
        for index, (lo, hi) in enumerate(segments):
            seg_name = name if index == 0 else self.names.fresh(f"{name}_{lo}")
            seg_width = hi - lo + 1
            if seg_width == width:
                seg_text = text
            elif lo == 0:
                seg_text = f"{seg_width}'({operand})"
            else:
                seg_text = f"{seg_width}'({operand} >> {lo})"
            dims = "" if seg_width == width == 1 else f"[{hi}:{lo}]"
            self.out.write(f"  wire {dims}{' ' if dims else ''}{seg_name} = {seg_text};\n")
            wire.segments.append((hi, lo, seg_name))
        self.wires[value] = wire

    def _emit_instance(self, op: hw.InstanceOp) -> None:
        module_name = self.module_names.get(op.module_name.string_value())
        if module_name is None:
            raise EmitError(
                f"module @{self.module.sym_name.data}: instance "
                f"'{op.instance_name.data}' refers to unknown module {op.module_name}"
            )
        instance_name = self.names.fresh(op.instance_name.data)
        connections = [
            f"    .{sanitize_name(port.data)}({self._unparenthesised(value)})"
            for port, value in zip(op.arg_names.data, op.inputs)
        ]
        for port, value in zip(op.result_names.data, op.outputs):
            connections.append(f"    .{sanitize_name(port.data)}({self.name_of.get(value, '')})")
        self.out.write(f"  {module_name} {instance_name} (\n")
        self.out.write(",\n".join(connections))
        self.out.write("\n  );\n")

    def _emit_registers(self, registers: list[seq.CompRegOp]) -> None:
        """One always_ff block per (clock, reset) pair, in order of first appearance."""
        groups: dict[tuple[str, str | None], list[tuple[str, str, str | None]]] = {}
        for op in registers:
            clock = self.name_of.get(op.clk)
            if clock is None:
                raise EmitError(
                    f"module @{self.module.sym_name.data}: the clock of a seq.compreg "
                    "must be a port or an instance output"
                )
            reset = self._unparenthesised(op.reset) if op.reset is not None else None
            reset_value = (
                self._unparenthesised(op.reset_value) if op.reset_value is not None else None
            )
            data = self._unparenthesised(op.input)
            groups.setdefault((clock, reset), []).append(
                (self.name_of[op.data], data, reset_value)
            )
        write = self.out.write
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


def _module_names(modules: Iterable[hw.HWModuleOp | hw.HWModuleExternOp]) -> dict[str, str]:
    names = Namespace()
    table: dict[str, str] = {}
    for op in modules:
        sym = op.sym_name.data
        if isinstance(op, hw.HWModuleExternOp) and op.verilog_name is not None:
            table[sym] = op.verilog_name.data
        else:
            table[sym] = names.fresh(sym)
    return table


BANNER = "// Generated by HaShiFlex (backends/sv_emitter.py) from hw/comb/seq IR.\n"


def emit_sv(module: ModuleOp, out: IO[str]) -> None:
    """Write every hw.module of `module` to `out` as SystemVerilog, streaming."""
    modules = list(_hw_modules(module))
    names = _module_names(modules)
    out.write(BANNER)
    for op in modules:
        if isinstance(op, hw.HWModuleOp):
            _ModuleEmitter(op, names, out).emit()


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
    names = _module_names(modules)
    paths: list[Path] = []
    for op in modules:
        if not isinstance(op, hw.HWModuleOp):
            continue
        path = directory / f"{names[op.sym_name.data]}.sv"
        with path.open("w") as out:
            out.write(BANNER)
            _ModuleEmitter(op, names, out).emit()
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SystemVerilogTarget(Target):
    """`po2-opt -t sv`: print the hw/comb/seq IR as SystemVerilog."""

    name: ClassVar[str] = "sv"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        emit_sv(module, output)
