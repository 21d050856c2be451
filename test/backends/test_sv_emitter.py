"""
Tests of the SystemVerilog emitter: hand-built hw/comb/seq modules are emitted, linted
with `verilator -Wall` (no warning allowed) and simulated through the streaming harness
against Python references written independently of the emitter.

The builders at the top (`ModuleBuilder`, `stream_wrapper`, the example designs) are also
used by test_verilator.py and test_circt.py.
"""

from __future__ import annotations

import io
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import (
    FlatSymbolRefAttr,
    IntegerType,
    ModuleOp,
    i1,
)
from xdsl.ir import Attribute, SSAValue

from hashiflex.backends.sv_emitter import (
    EmitError,
    SystemVerilogTarget,
    emit_sv_files,
    emit_sv_string,
    sanitize_name,
)
from hashiflex.passes.to_hw.builder import HwBuilder
from hashiflex.passes.to_hw.layer import ModuleShell

# -- building hw modules ------------------------------------------------------------


class ModuleBuilder(HwBuilder):
    """
    One hw.module by the compiler's own builder (passes/to_hw/builder.py) on a module shell:
    ports first, then ops appended in order (`add` takes any op as built, so that a test
    can make the exact form it exercises), then the outputs in port order.
    """

    def __init__(
        self,
        name: str,
        inputs: Sequence[tuple[str, Attribute]],
        outputs: Sequence[tuple[str, Attribute]],
    ) -> None:
        self.shell = ModuleShell(name, list(inputs), list(outputs))
        args = self.shell.args
        super().__init__(self.shell.block, args.get("clk"), args.get("rst"))

    def __getitem__(self, port: str) -> SSAValue:
        return self.shell.args[port]

    def finish(self, values: Sequence[SSAValue]) -> hw.HWModuleOp:
        names = [name for name, _ in self.shell.outputs]
        return self.shell.finish(dict(zip(names, values, strict=True)))


def iN(width: int) -> IntegerType:
    return IntegerType(width)


def stream_wrapper(
    dut: hw.HWModuleOp, name: str = "tb_top"
) -> tuple[hw.HWModuleOp, list[int]]:
    """A streaming top for `dut`: in_data packs the DUT's data inputs (first at the LSB),
    every DUT output is registered, out_valid is in_valid registered (reset by rst).

    Returns the wrapper and the widths of the packed input fields.
    """
    ports = dut.module_type.ports.data
    data_inputs = [
        p for p in ports if p.dir.data.is_input_like() and p.port_name.data not in ("clk", "rst")
    ]
    outputs = [p for p in ports if p.dir.data.is_output_like()]
    widths = [p.type.width.data for p in data_inputs]
    b = ModuleBuilder(
        name,
        [("clk", seq.clock), ("rst", i1), ("in_valid", i1), ("in_data", iN(sum(widths)))],
        [("out_valid", i1)] + [(f"o_{p.port_name.data}", p.type) for p in outputs],
    )
    args: list[tuple[str, SSAValue]] = []
    low = 0
    for port in ports:
        if not port.dir.data.is_input_like():
            continue
        pname = port.port_name.data
        if pname in ("clk", "rst"):
            args.append((pname, b[pname]))
            continue
        width = port.type.width.data
        whole = low == 0 and width == sum(widths)
        args.append((pname, b["in_data"] if whole else b.extract(b["in_data"], low, width)))
        low += width
    instance = hw.InstanceOp(
        "dut",
        FlatSymbolRefAttr(dut.sym_name.data),
        args,
        [(p.port_name.data, p.type) for p in outputs],
    )
    b.block.add_op(instance)
    zero = b.const(0, 1)
    valid = b.add(seq.CompRegOp(b["in_valid"], b["clk"], (b["rst"], zero)))
    registered = [b.add(seq.CompRegOp(v, b["clk"])) for v in instance.results]
    return b.finish([valid, *registered]), widths


