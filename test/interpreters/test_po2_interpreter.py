"""The po2 interpreter against a straightforward, independent reference.

The reference below loops over every output element with Python integers, reading the
formulas of docs/semantics.md literally (it shares only the rounding primitives of
`golden.semantics`, which are the contract). The interpreter is vectorised (im2col, batch
axis, grouped matmul), so agreement checks its indexing: groups, stride, asymmetric padding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from po2_testlib import conv_module, extreme_batch, parse, ref_conv
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Region

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format, avgpool_constants, requantize, round_shift
from hashiflex.interpreters.po2 import check_fits, run_po2, window_views

# ---------------------------------------------------------------------------
# The reference: one image, Python ints, loops
# ---------------------------------------------------------------------------


def ref_residual_add(a, fa, b, fb, fy, act):
    f = max(fa.frac, fb.frac)
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        s = int(a[idx]) * 2 ** (f - fa.frac) + int(b[idx]) * 2 ** (f - fb.frac)
        out[idx] = requantize(s, f - fy.frac, fy, act)
    return out


def ref_avgpool(x, fx, fy):
    c, h, w = x.shape
    mult, shift = avgpool_constants(h * w)
    return np.array(
        [requantize(int(x[ch].sum()) * mult, shift + fx.frac - fy.frac, fy, "none") for ch in range(c)]
    ).reshape(c, 1, 1)


def ref_linear(v, weights, bias):
    return np.array(
        [int(bias[n]) + sum(int(weights[n, k]) * int(v[k]) for k in range(len(v)))
         for n in range(weights.shape[0])]
    )


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@st.composite
def conv_params(draw):
    k = draw(st.sampled_from([1, 2, 3, 5]))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    h = draw(st.integers(max(1, k - pads[0] - pads[2]), 6))
    w = draw(st.integers(max(1, k - pads[1] - pads[3]), 6))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    act = draw(st.sampled_from(["none", "relu", "relu6"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return groups, cin, cout, k, pads, h, w, stride, act, seed


@settings(max_examples=40, deadline=None)
@given(conv_params())
def test_conv2d_matches_reference(params):
    groups, cin, cout, k, pads, h, w, stride, act, seed = params
    rng = np.random.default_rng(seed)
    fx, fy = Format(8, True, 4), Format(6, False, 2)
    codes = (rng.integers(-8, 9, (cout, cin // groups, k, k)) * (rng.random((cout, cin // groups, k, k)) < 0.7)).astype(np.int8)
    exp_base = rng.integers(-2, 4, cout).tolist()
    bias = rng.integers(-200, 200, cout).tolist()
    module = conv_module((cin, h, w), fx, fy, codes, exp_base=exp_base, bias=bias,
                         stride=stride, padding=pads, groups=groups, act=act)
    module.verify()
    x = extreme_batch(rng, (cin, h, w), fx)
    got = run_po2(module, x)
    shift = [fx.frac - fy.frac - e for e in exp_base]
    for n in range(len(x)):
        expected = ref_conv(x[n], codes, bias, shift, stride, pads, groups, fy, act)
        np.testing.assert_array_equal(got[n], expected)


def small_network(rng):
    """conv -> requant -> residual_add -> avgpool -> flatten -> npu_linear, in Python."""
    fx, f1, f2, f3 = Format(8, False, 4), Format(8, True, 3), Format(6, True, 2), Format(7, False, 1)
    in_t = po2.ActType((3, 5, 6), fx)
    block = Block(arg_types=[in_t])
    codes = rng.integers(-8, 9, (4, 3, 3, 3)).astype(np.int8)
    conv = po2.Conv2dOp("c1", block.args[0], po2.ActType((4, 5, 6), f1), weights=codes,
                        exp_base=[-1, 0, 1, 2], bias=[3, -40, 0, 7], padding=(1, 1, 1, 1))
    req = po2.RequantOp("q", conv.output, po2.ActType((4, 5, 6), f2), act="relu")
    add = po2.ResidualAddOp("add", conv.output, req.output, po2.ActType((4, 5, 6), f2))
    pool = po2.AvgPoolOp("pool", add.output, po2.ActType((4, 1, 1), f3))
    flat = po2.FlattenOp("flat", pool.output)
    weights = rng.integers(-128, 128, (5, 4))
    bias = rng.integers(-1000, 1000, 5).tolist()
    fc = po2.NpuLinearOp("fc", flat.output, weights=weights, bias=bias, weight_frac=6)
    block.add_ops([conv, req, add, pool, flat, fc, func.ReturnOp(fc.output)])
    fn = func.FuncOp("net", ([in_t], [fc.output.type]), Region(block))
    module = ModuleOp([fn])
    module.verify()

    def reference(img):
        y1 = ref_conv(img, codes, [3, -40, 0, 7], [4 - 3 - e for e in (-1, 0, 1, 2)],
                      (1, 1), (1, 1, 1, 1), 1, f1, "none")
        y2 = np.array([[[requantize(int(v), f1.frac - f2.frac, f2, "relu") for v in row]
                        for row in ch] for ch in y1])
        y3 = ref_residual_add(y1, f1, y2, f2, f2, "none")
        y4 = ref_avgpool(y3, f2, f3)
        return ref_linear(y4.reshape(-1), weights, bias)

    return module, fx, reference


def test_network_matches_reference():
    rng = np.random.default_rng(7)
    module, fx, reference = small_network(rng)
    x = extreme_batch(rng, (3, 5, 6), fx, n_random=4)
    logits = run_po2(module, x, func_name="net")
    assert logits.shape == (6, 5) and logits.dtype == np.int64
    for n in range(len(x)):
        np.testing.assert_array_equal(logits[n], reference(x[n]))


def test_avgpool_non_power_of_two():
    """5x6 = 30 positions: the multiplier path of the pooling semantics."""
    fx, fy = Format(8, False, 3), Format(8, False, 3)
    block = Block(arg_types=[po2.ActType((2, 5, 6), fx)])
    pool = po2.AvgPoolOp("pool", block.args[0], po2.ActType((2, 1, 1), fy))
    block.add_ops([pool, func.ReturnOp(pool.output)])
    module = ModuleOp([func.FuncOp("p", ([block.args[0].type], [pool.output.type]), Region(block))])
    assert pool.multiplier != 1
    x = extreme_batch(np.random.default_rng(0), (2, 5, 6), fx)
    got = run_po2(module, x)
    for n in range(len(x)):
        np.testing.assert_array_equal(got[n], ref_avgpool(x[n], fx, fy))


def test_window_views_zero_padding():
    x = np.arange(1, 7).reshape(1, 1, 2, 3)
    cols = window_views(x, (2, 2), (1, 2), (1, 0, 0, 1), (2, 2))
    # Output (0, 0) covers rows -1..0, cols 0..1: top row is padding.
    assert cols[0, 0, :, :, 0, 0].tolist() == [[0, 0], [1, 2]]
    # Output (1, 1) covers rows 0..1, cols 2..3: col 3 is padding.
    assert cols[0, 0, :, :, 1, 1].tolist() == [[3, 0], [6, 0]]


def test_check_fits():
    module = parse("builtin.module {}")
    check_fits(module, np.array([0, 255]), 0, 255, "x")
    with pytest.raises(AssertionError, match=r"\[0, 256\].*outside its declared range \[0, 255\]"):
        check_fits(module, np.array([0, 256]), 0, 255, "x")


OVERFLOWING = """
func.func @f(%x: !po2.act<2x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.add %a, %b : (ui8, ui8) -> ui8
    %r = po2.rescale %s, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}
