"""The golden model's conv/add/pool/NPU against a naive loop-per-output reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.builder import ImplicitBuilder
from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.func import FuncOp, ReturnOp, FunctionType

from hashiflex.dialects import po2
from hashiflex.golden import model
from hashiflex.golden.semantics import Format, clamp_bounds, round_shift


def naive_conv(x, codes, exp_base, bias, stride, pads, groups, fx, fy, act):
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = codes.shape
    top, left, bottom, right = pads
    oh = (h + top + bottom - kh) // stride[0] + 1
    ow = (w + left + right - kw) // stride[1] + 1
    lo, hi = clamp_bounds(fy, act)
    y = np.zeros((n, cout, oh, ow), dtype=np.int64)
    for b in range(n):
        for o in range(cout):
            g = o // (cout // groups)
            for oy in range(oh):
                for ox in range(ow):
                    acc = int(bias[o])
                    for i in range(cin_g):
                        for dy in range(kh):
                            for dx in range(kw):
                                iy, ix = oy * stride[0] - top + dy, ox * stride[1] - left + dx
                                c = int(codes[o, i, dy, dx])
                                if c and 0 <= iy < h and 0 <= ix < w:
                                    term = int(x[b, g * cin_g + i, iy, ix]) << (abs(c) - 1)
                                    acc += term if c > 0 else -term
                    shifted = round_shift(acc, fx.frac - fy.frac - exp_base[o])
                    y[b, o, oy, ox] = min(max(shifted, lo), hi)
    return y


def single_conv_module(in_shape, fx, out_shape, fy, **conv):
    x_t = po2.ActType(in_shape, fx)
    func = FuncOp("net", ([x_t], []))
    with ImplicitBuilder(func.body.block) as (x,):
        c = po2.Conv2dOp("conv", x, po2.ActType(out_shape, fy), **conv)
        ReturnOp(c)
    func.function_type = FunctionType.from_lists([x_t], [c.output.type])
    module = ModuleOp([func])
    module.verify()
    return module


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_conv_matches_naive_reference(data):
    groups = data.draw(st.sampled_from([1, 2, 3]))
    cin = groups * data.draw(st.integers(1, 3))
    depthwise = data.draw(st.booleans())
    cout = cin if depthwise else groups * data.draw(st.integers(1, 3))
    groups = cin if depthwise else groups
    kh, kw = data.draw(st.sampled_from([1, 3, 5])), data.draw(st.sampled_from([1, 3]))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pads = tuple(data.draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    h, w = data.draw(st.integers(kh, 9)), data.draw(st.integers(kw, 9))
    fx = Format(8, data.draw(st.booleans()), data.draw(st.integers(-2, 8)))
    fy = Format(8, data.draw(st.booleans()), data.draw(st.integers(-2, 8)))
    act = data.draw(st.sampled_from(["none", "relu", "relu6"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    codes = rng.integers(-8, 9, size=(cout, cin // groups, kh, kw)).astype(np.int8)
    exp_base = rng.integers(-10, 2, size=cout).tolist()
    bias = rng.integers(-5000, 5000, size=cout).tolist()
    pads = (pads[0], pads[1], pads[2], pads[3])
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - kw) // stride[1] + 1
    module = single_conv_module(
        [cin, h, w], fx, [cout, oh, ow], fy,
        weights=codes, exp_base=exp_base, bias=bias, stride=stride, padding=pads,
        groups=groups, act=act,
    )
    x = rng.integers(fx.lo, fx.hi + 1, size=(2, cin, h, w))
    x[1] = fx.hi  # an extreme image
    got = model.run_int(module, x)
    want = naive_conv(x, codes, exp_base, bias, stride, pads, groups, fx, fy, act)
    np.testing.assert_array_equal(got, want)


def test_golden_rejects_inputs_outside_the_format():
    fx = Format(8, False, 4)
    module = single_conv_module(
        [1, 3, 3], fx, [1, 3, 3], fx,
        weights=np.ones((1, 1, 1, 1), np.int8), exp_base=[0], bias=[0],
    )
    try:
        model.run_int(module, np.full((1, 1, 3, 3), 256))
    except model.GoldenError as error:
        assert "outside the input format" in str(error)
    else:
        raise AssertionError("an out-of-range input was accepted")