def pack(values: Sequence[int], widths: Sequence[int]) -> int:
    packed, low = 0, 0
    for value, width in zip(values, widths):
        packed |= (value & ((1 << width) - 1)) << low
        low += width
    return packed


# -- example designs --------------------------------------------------------------

ICMP_PREDICATES = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]


def comb_ops_module(parity_op: bool = True) -> hw.HWModuleOp:
    """Every comb op on 8-bit operands a, b, plus wide (72-bit) arithmetic on c, d.

    xDSL 0.74 prints comb.parity with its result type where CIRCT expects the operand's
    (`comb.parity %a : i1`), which CIRCT rejects: `parity_op=False` spells it as an xor.
    """
    i8, i72 = iN(8), iN(72)
    outputs = [
        "add", "sub", "mul", "and3", "or", "xor", "shl", "shru", "shrs", "divu", "divs",
        "modu", "mods", "parity", "mux", "rep", "cat", "ext", "sext",
    ]
    b = ModuleBuilder(
        "comb_ops",
        [("a", i8), ("b", i8), ("c", i72), ("d", i72)],
        [(o, i8) for o in outputs]
        + [("icmp", iN(10)), ("wide", i72), ("wshr", i72), ("segs", iN(6))],
    )
    a, bb, c, d = b["a"], b["b"], b["c"], b["d"]
    one, seven = b.const(1, 8), b.const(7, 8)
    nonzero = b.add(comb.OrOp([bb, one]))  # divisors are never zero
    amount = b.add(comb.AndOp([bb, seven]))  # shift amounts below the width
    results = {
        "add": b.add(comb.AddOp([a, bb]), "sum"),
        "sub": b.add(comb.SubOp(a, bb)),
        "mul": b.add(comb.MulOp([a, bb])),
        "and3": b.add(comb.AndOp([a, bb, b.const(0x5A, 8)])),
        "or": b.add(comb.OrOp([a, bb])),
        "xor": b.add(comb.XorOp([a, bb])),
        "shl": b.add(comb.ShlOp(a, amount)),
        "shru": b.add(comb.ShrUOp(a, amount)),
        "shrs": b.add(comb.ShrSOp(a, amount)),
        "divu": b.add(comb.DivUOp(a, nonzero)),
        "divs": b.add(comb.DivSOp(a, nonzero)),
        "modu": b.add(comb.ModUOp(a, nonzero)),
        "mods": b.add(comb.ModSOp(a, nonzero)),
    }
    if parity_op:
        # xDSL's ParityOp constructor gives the result the operand's type; comb says i1.
        parity = b.add(comb.ParityOp.create(operands=[a], result_types=[i1]))
    else:  # the same function, spelled as an xor of the bits
        parity = b.add(comb.XorOp([b.extract(a, i, 1) for i in range(8)]))
    results["parity"] = b.add(comb.ConcatOp([b.const(0, 7), parity], i8))
    lt = b.add(comb.ICmpOp(a, bb, "slt"))
    results["mux"] = b.add(comb.MuxOp(lt, a, bb))
    nibble = b.extract(a, 2, 4)
    results["rep"] = b.add(comb.ReplicateOp(nibble, i8))
    results["cat"] = b.add(comb.ConcatOp([b.extract(bb, 0, 4), b.extract(a, 4, 4)], i8))
    # The sum's bit 8 only matters through a wider add: extract from an inlined expression.
    wide_sum = b.add(
        comb.AddOp(
            [b.add(comb.ConcatOp([b.const(0, 1), a], iN(9))),
             b.add(comb.ConcatOp([b.const(0, 1), bb], iN(9)))]
        )
    )
    results["ext"] = b.extract(wide_sum, 1, 8)
    sign = b.extract(a, 7, 1)
    results["sext"] = b.add(comb.ConcatOp([b.add(comb.ReplicateOp(sign, iN(4))), nibble], i8))
    bits = [b.add(comb.ICmpOp(a, bb, p)) for p in ICMP_PREDICATES]
    icmp = b.add(comb.ConcatOp(list(reversed(bits)), iN(10)))
    wide = b.add(comb.SubOp(b.add(comb.MulOp([c, d])), b.add(comb.AddOp([c, d]))))
    wshr = b.add(comb.ShrSOp(c, b.add(comb.AndOp([d, b.const(127, 72)]))))
    # A value used twice but only in two bit ranges with a hole between them.
    product = b.add(comb.MulOp([c, d]), "prod")
    segs = b.add(comb.ConcatOp([b.extract(product, 60, 3), b.extract(product, 3, 3)], iN(6)))
    return b.finish([results[o] for o in outputs] + [icmp, wide, wshr, segs])


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def _trunc_div(x: int, y: int) -> int:
    quotient = abs(x) // abs(y)
    return quotient if (x < 0) == (y < 0) else -quotient


