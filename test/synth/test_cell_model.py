"""
The calibrated cell model (backends/cell_model.py) and the compile-time estimate built on it
(hashiflex/estimate.py): pure arithmetic, no tools needed.
"""

from __future__ import annotations

import json

import pytest

from hashiflex.backends import cell_model
from hashiflex.estimate import estimate_module, estimated_section
from hashiflex.synth import module_features


def test_fit_stays_near_the_measured_table():
    for (levels, width), measured in cell_model.ADDER_TREE_DELAY_NS.items():
        assert cell_model.adder_tree_delay_ns(levels, width) == pytest.approx(measured, abs=0.25)


def test_delay_grows_with_levels_and_width():
    assert cell_model.adder_tree_delay_ns(0, 16) == 0
    assert cell_model.adder_tree_delay_ns(2, 16) < cell_model.adder_tree_delay_ns(3, 16)
    assert cell_model.adder_tree_delay_ns(2, 12) < cell_model.adder_tree_delay_ns(2, 24)
    stage = cell_model.register_to_register_ns(2, 16)
    assert stage == pytest.approx(cell_model.REGISTER_OVERHEAD_NS + cell_model.adder_tree_delay_ns(2, 16))


def test_levels_for_period():
    # A slower clock fits more levels; a period below one level still gives one.
    fast = cell_model.max_levels_for_period(1.0, 16)
    slow = cell_model.max_levels_for_period(2.5, 16)
    assert 1 <= fast < slow
    assert cell_model.register_to_register_ns(slow, 16) <= 2.5
    assert cell_model.max_levels_for_period(0.1, 16) == 1


def test_estimate_rows_are_marked(tmp_path):
    hw = tmp_path / "model.hw.mlir"
    hw.write_text(
        "hw.module @conv(in %0 clk: !seq.clock) {\n"
        "    %1 = comb.add %a, %b : i12\n"
        "    %2 = comb.sub %a, %b : i9\n"
        "    %3 = seq.compreg %1, %clk : i12\n"
        "}\n"
    )
    report = {"layers": [{"module": "conv", "register_bits": 12, "comb_adder_levels": 2}]}
    section = estimated_section(report, ["conv"], module_features(tmp_path))
    row = section["modules"][0]
    assert section["estimated"] and row["estimated"] and row["cells"] is None
    assert row["area_um2"] == pytest.approx(cell_model.module_area_um2(21, 12), abs=0.1)
    assert row["critical_path_ns"] == pytest.approx(cell_model.register_to_register_ns(2, 12), abs=1e-4)
    assert section["fmax_mhz"] == row["fmax_mhz"]
    json.dumps(section)  # goes into report.json


def test_estimate_without_hw_ir_uses_the_report():
    row = estimate_module("pool", None, {"layers": [{"module": "pool", "register_bits": 100}]})
    assert row["flip_flops"] == round(100 * cell_model.REGISTER_RETENTION)
