"""The golden model's conv against the naive loop-per-output reference of po2_testlib."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from po2_testlib import conv_module, ref_conv

from hashiflex.golden import model
from hashiflex.golden.semantics import Format, conv_shift


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
    module = conv_module(
        [cin, h, w], fx, fy, codes, exp_base=exp_base, bias=bias, stride=stride,
        padding=pads, groups=groups, act=act,
    )
    module.verify()
    x = rng.integers(fx.lo, fx.hi + 1, size=(2, cin, h, w))
    x[1] = fx.hi  # an extreme image
    got = model.run_int(module, x)
    shift = [conv_shift(fx.frac, fy.frac, e) for e in exp_base]
    want = np.stack([ref_conv(img, codes, bias, shift, stride, pads, groups, fy, act) for img in x])
    np.testing.assert_array_equal(got, want)


def test_golden_rejects_inputs_outside_the_format():
    fx = Format(8, False, 4)
    module = conv_module([1, 3, 3], fx, fx, np.ones((1, 1, 1, 1), np.int8), exp_base=[0], bias=[0])
    try:
        model.run_int(module, np.full((1, 1, 3, 3), 256))
    except model.GoldenError as error:
        assert "outside the input format" in str(error)
    else:
        raise AssertionError("an out-of-range input was accepted")