def comb_ops_reference(a: int, b: int, c: int, d: int) -> list[int]:
    """The outputs of comb_ops_module, computed from the comb dialect's definitions."""
    m8, m72 = 0xFF, (1 << 72) - 1
    nz, amt = b | 1, b & 7
    sa, snz = _signed(a, 8), _signed(nz, 8)
    values = [
        a + b, a - b, a * b, a & b & 0x5A, a | b, a ^ b, a << amt, a >> amt, sa >> amt,
        a // nz, _trunc_div(sa, snz), a % nz, sa - _trunc_div(sa, snz) * snz,
        bin(a).count("1") & 1, a if sa < _signed(b, 8) else b,
        ((a >> 2) & 0xF) * 0x11, ((b & 0xF) << 4) | (a >> 4), (a + b) >> 1,
        (0xF0 if a >> 7 else 0) | ((a >> 2) & 0xF),
    ]
    sb = _signed(b, 8)
    compares = [a == b, a != b, sa < sb, sa <= sb, sa > sb, sa >= sb, a < b, a <= b, a > b, a >= b]
    icmp = sum(int(bit) << i for i, bit in enumerate(compares))
    product = (c * d) & m72
    segs = (((product >> 60) & 7) << 3) | ((product >> 3) & 7)
    wshr = (_signed(c, 72) >> (d & 127)) & m72
    return [v & m8 for v in values] + [icmp, (c * d - (c + d)) & m72, wshr, segs]


def sequential_modules() -> list[hw.HWModuleOp]:
    """A registered adder with reset, an accumulator with feedback, a power-on counter,
    behind an instance of a module whose name and ports need sanitising."""
    i8, i16 = iN(8), iN(16)
    sub = ModuleBuilder("layer.0.add", [("input", i8), ("reg", i8)], [("output", i8)])
    sub_mod = sub.finish([sub.add(comb.AddOp([sub["input"], sub["reg"]]))])

    b = ModuleBuilder(
        "seq_top",
        [("clk", seq.clock), ("rst", i1), ("x", i8), ("y", i8)],
        [("sum", i8), ("acc", i16), ("count", i8)],
    )
    instance = hw.InstanceOp(
        "add.inst", FlatSymbolRefAttr("layer.0.add"), [("input", b["x"]), ("reg", b["y"])],
        [("output", i8)],
    )
    b.block.add_op(instance)
    zero8, zero16 = b.const(0, 8), b.const(0, 16)
    registered = b.add(seq.CompRegOp(instance.results[0], b["clk"], (b["rst"], zero8)))
    # Feedback: the register's input is defined after the register (graph region).
    acc_reg = seq.CompRegOp(zero16, b["clk"], (b["rst"], zero16))
    b.add(acc_reg, "acc_q")
    widened = b.add(comb.ConcatOp([b.const(0, 8), b["x"]], i16))
    acc_next = b.add(comb.AddOp([acc_reg.results[0], widened]))
    acc_reg.operands[0] = acc_next
    counter = seq.CompRegOp(zero8, b["clk"], power_on_value=b.const(5, 8))
    b.add(counter)
    counter.operands[0] = b.add(comb.AddOp([counter.results[0], b.const(1, 8)]))
    return [sub_mod, b.finish([registered, acc_reg.results[0], counter.results[0]])]


