"""po2-infer-widths: minimal widths, overflow repaired, one walk reaches the fixed point."""

from __future__ import annotations

import numpy as np
import pytest
from po2_testlib import apply, conv_module, parse
from xdsl.utils.exceptions import VerifyException

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.interpreters.po2 import run_po2
from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass, infer_block_widths
from hashiflex.passes.po2_unroll import Po2UnrollPass

OVERFLOWING = """
func.func @f(%x: !po2.act<2x1x1, u4, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u4, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui4, %b: ui4):
    %s = po2.add %a, %b : (ui4, ui4) -> si4
    %c = po2.const 1 : si64
    %t = po2.sum %s, %c : (si4, si64) -> si64
    %r = po2.rescale %t, 0 clamp [0, 255] : si64 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}
"""


def _datapath(module):
    return next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp)).body.block


def test_overflow_rejected_then_repaired():
    with pytest.raises(VerifyException, match="po2.add: result type si4 cannot hold the range"):
        parse(OVERFLOWING)
    module = parse(OVERFLOWING, verify=False)
    apply(module, Po2InferWidthsPass())
    types = [str(op.results[0].type) for op in _datapath(module).ops if op.results]
    # add widened to ui5 (0..30), the const narrowed to ui1, the sum to ui5, the rescale
    # to its clamp's ui8.
    assert types == ["ui5", "ui1", "ui6", "ui8"]
    assert run_po2(module, np.array([[[[15]], [[15]]]]))[0, 0, 0, 0] == 31


def _all_minimal(block) -> bool:
    return all(
        op.results[0].type == po2.scalar_type_for_range(*op.result_range())
        for op in block.ops
        if isinstance(op, po2.ScalarOp)
    )


def test_unrolled_layer_minimal_and_fixed_point():
    rng = np.random.default_rng(3)
    codes = (rng.integers(-8, 9, (6, 3, 3, 3)) * (rng.random((6, 3, 3, 3)) < 0.5)).astype(np.int8)
    module = conv_module((3, 5, 5), Format(8, False, 4), Format(8, False, 4), codes,
                         exp_base=[0, 1, 2, 0, 1, 2], bias=[0, 1, -2, 3, 0, 0], act="relu6",
                         padding=(1, 1, 1, 1))
    x = rng.integers(0, 256, (3, 3, 5, 5))
    expected = run_po2(module, x)
    apply(module, Po2UnrollPass(), Po2InferWidthsPass())
    block = _datapath(module)
    assert _all_minimal(block)
    assert infer_block_widths(block) == 0  # one walk was enough
    # relu6 at frac 4 clamps to [0, 96]: the yielded values are 7 bits, not the format's 8.
    assert {str(v.type) for v in block.last_op.operands} == {"ui7"}
    np.testing.assert_array_equal(run_po2(module, x), expected)
