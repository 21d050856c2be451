"""
The last rung of the verification ladder on whole compiled designs: the hw IR the project
writes (`DIR/model.hw.mlir`) is parsed by real CIRCT (`circt` Python bindings), lowered and
exported to Verilog by CIRCT, and that Verilog, simulated in Verilator through the same
harness, gives exactly the outputs (every output port, every cycle) of our own
SystemVerilog on the same pixels -- and so the golden model's logits and classes.

Default tier: one zoo net with a residual, a depthwise conv and a signed input
(dw_residual); the others and the tiny CNN are `slow`.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("circt")

from conftest import extreme_images  # noqa: E402

import nets  # noqa: E402
from hashiflex import api  # noqa: E402
from hashiflex.backends import verilator  # noqa: E402
from hashiflex.backends.circt_check import export_with_circt  # noqa: E402
from hashiflex.golden.semantics import Format, quantize_input  # noqa: E402


def _crosscheck(design, images: np.ndarray, workdir) -> None:
    m = design.manifest
    fmt = Format(m["input_format"]["bits"], m["input_format"]["signed"], m["input_format"]["frac"])
    pixels = api.pack_pixels(quantize_input(images, fmt), fmt.bits)
    ports = [verilator.Port(p["name"], p["width"], p["dir"]) for p in m["ports"]]

    circt_sv = workdir / "circt" / f"{m['top']}.sv"
    circt_sv.parent.mkdir(parents=True)
    circt_sv.write_text(export_with_circt(design.file("hw").read_text()))
    theirs = verilator.build([circt_sv], m["top"], ports, workdir / "build_circt")
    ours = api.build_simulator(design)
    out_ours = ours.run(pixels, drain_outputs=len(images))[: len(images)]
    out_theirs = theirs.run(pixels, drain_outputs=len(images))[: len(images)]
    assert len(out_ours) == len(images)
    assert out_theirs == out_ours  # same cycles, same class, same logits bit for bit

    # and both equal the golden model
    result = api.simulate(design.path, images, check=True)
    assert result.ok and result.compared == len(images)
    assert [cycle for cycle, _ in out_ours] == result.out_cycles.tolist()


def _images(name: str) -> np.ndarray:
    return nets.stimulus(name, n_random=5, seed=7)


@pytest.mark.parametrize("name", [
    "dw_residual",
    pytest.param("stride2_valid", marks=pytest.mark.slow),
    pytest.param("requant_two_residuals", marks=pytest.mark.slow),
    pytest.param("grouped_odd", marks=pytest.mark.slow),
])
def test_zoo_design_matches_circt_export(designs, tmp_path, name):
    _crosscheck(designs.zoo(name), _images(name), tmp_path)


@pytest.mark.slow
def test_tiny_cnn_matches_circt_export(designs, digits_test_images, tmp_path):
    x, _ = digits_test_images
    images = np.concatenate([x[:12], extreme_images(x.shape[1:])])
    _crosscheck(designs.example("tiny_cnn"), images, tmp_path)


def test_circt_accepts_the_hw_ir_verbatim(designs):
    """CIRCT parses the printed hw IR as is (custom form), keeps every module and exports
    one Verilog module per hw.module, the top with our port names."""
    design = designs.zoo("dw_residual")
    text = design.file("hw").read_text()
    verilog = export_with_circt(text)
    n_modules = text.count("hw.module @")
    assert verilog.count("\nmodule ") + verilog.startswith("module ") == n_modules
    top = design.manifest["top"]
    header = verilog[verilog.index(f"module {top}("):]
    header = header[: header.index(");")]
    for port in design.manifest["ports"]:
        assert port["name"] in header
