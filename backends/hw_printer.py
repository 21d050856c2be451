"""
A faster printer for the hw/comb/seq IR the lowering emits, with xDSL's exact text.

Why: printing the hw IR of a MobileNetV2 (over a million ops) through xDSL's generic
printer costs as much as building it: every op goes through the declarative-format or
custom `print` machinery, a dozen `print_string` calls and as many `print()` builtins.
The lowering emits a handful of op kinds (comb arithmetic, mux, icmp, extract, concat,
`hw.constant`, `seq.compreg`, `hw.output`) in a handful of shapes, so `HwPrinter` formats
each of those in one f-string and writes it once, and leaves everything else (the
`hw.module` header, `hw.instance`, any attribute or property it does not know, an op with
`twoState`, a value with a name hint...) to `xdsl.printer.Printer`, of which it is a
subclass: the SSA naming state is shared, so the two interleave freely. The text is the
same byte for byte (test/backends/test_hw_printer.py compares both printers and parses
the result back).

What it takes from `Printer` beyond its public methods, for speed: the map of named values
(`_ssa_values`) and the next free number (`_get_new_valid_name_id`), to name a value
without printing it as `print_ssa_value` would; and the column count when it writes a line
itself (`print_string` goes through print(), which costs a tenth of the printing time).
Indentation goes through `indented`. (Naming through a muted `print_ssa_value`, and
writing through `print_string`, measured 12 % and 35 % slower on tiny_cnn.)
"""

from __future__ import annotations

import io

from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import IntegerAttr, IntegerType, Signedness, StringAttr
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.printer import Printer

from hashiflex.names import NAMEHINT