"""


def test_scalar_overflow_is_caught():
    """IR whose widths are wrong (here unverified) fails loudly instead of wrapping."""
    module = parse(OVERFLOWING, verify=False)
    assert run_po2(module, np.array([[[[100]], [[100]]]]))[0, 0, 0, 0] == 200
    with pytest.raises(AssertionError, match="po2.add.*outside its declared range"):
        run_po2(module, np.array([[[[200]], [[100]]]]))


def test_unrolled_text_runs():
    """Unrolled IR written by hand (a 2-tap difference with a bias) runs elementwise."""
    text = """
func.func @f(%x: !po2.act<1x1x4, s8, 0>) -> !po2.act<1x1x3, s8, 0> {
  %y = po2.unrolled_conv2d "d" %x kernel [1, 2] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x4, s8, 0> -> !po2.act<1x1x3, s8, 0> {
  ^bb0(%a: si8, %b: si8):
    %s = po2.shl %b, 1 : si8 -> si9
    %c = po2.const -3 : si3
    %t = po2.sum %s, %c : (si9, si3) -> si10
    %d = po2.sub %t, %a : (si10, si8) -> si11
    %r = po2.rescale %d, 1 clamp [-128, 127] : si11 -> si8
    po2.yield %r : si8
  }
  func.return %y : !po2.act<1x1x3, s8, 0>
}
"""
    module = parse(text)
    x = np.array([[[[10, -20, 127, -128]]]])
    expected = [round_shift(2 * b - 3 - a, 1) for a, b in zip(x[0, 0, 0, :-1], x[0, 0, 0, 1:])]
    np.testing.assert_array_equal(run_po2(module, x)[0, 0, 0], np.clip(expected, -128, 127))


def test_run_po2_errors():
    module, fx, _ = small_network(np.random.default_rng(0))
    with pytest.raises(ValueError, match="no function @nope"):
        run_po2(module, np.zeros((1, 3, 5, 6)), func_name="nope")
    with pytest.raises(ValueError, match="input of shape"):
        run_po2(module, np.zeros((1, 3, 5, 5)))
    with pytest.raises(AssertionError, match="the input"):
        run_po2(module, np.full((1, 3, 5, 6), 256))
