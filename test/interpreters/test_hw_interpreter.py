"""
Tests of interpreters/hw.py: the bit-level helpers, each op through xDSL's `Interpreter`,
the cycle-accurate `HwSimulator`, and its agreement with Verilator on a compiled layer.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import IntegerAttr, IntegerType, ModuleOp, i1
from xdsl.interpreter import Interpreter
from xdsl.ir import Block, Operation, SSAValue

from hashiflex.golden.semantics import Format
from hashiflex.interpreters.hw import (
    HwFunctions,
    HwSimulationError,
    HwSimulator,
    concat_bits,
    kernel_of,
    replicate_bits,
    run_stream,
    shift_left,
    shift_right_signed,
    shift_right_unsigned,
    signed_div,
    signed_mod,
    to_signed,
    truncate,
    width_of,
)
from hashiflex.passes.po2_to_hw import Po2ToHwPass
from hashiflex.passes.po2_unroll import Po2UnrollPass
from hashiflex.tools.registry import make_context
from po2_testlib import conv_module, parse

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def test_width_of():
    assert width_of(IntegerType(13)) == 13
    assert width_of(seq.ClockType()) == 1


def test_truncate_wraps_around():
    assert truncate(256 + 7, 8) == 7
    assert truncate(-1, 8) == 255
    assert truncate(-129, 8) == 127


def test_to_signed_is_sign_extension():
    assert [to_signed(v, 4) for v in (0, 7, 8, 15)] == [0, 7, -8, -1]
    assert to_signed(1, 1) == -1


def test_concat_puts_the_first_operand_on_top():
    assert concat_bits([0x1, 0x2, 0x3], [4, 4, 8]) == 0x1203


def test_replicate():
    assert replicate_bits(0b10, 2, 3) == 0b101010


def test_shifts_by_the_width_or_more():
    assert shift_left(0b1011, 1, 4) == 0b0110
    assert shift_left(0b1011, 4, 4) == 0
    assert shift_right_unsigned(0b1011, 9, 4) == 0
    assert shift_right_signed(0b1011, 1, 4) == 0b1101
    assert shift_right_signed(0b1011, 9, 4) == 0b1111
    assert shift_right_signed(0b0111, 9, 4) == 0


def test_signed_division_truncates_toward_zero():
    w = 8
    assert to_signed(signed_div(truncate(-7, w), 2, w), w) == -3
    assert to_signed(signed_mod(truncate(-7, w), 2, w), w) == -1  # the dividend's sign
    assert to_signed(signed_mod(7, truncate(-2, w), w), w) == 1
    assert signed_div(5, 0, w) == 0 and signed_mod(5, 0, w) == 0
    assert signed_div(0x80, 0xFF, w) == 0x80  # -128 / -1 wraps, as in Verilog


# ---------------------------------------------------------------------------------------
# Each op through xDSL's interpreter
# ---------------------------------------------------------------------------------------


def _args(*widths: int) -> list[SSAValue]:
    return list(Block(arg_types=[IntegerType(w) for w in widths]).args)


def _run(op: Operation, *values: int) -> int:
    interpreter = Interpreter(ModuleOp([]))
    interpreter.register_implementations(HwFunctions())
    (result,) = interpreter.run_op(op, values)
    return result


def test_add_sub_mul_wrap_around():
    a, b, c = _args(8, 8, 8)
    assert _run(comb.AddOp([a, b]), 200, 100) == 44
    assert _run(comb.AddOp([a, b, c]), 255, 255, 3) == 1
    assert _run(comb.SubOp(a, b), 3, 5) == 254
    assert _run(comb.MulOp([a, b]), 16, 17) == 16
    assert _run(comb.MulOp([a, b, c]), 3, 5, 7) == 105


def test_bitwise_and_parity():
    a, b, c = _args(4, 4, 4)
    assert _run(comb.AndOp([a, b, c]), 0b1110, 0b0111, 0b1111) == 0b0110
    assert _run(comb.OrOp([a, b]), 0b1000, 0b0001) == 0b1001
    assert _run(comb.XorOp([a, b, c]), 0b1100, 0b1010, 0b0001) == 0b0111
    parity = comb.ParityOp.create(operands=[a], result_types=[i1])
    assert [_run(parity, v) for v in (0b0000, 0b0111, 0b1001)] == [0, 1, 0]


def test_icmp_every_predicate_on_every_pair():
    a, b = _args(3, 3)
    reference = {
        "eq": lambda x, y: x == y, "ne": lambda x, y: x != y,
        "ult": lambda x, y: x < y, "ule": lambda x, y: x <= y,
        "ugt": lambda x, y: x > y, "uge": lambda x, y: x >= y,
    }  # fmt: skip
    for predicate in comb.ICMP_COMPARISON_OPERATIONS:
        op = comb.ICmpOp(a, b, predicate)
        compare = reference[predicate.replace("s", "u", 1) if predicate[0] == "s" else predicate]
        for x in range(8):
            for y in range(8):
                sx, sy = (to_signed(x, 3), to_signed(y, 3)) if predicate[0] == "s" else (x, y)
                assert _run(op, x, y) == int(compare(sx, sy)), (predicate, x, y)
    # the one pair everyone gets wrong: -1 against 1
    assert _run(comb.ICmpOp(a, b, "slt"), 0b111, 1) == 1
    assert _run(comb.ICmpOp(a, b, "ult"), 0b111, 1) == 0


def test_shifts_and_divisions():
    a, b = _args(8, 8)
    assert _run(comb.ShlOp(a, b), 0x81, 1) == 0x02
    assert _run(comb.ShrUOp(a, b), 0x81, 7) == 1
    assert _run(comb.ShrSOp(a, b), 0x81, 1) == 0xC0
    assert _run(comb.ShrSOp(a, b), 0x81, 200) == 0xFF
    assert _run(comb.DivUOp(a, b), 200, 7) == 28 and _run(comb.DivUOp(a, b), 200, 0) == 0
    assert _run(comb.ModUOp(a, b), 200, 7) == 4
    assert _run(comb.DivSOp(a, b), truncate(-100, 8), 7) == truncate(-14, 8)
    assert _run(comb.ModSOp(a, b), truncate(-100, 8), 7) == truncate(-2, 8)


def test_mux_concat_extract_replicate():
    (cond,) = _args(1)
    a, b = _args(4, 4)
    (wide,) = _args(8)
    assert _run(comb.MuxOp(cond, a, b), 1, 3, 9) == 3
    assert _run(comb.MuxOp(cond, a, b), 0, 3, 9) == 9
    assert _run(comb.ConcatOp.from_int_values([a, b, cond]), 0x1, 0x2, 1) == 0b0001_0010_1
    assert _run(comb.ExtractOp(wide, IntegerAttr(3, 32), IntegerType(4)), 0b1011_0110) == 0b0110
    assert _run(comb.ExtractOp(wide, IntegerAttr(0, 32), IntegerType(3)), 0b1011_0110) == 0b110
    assert _run(comb.ReplicateOp(cond, IntegerType(5)), 1) == 0b11111
    assert _run(comb.ReplicateOp(a, IntegerType(12)), 0b1001) == 0b1001_1001_1001


def test_constants_and_bitcast():
    assert _run(hw.ConstantOp(-1, 6)) == 63
    assert _run(hw.ConstantOp(5, 6)) == 5
    (a,) = _args(6)
    assert _run(hw.BitcastOp(a, IntegerType(6)), 42) == 42


def test_unsupported_op_is_named():
    (a,) = _args(4)
    with pytest.raises(HwSimulationError, match="'seq.clock_div' cannot be simulated"):
        kernel_of(seq.ClockDividerOp(a, 2))


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------

COUNTER = """
builtin.module {
  hw.module @counter(in %clk: !seq.clock, in %rst: i1, in %en: i1, out count: i3) {
    %zero = hw.constant 0 : i3
    %one = hw.constant 1 : i3
    %next = comb.add %count, %one : i3
    %d = comb.mux %en, %next, %count : i3
    %count = seq.compreg %d, %clk reset %rst, %zero : i3
    hw.output %count : i3
  }
  hw.module @twice(in %clk: !seq.clock, in %rst: i1, in %en: i1, out a: i3, out b: i3,
                   out sum: i3) {
    %true = hw.constant 1 : i1
    %a = hw.instance "a" @counter(clk: %clk: !seq.clock, rst: %rst: i1, en: %en: i1) -> (count: i3)
    %b = hw.instance "b" @counter(clk: %clk: !seq.clock, rst: %rst: i1, en: %true: i1) -> (count: i3)
    %sum = comb.add %a, %b : i3
    hw.output %a, %b, %sum : i3, i3, i3
  }
}
"""


def test_register_enable_and_synchronous_reset():
    sim = HwSimulator(parse(COUNTER), "counter", initial=5)
    assert sim.step(rst=0, en=0) == {"count": 5}  # power-up contents, held
    assert sim.step(rst=1, en=1) == {"count": 5}  # the reset acts on the edge
    seen = [sim.step(rst=0, en=en)["count"] for en in (1, 1, 0, 1, 1, 1, 1, 1, 1)]
    assert seen == [0, 1, 2, 2, 3, 4, 5, 6, 7]
    assert sim.step(rst=0, en=1)["count"] == 0  # wraps at 2^3
    assert sim.registers() == {"count": 1}


def test_instances_have_their_own_state():
    sim = HwSimulator(parse(COUNTER))  # the top: the module nobody instantiates
    assert sim.top == "twice"
    sim.step(rst=1)
    outs = [sim.step(rst=0, en=en) for en in (0, 1, 0, 1)]
    got = [(o["a"], o["b"], o["sum"]) for o in outs]
    assert got == [(0, 0, 0), (0, 1, 1), (1, 2, 3), (1, 3, 4)]
    assert sim.registers() == {"a/count": 2, "b/count": 4}


def test_random_initial_state_and_power_on_value():
    text = """
    hw.module @r(in %clk: !seq.clock, in %x: i16, out p: i16, out q: i16) {
      %c = hw.constant 1234 : i16
      %p = seq.compreg %x, %clk powerOn %c : i16
      %q = seq.compreg %x, %clk : i16
      hw.output %p, %q : i16, i16
    }
    """
    first = HwSimulator(parse(text), initial=random.Random(7)).evaluate()
    again = HwSimulator(parse(text), initial=random.Random(7)).evaluate()
    assert first["p"] == 1234 and first == again
    assert HwSimulator(parse(text), initial=random.Random(8)).evaluate()["q"] != first["q"]


def test_combinational_path_through_an_instance():
    """in -> parent add -> child (pure wire + add) -> parent output, in one cycle."""
    text = """
    builtin.module {
      hw.module @inc(in %x: i4, out y: i4) {
        %one = hw.constant 1 : i4
        %y = comb.add %x, %one : i4
        hw.output %y : i4
      }
      hw.module @top(in %x: i4, out y: i4) {
        %twice = comb.add %x, %x : i4
        %y = hw.instance "i" @inc(x: %twice: i4) -> (y: i4)
        hw.output %y : i4
      }
    }
    """
    sim = HwSimulator(parse(text), "top")
    assert [sim.step(x=v)["y"] for v in (0, 3, 8)] == [1, 7, 1]


def test_combinational_loop_is_an_error():
    text = """
    hw.module @loop(in %x: i4, out y: i4) {
      %a = comb.add %x, %b : i4
      %b = comb.xor %a, %x : i4
      hw.output %b : i4
    }
    """
    with pytest.raises(HwSimulationError, match="combinational loop .* through: a, b"):
        HwSimulator(parse(text, verify=False))


def test_bad_stimulus_and_design_errors():
    sim = HwSimulator(parse(COUNTER), "counter")
    with pytest.raises(HwSimulationError, match="no input port 'enable' .*inputs: rst, en"):
        sim.step(enable=1)
    with pytest.raises(HwSimulationError, match="value 2 does not fit input port 'en' of 1 bits"):
        sim.step(en=2)
    with pytest.raises(HwSimulationError, match="no hw.module named 'nope'.*counter, twice"):
        HwSimulator(parse(COUNTER), "nope")
    other = "  hw.module @other() {\n    hw.output\n  }\n}\n"
    two_tops = COUNTER.rstrip().removesuffix("}") + other
    with pytest.raises(HwSimulationError, match="cannot tell which hw.module is the top"):
        HwSimulator(parse(two_tops))
    extern = """
    builtin.module {
      hw.module.extern @blackbox(in %x: i4, out y: i4)
      hw.module @top(in %x: i4, out y: i4) {
        %y = hw.instance "b" @blackbox(x: %x: i4) -> (y: i4)
        hw.output %y : i4
      }
    }
    """
    with pytest.raises(HwSimulationError, match="'blackbox' is external"):
        HwSimulator(parse(extern), "top")


def test_negative_inputs_are_twos_complement():
    text = "hw.module @id(in %x: i4, out y: i4) {\n  hw.output %x : i4\n}"
    sim = HwSimulator(parse(text))
    assert sim.step(x=-1) == {"y": 15}
    assert sim.step(x=-8) == {"y": 8}


# ---------------------------------------------------------------------------------------
# Agreement with Verilator on a compiled layer
# ---------------------------------------------------------------------------------------


def test_agrees_with_verilator_on_a_compiled_layer(tmp_path):
    verilator = pytest.importorskip("hashiflex.backends.verilator")
    from hashiflex.backends.sv_emitter import emit_sv_files

    try:
        verilator.find_verilator()
    except verilator.SimulatorNotFound as error:
        pytest.skip(str(error))
    rng = np.random.default_rng(3)
    in_fmt, out_fmt = Format(8, False, 4), Format(8, True, 3)
    codes = rng.integers(-4, 5, size=(3, 2, 3, 3)).astype(np.int8)
    module = conv_module((2, 5, 6), in_fmt, out_fmt, codes, exp_base=[0, 1, -1],
                         bias=[7, -7, 0], stride=(1, 2), padding=(1, 1, 1, 0))
    ctx = make_context()
    Po2UnrollPass().apply(ctx, module)
    Po2ToHwPass().apply(ctx, module)
    top = next(op for op in module.ops if isinstance(op, hw.HWModuleOp)
               and op.sym_name.data.endswith("_top"))
    files = emit_sv_files(module, tmp_path / "sv")
    simulator = verilator.build(files, top.sym_name.data, top, tmp_path / "build")
    images = rng.integers(0, 256, size=(3, 5 * 6, 2))
    pixels = [int(p[0]) | int(p[1]) << 8 for image in images for p in image]
    drain = 3 * 5 * 3  # three images of 5x3 output pixels
    want = simulator.run(pixels, drain_outputs=drain)
    got = run_stream(HwSimulator(module, top.sym_name.data), pixels, drain)
    assert len(want) >= drain
    assert got == want
