"""HwPrinter (backends/hw_printer.py) prints exactly what xDSL's Printer prints, and parses back."""

from __future__ import annotations

import io

from xdsl.dialects import comb, hw
from xdsl.dialects.builtin import ModuleOp, StringAttr, UnitAttr
from xdsl.parser import Parser
from xdsl.printer import Printer

from hashiflex.backends.hw_printer import HwPrinter, print_hw_op
from hashiflex.tools.registry import make_context

from test_sv_emitter import comb_ops_module, sequential_modules


def _text(printer_cls, op) -> str:
    buffer = io.StringIO()
    printer_cls(stream=buffer).print_op(op)
    return buffer.getvalue()


def _design() -> ModuleOp:
    # parity_op=False: xDSL 0.74 prints comb.parity in a form it cannot parse back.
    modules = [comb_ops_module(parity_op=False), *sequential_modules()]
    # Shapes the fast paths must leave to xDSL: twoState, odd attributes, escapes.
    body = modules[0].body.block
    for op in body.ops:
        if isinstance(op, comb.AddOp):
            op.properties["twoState"] = UnitAttr()
            break
    for op in body.ops:
        if isinstance(op, comb.MuxOp):
            op.attributes["sv.namehint"] = StringAttr('needs "escapes"\n')
            break
    for op in body.ops:
        if isinstance(op, comb.XorOp):
            op.attributes["other"] = StringAttr("x")
            break
    for op in body.ops:
        if isinstance(op, hw.ConstantOp):
            op.attributes["sv.namehint"] = StringAttr("k")
            break
    return ModuleOp(modules)


def test_same_text_as_xdsl_printer():
    design = _design()
    assert _text(HwPrinter, design) == _text(Printer, design)


def test_round_trip():
    design = _design()
    text = _text(HwPrinter, design)
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert _text(HwPrinter, parsed) == text
    assert _text(Printer, parsed) == text


def test_indented_module_matches_module_body():
    """The streaming flow prints each hw.module one level deep inside builtin.module."""
    design = _design()
    whole = _text(Printer, design)
    buffer = io.StringIO()
    buffer.write("builtin.module {")
    for op in design.ops:
        buffer.write("\n  ")
        print_hw_op(op, buffer, indent=1)
    buffer.write("\n}")
    assert buffer.getvalue() == whole
