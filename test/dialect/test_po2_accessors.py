"""
The typed accessors of the po2 ops: `op.stride` is a tuple of ints, `op.weight_codes` an
int64 array, and so on, while the IR keeps its property names (`stride = array<i64: ...>`);
the typed prop_defs reject a property of the wrong kind in generic IR.
"""

from __future__ import annotations

import numpy as np
import pytest
from po2_testlib import conv_module, parse
from xdsl.utils.exceptions import VerifyException

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format


def test_conv2d_accessors_are_python_values():
    codes = np.array([[[[1, -2], [0, 3]]], [[[-1, 0], [4, 2]]]], dtype=np.int64)
    module = conv_module((1, 5, 4), Format(8, False, 4), Format(8, False, 2), codes,
                         exp_base=[-3, -2], bias=[7, -5], stride=(2, 1), padding=(1, 0, 0, 1),
                         act="relu")
    (conv,) = [op for op in module.walk() if isinstance(op, po2.Conv2dOp)]
    assert conv.layer == "conv" and conv.act == "relu"
    assert (conv.kernel, conv.stride, conv.padding, conv.groups) == ((2, 2), (2, 1), (1, 0, 0, 1), 1)
    assert (conv.exp_bits, conv.exp_base, conv.bias) == (3, (-3, -2), (7, -5))
    assert conv.shift == (4 - 2 + 3, 4 - 2 + 2)  # Fx - Fy - exp_base
    assert conv.weight_codes.dtype == np.int64 and np.array_equal(conv.weight_codes, codes)
    # the IR names are unchanged: the accessors read the properties the text shows
    assert set(conv.properties) >= {"layer", "kernel", "stride", "padding", "groups", "act",
                                    "exp_bits", "exp_base", "shift", "bias", "weights"}


def test_scalar_and_npu_accessors_round_trip_through_text():
    module = parse("""
    func.func @f(%x: ui8, %v: !po2.act<4, u8, 4>) -> (ui8, !po2.act<2, s20, 10>) {
      %s = po2.shl %x, 3 : ui8 -> ui11
      %r = po2.rescale %s, 2 clamp [0, 255] : ui11 -> ui8
      %y = po2.npu_linear "fc" %v slot "classifier" weight_bits 8 weight_frac 6 bias_bits 16 bias [3, -4] weights dense<[[1, -2, 3, -4], [5, 6, -7, 8]]> : tensor<2x4xi32> : !po2.act<4, u8, 4> -> !po2.act<2, s20, 10>
      func.return %r, %y : ui8, !po2.act<2, s20, 10>
    }
    """)
    shl, rescale, npu = [op for op in module.walk() if op.name.startswith("po2.")]
    assert shl.amount == 3 and (rescale.shift, rescale.lo, rescale.hi) == (2, 0, 255)
    assert po2.value_range(rescale.result) == (0, 255)
    assert (npu.slot, npu.weight_bits, npu.weight_frac, npu.bias_bits) == ("classifier", 8, 6, 16)
    assert npu.bias == (3, -4) and npu.weight_matrix.tolist() == [[1, -2, 3, -4], [5, 6, -7, 8]]


def test_generic_property_of_the_wrong_kind_is_rejected():
    module = parse("""
    "func.func"() <{sym_name = "f", function_type = (ui8) -> ui11}> ({
    ^bb0(%x: ui8):
      %s = "po2.shl"(%x) <{amount = 3 : i32}> : (ui8) -> ui11
      "func.return"(%s) : (ui11) -> ()
    }) : () -> ()
    """, verify=False)
    with pytest.raises(VerifyException, match="amount"):
        module.verify()