def _plain(text: str) -> bool:
    """Printed between double quotes as it is (no escapes)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


class HwPrinter(Printer):
    """`Printer` with one-string fast paths for the comb/seq/hw ops of the lowering."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._type_text: dict[Attribute, str] = {}
        self._fast = {
            comb.AddOp: self._variadic,
            comb.AndOp: self._variadic,
            comb.OrOp: self._variadic,
            comb.XorOp: self._variadic,
            comb.MulOp: self._variadic,
            comb.SubOp: self._variadic,  # binary: the same text as a 2-operand variadic
            comb.MuxOp: self._variadic,
            comb.ICmpOp: self._icmp,
            comb.ExtractOp: self._extract,
            comb.ConcatOp: self._concat,
            hw.ConstantOp: self._constant,
            seq.CompRegOp: self._compreg,
            hw.OutputOp: self._output,
        }

    # -- names and types ---------------------------------------------------------------

    def _name(self, value: SSAValue) -> str:
        """`print_ssa_value`'s name for `value` (assigned on first sight), unprinted."""
        name = self._ssa_values.get(value)
        if name is not None:
            return name
        hint = value.name_hint
        if hint:  # as print_ssa_value: the hint, then hint_1, hint_2, ...
            names = self.ssa_names
            index = names.get(hint, 0)
            name = f"{hint}_{index}" if index else hint
            names[hint] = index + 1
        else:
            name = self._get_new_valid_name_id()
        self._ssa_values[value] = name
        return name

    def _type(self, typ: Attribute) -> str:
        text = self._type_text.get(typ)
        if text is None:
            if isinstance(typ, IntegerType) and typ.signedness.data == Signedness.SIGNLESS:
                text = f"i{typ.width.data}"
            else:
                buffer = io.StringIO()
                Printer(stream=buffer).print_attribute(typ)
                text = buffer.getvalue()
            self._type_text[typ] = text
        return text

    def _attrs(self, op: Operation) -> str | None:
        """The attr-dict text, or None if the fast path does not know it."""
        attrs = op.attributes
        if not attrs:
            return ""
        if len(attrs) == 1:
            hint = attrs.get(NAMEHINT)
            if isinstance(hint, StringAttr) and _plain(hint.data):
                return f' {{{NAMEHINT} = "{hint.data}"}}'
        return None

    # -- printing ----------------------------------------------------------------------

    def print_op(self, op: Operation) -> None:
        fast = self._fast.get(type(op))
        if fast is not None:
            text = fast(op)
            if text is not None:
                # One line, no newline: what `print_string` does, without print()'s cost.
                self.stream.write(text)  # type: ignore[union-attr]
                self._current_column += len(text)
                return
        super().print_op(op)

    def _result(self, op: Operation) -> str:
        return f"%{self._name(op.results[0])} = "

    def _head(self, op: Operation, properties: int) -> tuple[str, str] | None:
        """`%result = ` and the attr-dict text of an op with that many properties, or None
        if the fast path does not know its properties or attributes."""
        if len(op.properties) != properties:
            return None
        attrs = self._attrs(op)
        if attrs is None:
            return None
        return self._result(op), attrs

    def _operands(self, op: Operation) -> str:
        return ", ".join([f"%{self._name(v)}" for v in op.operands])

    def _variadic(self, op: Operation) -> str | None:
        # comb.add/and/or/xor/mul (variadic), comb.sub (binary) and comb.mux print
        # ` %a, %b, ... attrs : type` after the name, without `twoState` (" bin").
        if (head := self._head(op, 0)) is None:
            return None
        res, attrs = head
        return f"{res}{op.name} {self._operands(op)}{attrs} : {self._type(op.results[0].type)}"

    def _icmp(self, op: comb.ICmpOp) -> str | None:
        if (head := self._head(op, 1)) is None:
            return None
        res, attrs = head
        pred = comb.ICMP_COMPARISON_OPERATIONS[op.predicate.value.data]
        lhs, rhs = op.operands
        return (f"{res}comb.icmp {pred} %{self._name(lhs)}, %{self._name(rhs)}{attrs} : "
                f"{self._type(lhs.type)}")

    def _extract(self, op: comb.ExtractOp) -> str | None:
        if (head := self._head(op, 1)) is None:
            return None
        res, attrs = head
        (x,) = op.operands
        return (f"{res}comb.extract %{self._name(x)} from {op.low_bit.value.data}{attrs} :  "
                f"({self._type(x.type)}) -> {self._type(op.results[0].type)}")

    def _concat(self, op: comb.ConcatOp) -> str | None:
        if not op.operands or (head := self._head(op, 0)) is None:
            return None
        res, attrs = head
        types = ", ".join([self._type(v.type) for v in op.operands])
        return f"{res}comb.concat {self._operands(op)}{attrs} : {types}"

    def _constant(self, op: hw.ConstantOp) -> str | None:
        if len(op.properties) != 1 or op.attributes:
            return None
        value = op.properties.get("value")
        if not isinstance(value, IntegerAttr) or not isinstance(value.type, IntegerType):
            return None
        typ = value.type
        if typ.signedness.data != Signedness.SIGNLESS:
            return None
        v = value.value.data
        if typ.width.data == 1:
            text = "true" if v else "false"  # xDSL prints i1 integer attributes as bools
        else:
            text = f"{v} : {self._type(typ)}"
        return f"{self._result(op)}hw.constant {text}"

    def _compreg(self, op: seq.CompRegOp) -> str | None:
        if op.properties:
            return None
        attrs = op.attributes
        hint = attrs.get(NAMEHINT)
        extra = len(attrs) - (hint is not None) - ("operandSegmentSizes" in attrs)
        if extra or (hint is not None and not (isinstance(hint, StringAttr) and _plain(hint.data))):
            return None
        operands = op.operands
        if len(operands) == 2:
            tail = ""
        elif len(operands) == 4 and op.reset is not None and op.reset_value is not None:
            tail = None
        else:
            return None
        res = self._result(op)
        x = operands[0]
        text = f"{res}seq.compreg %{self._name(x)}, %{self._name(operands[1])}"
        if tail is None:
            text += f" reset %{self._name(operands[2])}, %{self._name(operands[3])}"
        if hint is not None:
            text += f' {{{NAMEHINT} = "{hint.data}"}}'
        return f"{text} : {self._type(x.type)}"

    def _output(self, op: hw.OutputOp) -> str | None:
        if op.properties or op.attributes or not op.operands:
            return None
        types = ", ".join([self._type(v.type) for v in op.operands])
        return f"hw.output {self._operands(op)} : {types}"


def print_hw_op(op: Operation, stream, indent: int = 0) -> None:
    """Print `op` (e.g. one hw.module) with `HwPrinter`, its body `indent` levels deep."""
    printer = HwPrinter(stream=stream)
    with printer.indented(indent):
        printer.print_op(op)