def sequential_reference(pixels: list[tuple[int, int]], reset_cycles: int = 4) -> list[list[int]]:
    """Per-cycle outputs of seq_top as seen by stream_wrapper: output record c + 1 holds
    the DUT's state during cycle c."""
    total, acc, count = 0, 0, 5 + reset_cycles  # the counter runs during reset too
    records = []
    for x, y in pixels:
        records.append([total, acc, count])
        total, acc, count = (x + y) & 0xFF, (acc + x) & 0xFFFF, (count + 1) & 0xFF
    return records


# -- helpers --------------------------------------------------------------------------

EXTREMES_8 = [0, 1, 0x7F, 0x80, 0xFF]
EXTREMES_72 = [0, 1, (1 << 71) - 1, 1 << 71, (1 << 72) - 1]


def write_design(modules: Sequence[hw.HWModuleOp], directory: Path) -> list[Path]:
    top = ModuleOp(list(modules))
    top.verify()
    return emit_sv_files(top, directory)


# -- tests: text and lint ---------------------------------------------------------


def test_names_trace_back_to_the_ir() -> None:
    sv = emit_sv_string(ModuleOp(sequential_modules()))
    assert "module layer_0_add (" in sv
    assert "input  wire [7:0] input_," in sv and "output wire [7:0] output_" in sv
    assert "layer_0_add add_inst (" in sv and ".reg_(y)" in sv
    assert "logic [15:0] acc_q;" in sv
    assert re.search(r"initial _\d+ = 8'h5;", sv)
    assert "always_ff @(posedge clk)" in sv


def test_sanitize_name() -> None:
    assert sanitize_name("features.0.conv") == "features_0_conv"
    assert sanitize_name("3x") == "_3x"
    assert sanitize_name("module") == "module_"
    assert sanitize_name("delete") == "delete_"  # a C++ word: Verilator's SYMRSVDWORD


def test_output_is_deterministic() -> None:
    first = emit_sv_string(ModuleOp([comb_ops_module()]))
    second = emit_sv_string(ModuleOp([comb_ops_module()]))
    assert first == second


def test_dead_ops_are_not_emitted() -> None:
    b = ModuleBuilder("dead", [("a", iN(8))], [("y", iN(8))])
    b.add(comb.MulOp([b["a"], b["a"]]), "unused_product")
    sv = emit_sv_string(ModuleOp([b.finish([b["a"]])]))
    assert "unused_product" not in sv and "*" not in sv


def test_partially_read_values_declare_only_read_bits() -> None:
    sv = emit_sv_string(ModuleOp([comb_ops_module()]))
    # `prod` is read as bits [62:60] and [5:3] only.
    assert "wire [5:3] prod = " in sv and "wire [62:60] prod_60 = " in sv


def test_trivial_unsigned_compares_are_folded() -> None:
    b = ModuleBuilder("cmp", [("a", iN(8))], [("ge0", i1), ("gtmax", i1), ("lt", i1)])
    ge0 = b.add(comb.ICmpOp(b["a"], b.const(0, 8), "uge"))
    gtmax = b.add(comb.ICmpOp(b["a"], b.const(255, 8), "ugt"))
    lt = b.add(comb.ICmpOp(b["a"], b.const(3, 8), "ult"))
    sv = emit_sv_string(ModuleOp([b.finish([ge0, gtmax, lt])]))
    assert "assign ge0 = 1'h1;" in sv and "assign gtmax = 1'h0;" in sv
    assert "assign lt = a < 8'h3;" in sv


def test_unsupported_op_is_an_error() -> None:
    b = ModuleBuilder("clkdiv", [("clk", seq.clock)], [])
    b.add(seq.ClockDividerOp(b["clk"], 2))
    with pytest.raises(EmitError, match="seq.clock_div"):
        emit_sv_string(ModuleOp([b.finish([])]))


