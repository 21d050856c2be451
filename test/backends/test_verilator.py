"""
Tests of the Verilator harness: a small streaming top (4-pixel accumulator with an
in_ready bubble every 4th cycle, a weight bank written through the NPU port and made
active by npu_swap) is built from hw/comb/seq IR, emitted, simulated, and compared with a
cycle-by-cycle Python model of the same design and of the harness protocol.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_sv_emitter import ModuleBuilder, iN, write_design
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import i1
from xdsl.ir import SSAValue

from hashiflex.backends import verilator
from hashiflex.backends.verilator import (
    SimulationError,
    Simulator,
    SimulatorNotFound,
    build,
    find_verilator,
    lint,
)
from hashiflex.packing import pack_fields

DATA_BITS = 70  # wider than 64: VlWide on the C++ side
SUM_BITS = 72
RESET_CYCLES = 4


def stream_module() -> hw.HWModuleOp:
    b = ModuleBuilder(
        "stream_top",
        [
            ("clk", seq.clock), ("rst", i1), ("in_valid", i1), ("in_data", iN(DATA_BITS)),
            ("npu_we", i1), ("npu_waddr", iN(2)), ("npu_wdata", iN(8)), ("npu_swap", i1),
        ],
        [("in_ready", i1), ("out_valid", i1), ("sum", iN(SUM_BITS)), ("active", iN(32))],
    )
    clk, rst = b["clk"], b["rst"]

    def register(width: int, hint: str) -> seq.CompRegOp:
        """A register with reset to 0 whose input is connected later (feedback)."""
        zero = b.const(0, width)
        op = seq.CompRegOp(zero, clk, (rst, zero))
        b.add(op, hint)
        return op

    def hold_unless(enable: SSAValue, new: SSAValue, reg: seq.CompRegOp) -> None:
        reg.operands[0] = b.add(comb.MuxOp(enable, new, reg.results[0]))

    phase = register(2, "phase")
    phase.operands[0] = b.add(comb.AddOp([phase.results[0], b.const(1, 2)]))
    in_ready = b.add(comb.ICmpOp(phase.results[0], b.const(3, 2), "ne"), "in_ready_w")
    take = b.add(comb.AndOp([b["in_valid"], in_ready]), "take")

    count = register(2, "count")
    hold_unless(take, b.add(comb.AddOp([count.results[0], b.const(1, 2)])), count)
    first = b.add(comb.ICmpOp(count.results[0], b.const(0, 2), "eq"))
    last = b.add(comb.ICmpOp(count.results[0], b.const(3, 2), "eq"))

    acc = register(SUM_BITS, "acc")
    base = b.add(comb.MuxOp(first, b.const(0, SUM_BITS), acc.results[0]))
    data = b.add(comb.ConcatOp([b.const(0, SUM_BITS - DATA_BITS), b["in_data"]], iN(SUM_BITS)))
    total = b.add(comb.AddOp([base, data]), "total")
    hold_unless(take, total, acc)
    out_valid = b.add(comb.AndOp([take, last]))

    active = []
    for index in range(4):
        shadow = register(8, f"shadow{index}")
        selected = b.add(comb.ICmpOp(b["npu_waddr"], b.const(index, 2), "eq"))
        write = b.add(comb.AndOp([b["npu_we"], selected]))
        hold_unless(write, b["npu_wdata"], shadow)
        live = register(8, f"active{index}")
        hold_unless(b["npu_swap"], shadow.results[0], live)
        active.append(live.results[0])
    active_word = b.add(comb.ConcatOp(list(reversed(active)), iN(32)))
    return b.finish([in_ready, out_valid, total, active_word])


def stream_reference(
    pixels: list[int],
    controls: list[tuple[str, int, int, int]],
    drain: int,
) -> tuple[list[tuple[int, list[int]]], tuple[int, int, int, int]]:
    """The harness protocol and stream_module, cycle by cycle (after reset all zero)."""
    phase = count = acc = 0
    shadow, active = [0] * 4, [0] * 4
    cycle = accepted = stalls = produced = 0
    next_pixel = next_control = 0
    records = []
    while True:
        have_pixel = next_pixel < len(pixels)
        draining = not have_pixel and produced < drain
        control_now = next_control < len(controls) and controls[next_control][1] <= accepted
        if not have_pixel and not draining and next_control == len(controls):
            break
        valid = have_pixel or draining
        data = pixels[next_pixel] if have_pixel else 0
        control = controls[next_control] if control_now else None
        next_control += control_now
        ready = phase != 3
        take = valid and ready
        total = (0 if count == 0 else acc) + data
        if take and count == 3:
            word = pack_fields(active, 8)
            records.append((cycle, [total % (1 << SUM_BITS), word]))
            produced += 1
        stalls += valid and not ready
        # Rising edge.
        phase = (phase + 1) % 4
        if take:
            count, acc = (count + 1) % 4, total
            accepted += 1
            next_pixel += have_pixel
        if control is not None and control[0] == "W":
            shadow[control[2]] = control[3]
        if control is not None and control[0] == "S":
            active = list(shadow)
        cycle += 1
    return records, (cycle, accepted, stalls, produced)


@pytest.fixture(scope="module")
def stream_sim(tmp_path_factory: pytest.TempPathFactory) -> Simulator:
    workdir = tmp_path_factory.mktemp("stream")
    module = stream_module()
    files = write_design([module], workdir / "sv")
    assert lint(files, "stream_top") == []
    return build(files, "stream_top", module, workdir / "build")


def test_stream_with_writes_and_swaps(stream_sim: Simulator) -> None:
    rng = random.Random(3)
    top = (1 << DATA_BITS) - 1
    pixels = [top, top, top, top, 0, 1, top, 5] + [rng.getrandbits(DATA_BITS) for _ in range(30)]
    writes = [(0, 0, 0x11), (0, 1, 0x22), (3, 2, 0xFF), (9, 3, 0x80), (9, 0, 0x44)]
    swaps = [2, 9, 17]
    drain = len(pixels) // 4 + 1  # the last, partial group is completed by zero pixels
    records = stream_sim.run(pixels, writes=writes, swaps=swaps, drain_outputs=drain)
    # The harness orders writes before swaps at equal k.
    controls = sorted(
        [("W", k, a, d) for k, a, d in writes] + [("S", k, 0, 0) for k in swaps],
        key=lambda c: (c[1], c[0] == "S"),
    )
    expected, (cycles, accepted, stalls, produced) = stream_reference(pixels, controls, drain)
    assert records == expected
    assert stream_sim.stats is not None
    assert (stream_sim.stats.cycles, stream_sim.stats.accepted) == (cycles, accepted)
    assert (stream_sim.stats.stalls, stream_sim.stats.outputs) == (stalls, produced)
    # Independent sanity checks of the protocol: one bubble every 4 cycles.
    assert stalls == (cycles + 1) // 4 and accepted == cycles - stalls
    assert records[0][1][0] == 4 * top and records[0][0] == 4  # 4 pixels + 1 bubble


def test_numpy_pixels_equal_python_ints(stream_sim: Simulator) -> None:
    rng = np.random.default_rng(4)
    words = rng.integers(0, 1 << 32, size=(16, 3), dtype=np.uint64).astype(np.uint32)
    words[:, 2] &= (1 << (DATA_BITS - 64)) - 1
    as_ints = [pack_fields([int(w) for w in row], 32) for row in words]
    assert stream_sim.run(words, drain_outputs=4) == stream_sim.run(as_ints, drain_outputs=4)
    assert stream_sim.run(words, drain_outputs=4)[0][1][0] == sum(as_ints[:4])


def test_cycle_limit_is_an_error(stream_sim: Simulator) -> None:
    with pytest.raises(SimulationError, match="cycle limit"):
        stream_sim.run([1, 2], drain_outputs=50, max_cycles=20)


def test_write_waiting_for_missing_pixels_is_an_error(stream_sim: Simulator) -> None:
    with pytest.raises(SimulationError, match="never come"):
        stream_sim.run([1, 2], writes=[(5, 0, 1)])


def test_build_is_cached(stream_sim: Simulator) -> None:
    before = stream_sim.binary.stat().st_mtime_ns
    again = build(
        sorted((stream_sim.workdir.parent / "sv").glob("*.sv")),
        "stream_top",
        stream_sim.ports,
        stream_sim.workdir,
    )
    assert again.binary.stat().st_mtime_ns == before


def test_lint_reports_unused_inputs(tmp_path: Path) -> None:
    source = tmp_path / "unused.sv"
    source.write_text(
        "module unused (\n  input wire [7:0] a,\n  output wire [3:0] y\n);\n"
        "  assign y = a[3:0];\nendmodule\n"
    )
    warnings = lint([source], "unused")
    assert len(warnings) == 1 and "UNUSEDSIGNAL" in warnings[0]


def test_missing_compiler_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_verilator().is_file()
    real_which = shutil.which
    monkeypatch.setattr(
        verilator.shutil, "which", lambda name: None if name == "g++" else real_which(name)
    )
    with pytest.raises(SimulatorNotFound, match="g\\+\\+"):
        find_verilator()
