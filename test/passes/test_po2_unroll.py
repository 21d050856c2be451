"""po2-unroll: structure of the datapath, and bit-exactness against the layer-level op.

The main property: for random small convolutions (kernel 1/3/5, stride 1/2, asymmetric
padding, groups including depthwise, random codes with zeros and extremes, bias, every
activation, odd sizes and channel counts), interpreting the IR after
po2-unroll, po2-canonicalize, po2-infer-widths gives exactly the layer-level results on
random, all-max and all-min inputs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from po2_testlib import apply, conv_module, extreme_batch

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.interpreters.po2 import run_po2
from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass
from hashiflex.passes.po2_unroll import Po2UnrollPass

PIPELINE = (Po2UnrollPass(), Po2CanonicalizePass(), Po2InferWidthsPass())


@st.composite
def conv_cases(draw):
    k = draw(st.sampled_from([1, 3, 5]))
    kernel = (k, draw(st.sampled_from([1, k])))  # square and 1-wide kernels
    stride = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    pads = tuple(draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4))
    depthwise = draw(st.booleans())
    if depthwise:
        cin = draw(st.integers(1, 5))
        groups, cout = cin, cin * draw(st.sampled_from([1, 2]))
    else:
        groups = draw(st.integers(1, 3))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kernel[0] - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, kernel[1] - pads[1] - pads[3]), 7))
    in_fmt = Format(draw(st.integers(2, 8)), draw(st.booleans()), draw(st.integers(-1, 5)))
    out_fmt = Format(draw(st.integers(2, 8)), draw(st.booleans()), draw(st.integers(-1, 5)))
    exp_bits = draw(st.integers(1, 3))
    codes_kind = draw(st.sampled_from(["random", "sparse", "max", "min", "zero"]))
    act = draw(st.sampled_from(["none", "relu", "relu6"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(kernel=kernel, stride=stride, pads=pads, groups=groups, cin=cin, cout=cout,
                h=h, w=w, in_fmt=in_fmt, out_fmt=out_fmt, exp_bits=exp_bits,
                codes_kind=codes_kind, act=act, seed=seed)


def make_case(case):
    rng = np.random.default_rng(case["seed"])
    m = 1 << case["exp_bits"]
    shape = (case["cout"], case["cin"] // case["groups"], *case["kernel"])
    codes = {
        "random": lambda: rng.integers(-m, m + 1, shape),
        "sparse": lambda: rng.integers(-m, m + 1, shape) * (rng.random(shape) < 0.3),
        "max": lambda: np.full(shape, m),
        "min": lambda: np.full(shape, -m),
        "zero": lambda: np.zeros(shape, dtype=int),
    }[case["codes_kind"]]().astype(np.int8)
    module = conv_module(
        (case["cin"], case["h"], case["w"]), case["in_fmt"], case["out_fmt"], codes,
        exp_base=rng.integers(-3, 3, case["cout"]).tolist(),
        bias=rng.integers(-300, 300, case["cout"]) * (rng.random(case["cout"]) < 0.7),
        stride=case["stride"], padding=case["pads"], groups=case["groups"],
        act=case["act"], exp_bits=case["exp_bits"],
    )
    module.verify()
    x = extreme_batch(rng, (case["cin"], case["h"], case["w"]), case["in_fmt"])
    return module, x


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_unrolled_matches_layer_level(case):
    module, x = make_case(case)
    expected = run_po2(module, x)
    apply(module, *PIPELINE)
    assert not any(isinstance(op, po2.Conv2dOp) for op in module.walk())
    np.testing.assert_array_equal(run_po2(module, x), expected)


@settings(max_examples=15, deadline=None)
@given(conv_cases())
def test_unrolled_alone_matches_layer_level(case):
    """The raw po2-unroll output is already correct (and verifies), before the cleanups."""
    module, x = make_case(case)
    expected = run_po2(module, x)
    apply(module, Po2UnrollPass())
    np.testing.assert_array_equal(run_po2(module, x), expected)


def _unrolled(module) -> po2.UnrolledConv2dOp:
    return next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp))


def test_datapath_structure():
    """Zero weights vanish, shifts by 0 are the argument, shifts are shared, bias is a const."""
    # 3 output channels, 1 input channel, 2x2 kernel: block args x0 x1 / x2 x3.
    codes = np.array(
        [[[[1, 0], [2, -1]]], [[[0, 0], [2, 0]]], [[[0, 0], [0, 0]]]], dtype=np.int8
    )
    module = conv_module((1, 3, 3), Format(8, False, 4), Format(8, True, 4), codes,
                         exp_base=[0, 0, 0], bias=[0, -5, 9])
    apply(module, Po2UnrollPass())
    unrolled = _unrolled(module)
    assert unrolled.layer == "conv" and unrolled.act == "none"
    block = unrolled.body.block
    ops = list(block.ops)
    # x2 << 1 is built once and shared by channels 0 and 1; code 1 is no shift at all.
    shls = [op for op in ops if isinstance(op, po2.ShlOp)]
    assert len(shls) == 1 and shls[0].input is block.args[2]
    ch0, ch1, ch2 = (v.owner for v in ops[-1].operands)
    # Channel 0: sum(x0, x2 << 1) - x3, unsigned sum, one signed subtraction.
    acc0 = ch0.input.owner
    assert isinstance(acc0, po2.SubOp) and acc0.rhs is block.args[3]
    assert list(acc0.lhs.owner.operands) == [block.args[0], shls[0].result]
    assert acc0.lhs.type == po2.scalar_type(10, False)
    # Channel 1: (x2 << 1) - 5.
    acc1 = ch1.input.owner
    assert isinstance(acc1, po2.SubOp) and acc1.lhs is shls[0].result
    assert acc1.rhs.owner.value == 5
    # Channel 2 has no weights: rescale(const 9).
    assert ch2.input.owner.value == 9


def test_unroll_scales():
    """A 64->128 1x1 layer (8K weights) unrolls well within a second."""
    import time

    rng = np.random.default_rng(1)
    codes = rng.integers(-8, 9, (128, 64, 1, 1)).astype(np.int8)
    module = conv_module((64, 4, 4), Format(8, False, 4), Format(8, False, 4), codes,
                         exp_base=[0] * 128, bias=[0] * 128, act="relu6")
    start = time.perf_counter()
    apply(module, Po2UnrollPass())
    assert time.perf_counter() - start < 2.0
