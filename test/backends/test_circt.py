"""
Cross-check with real CIRCT: the same hw/comb/seq module is printed by xDSL, exported to
Verilog by CIRCT (`circt` Python bindings), simulated on Verilator through the same
harness, and must give exactly the outputs of our own emitter's SystemVerilog.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

pytest.importorskip("circt")

from test_sv_emitter import (  # noqa: E402
    EXTREMES_8,
    comb_ops_module,
    comb_ops_reference,
    pack,
    sequential_modules,
    stream_wrapper,
)
from test_verilator import stream_module  # noqa: E402
from xdsl.dialects import hw  # noqa: E402
from xdsl.dialects.builtin import ModuleOp  # noqa: E402
from xdsl.printer import Printer  # noqa: E402

from hashiflex.backends.sv_emitter import emit_sv_files  # noqa: E402
from hashiflex.backends.circt_check import CirctRejected, export_with_circt  # noqa: E402
from hashiflex.backends.verilator import build, ports_of  # noqa: E402


def _simulate_both(
    modules: list[hw.HWModuleOp],
    top: hw.HWModuleOp,
    workdir: Path,
    pixels: list[int],
    **run: object,
) -> tuple[list, list]:
    """Outputs of our emitter's SV and of CIRCT's Verilog for the same design."""
    name = top.sym_name.data
    design = ModuleOp(modules)
    design.verify()
    ours = build(emit_sv_files(design, workdir / "ours"), name, top, workdir / "build_ours")
    circt_sv = workdir / "circt" / f"{name}.sv"
    circt_sv.parent.mkdir(parents=True)
    circt_sv.write_text(export_with_circt(str(design)))
    theirs = build([circt_sv], name, ports_of(top), workdir / "build_circt")
    return ours.run(pixels, **run), theirs.run(pixels, **run)  # type: ignore[arg-type]


def test_comb_and_sequential_designs_match_circt(tmp_path: Path) -> None:
    """One design holding both: the comb ops and the sequential module side by side."""
    rng = random.Random(5)
    comb = comb_ops_module(parity_op=False)
    comb_wrapper, widths = stream_wrapper(comb, "tb_comb")
    cases = [(a, b, 0, 0) for a in EXTREMES_8 for b in EXTREMES_8] + [
        (rng.getrandbits(8), rng.getrandbits(8), rng.getrandbits(72), rng.getrandbits(72))
        for _ in range(100)
    ]
    ours, theirs = _simulate_both(
        [comb, comb_wrapper], comb_wrapper, tmp_path / "comb",
        [pack(case, widths) for case in cases], drain_outputs=len(cases),
    )
    assert ours == theirs
    assert [outputs for _, outputs in ours] == [comb_ops_reference(*c) for c in cases]

    sub, seq_top = sequential_modules()
    seq_wrapper, _ = stream_wrapper(seq_top, "tb_seq")
    pixels = [rng.getrandbits(16) for _ in range(100)]
    ours, theirs = _simulate_both(
        [sub, seq_top, seq_wrapper], seq_wrapper, tmp_path / "seq", pixels,
        drain_outputs=len(pixels),
    )
    assert ours == theirs and len(ours) == len(pixels)


def test_stream_design_matches_circt(tmp_path: Path) -> None:
    rng = random.Random(6)
    module = stream_module()
    pixels = [rng.getrandbits(70) for _ in range(40)]
    ours, theirs = _simulate_both(
        [module], module, tmp_path, pixels,
        writes=[(0, 1, 7), (5, 2, 9)], swaps=[6], drain_outputs=10,
    )
    assert ours == theirs and len(ours) == 10


def test_generic_form_is_reprinted_for_circt() -> None:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(ModuleOp(sequential_modules()))
    verilog = export_with_circt(out.getvalue())
    assert "module layer_0_add" in verilog and "always_ff @(posedge clk)" in verilog


def test_invalid_ir_is_rejected_with_circts_message() -> None:
    with pytest.raises(CirctRejected, match="CIRCT rejected"):
        export_with_circt("hw.module @m(in %a : i8, out y : i4) {\n  hw.output %a : i8\n}\n")