def test_target_interface() -> None:
    out = io.StringIO()
    SystemVerilogTarget().emit(None, ModuleOp([comb_ops_module()]), out)  # type: ignore[arg-type]
    assert SystemVerilogTarget.name == "sv"
    assert out.getvalue().count("endmodule") == 1


def test_emission_is_fast_on_large_modules() -> None:
    width, count = 16, 20_000
    b = ModuleBuilder("big", [("clk", seq.clock), ("x", iN(width))], [("y", iN(width))])
    rng = random.Random(7)
    values = [b["x"]]
    for index in range(count):
        lhs, rhs = rng.choice(values[-40:]), rng.choice(values[-40:])
        if index % 5 == 4:
            values.append(b.add(seq.CompRegOp(lhs, b["clk"])))
        else:
            values.append(b.add(comb.AddOp([lhs, rhs])))
    module = ModuleOp([b.finish([values[-1]])])
    start = time.perf_counter()
    sv = emit_sv_string(module)
    elapsed = time.perf_counter() - start
    assert sv.count("always_ff") == 1
    assert elapsed < 3.0  # about 0.2 s at 100K ops/s; generous for loaded machines


# -- tests: lint and simulation ----------------------------------------------------


def test_lint_clean(tmp_path: Path) -> None:
    from hashiflex.backends.verilator import lint

    for modules, top in (
        ([comb_ops_module()], "comb_ops"),
        (sequential_modules(), "seq_top"),
    ):
        wrapper, _ = stream_wrapper(modules[-1])
        files = write_design([*modules, wrapper], tmp_path / top)
        assert lint(files, "tb_top") == []


def _run(
    modules: Sequence[hw.HWModuleOp], workdir: Path, pixels: list[int]
) -> list[tuple[int, list[int]]]:
    from hashiflex.backends.verilator import build

    wrapper, _ = stream_wrapper(modules[-1])
    files = write_design([*modules, wrapper], workdir / "sv")
    simulator = build(files, "tb_top", wrapper, workdir / "build")
    return simulator.run(pixels, drain_outputs=len(pixels))


def test_comb_ops_simulate(tmp_path: Path) -> None:
    rng = random.Random(1)
    cases = [
        (a, b, c, d)
        for a in EXTREMES_8
        for b in EXTREMES_8
        for c, d in zip(EXTREMES_72, reversed(EXTREMES_72))
    ][:60]
    cases += [
        (rng.getrandbits(8), rng.getrandbits(8), rng.getrandbits(72), rng.getrandbits(72))
        for _ in range(200)
    ]
    module = comb_ops_module()
    _, widths = stream_wrapper(module)
    records = _run([module], tmp_path, [pack(case, widths) for case in cases])
    assert [cycle for cycle, _ in records] == list(range(1, len(cases) + 1))
    for case, (_, outputs) in zip(cases, records):
        assert outputs == comb_ops_reference(*case), case


def test_sequential_simulate(tmp_path: Path) -> None:
    rng = random.Random(2)
    pixels = [(0xFF, 0xFF), (0x80, 0x80), (0, 0)] + [
        (rng.getrandbits(8), rng.getrandbits(8)) for _ in range(300)
    ]
    records = _run(sequential_modules(), tmp_path, [pack(p, [8, 8]) for p in pixels])
    assert [outputs for _, outputs in records] == sequential_reference(pixels)


def test_use_before_definition_is_ordered() -> None:
    """In a graph region a comb op may come after its user: wires are still declared
    before they are read."""
    b = ModuleBuilder("order", [("a", iN(8))], [("y", iN(8)), ("z", iN(8))])
    late = comb.MulOp([b["a"], b["a"]])
    user = b.add(comb.AddOp([late.results[0], b["a"]]))
    b.add(late)
    sv = emit_sv_string(ModuleOp([b.finish([user, late.results[0]])]))
    declared = sv.index("wire [7:0] _0 = a * a;")
    assert declared < sv.index("assign y = _0 + a;")
