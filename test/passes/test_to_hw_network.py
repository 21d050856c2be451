"""
The seams of the hardware lowering: the table of layer lowerings (passes/to_hw/network.py)
and the hardening pipeline written once (passes/__init__.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.passes import (
    HARDENING_PIPELINE,
    all_passes,
    hardening_pipeline,
    hardening_pipeline_spec,
)
from hashiflex.passes.po2_to_hw import Po2ToHwPass
from hashiflex.passes.to_hw import LOWERINGS, LoweringError, NetworkLowering
from po2_testlib import conv_module

PO2_OPT = Path(sys.executable).parent / "po2-opt"
SV_INPUT = Path(__file__).parents[1] / "po2-opt" / "sv-target.mlir"


def test_every_layer_op_the_importer_makes_has_a_lowering():
    for cls in (po2.UnrolledConv2dOp, po2.RequantOp, po2.ResidualAddOp, po2.AvgPoolOp,
                po2.FlattenOp, po2.NpuLinearOp):
        assert cls in LOWERINGS, cls.name


def test_layer_level_conv_is_rejected_by_name():
    codes = np.ones((2, 1, 3, 3), dtype=np.int8)
    module = conv_module((1, 6, 6), Format(8, False, 0), Format(8, False, 0), codes,
                         exp_base=[0, 0], bias=[0, 0], padding=(1, 1, 1, 1))
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    net = NetworkLowering(fn)
    conv = next(net.layers())
    with pytest.raises(LoweringError, match="layer 'conv': po2.conv2d must be unrolled first"):
        net.lower(conv)


def test_pipeline_is_the_registry_in_order():
    passes = hardening_pipeline(levels_per_stage=3, npu_lanes=2)
    assert [p.name for p in passes] == list(HARDENING_PIPELINE)
    assert all(name in all_passes() for name in HARDENING_PIPELINE)
    assert passes[-1] == Po2ToHwPass(levels_per_stage=3, npu_lanes=2)
    assert hardening_pipeline_spec(levels_per_stage=3) == (
        "po2-unroll,po2-canonicalize,po2-cse{max_depth=2},po2-infer-widths,"
        "po2-to-hw{levels_per_stage=3}")
    # --no-cse leaves po2-cse out; the rest keeps its order.
    assert [p.name for p in hardening_pipeline(cse=False)] == [
        name for name in HARDENING_PIPELINE if name != "po2-cse"]
    assert hardening_pipeline_spec(cse=False, cse_max_depth=5) == (
        "po2-unroll,po2-canonicalize,po2-infer-widths,po2-to-hw")


def test_po2_opt_runs_the_pipeline_spec():
    for spec in (hardening_pipeline_spec(), hardening_pipeline_spec(levels_per_stage=1)):
        run = subprocess.run([str(PO2_OPT), str(SV_INPUT), "-p", spec, "-t", "sv"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "endmodule" in run.stdout
