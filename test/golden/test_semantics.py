"""The integer primitives against definitions written with exact rationals."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hashiflex.golden.semantics import (
    Format,
    avgpool_constants,
    bits_for_range,
    clamp_bounds,
    decode_weights,
    npu_logit_bits,
    quantize_input,
    round_shift,
    type_range,
)


@given(st.integers(-(2**40), 2**40), st.integers(-8, 24))
def test_round_shift_is_round_half_up_of_the_exact_quotient(v, r):
    exact = Fraction(v, 2**r) if r >= 0 else Fraction(v * 2**-r)
    assert round_shift(v, r) == math.floor(exact + Fraction(1, 2))
    assert round_shift(np.array([v], dtype=np.int64), r)[0] == round_shift(v, r)


def test_clamp_bounds_of_activations():
    u8 = Format(8, False, 4)
    assert clamp_bounds(u8, "none") == (0, 255)
    assert clamp_bounds(u8, "relu6") == (0, 96)  # 6.0 at scale 2^-4
    assert clamp_bounds(Format(8, False, 6), "relu6") == (0, 255)  # 6.0 does not fit
    assert clamp_bounds(Format(8, True, 2), "relu") == (0, 127)
    assert clamp_bounds(Format(8, True, 2), "none") == (-128, 127)


@given(st.integers(1, 5000))
def test_avgpool_constants_approximate_the_mean(count):
    mult, shift = avgpool_constants(count)
    if count & (count - 1) == 0:
        assert (mult, 1 << shift) == (1, count)
    else:
        # the multiplier is 2^shift / count rounded to nearest: error at most half an ulp
        assert abs(Fraction(mult) - Fraction(2**shift, count)) <= Fraction(1, 2)
        assert shift >= 16


@given(st.integers(-(2**30), 2**30), st.integers(0, 2**30))
def test_bits_for_range_is_minimal(lo, span):
    hi = lo + span
    width, signed = bits_for_range(lo, hi)
    t_lo, t_hi = type_range(width, signed)
    assert t_lo <= lo and hi <= t_hi
    if width > 1:
        n_lo, n_hi = type_range(width - 1, signed)
        assert lo < n_lo or hi > n_hi
    assert signed == (lo < 0)


def test_quantize_input_rounds_half_up_and_saturates():
    fmt = Format(8, False, 4)
    x = np.array([0.0, 1 / 32, 3 / 32, -1.0, 100.0, 0.5], dtype=np.float32)
    assert quantize_input(x, fmt).tolist() == [0, 1, 2, 0, 255, 8]


def test_decode_weights():
    codes = np.array([0, 1, -1, 3, -8], dtype=np.int8)
    assert decode_weights(codes).tolist() == [0, 1, -1, 4, -128]


def test_npu_logit_bits_hold_the_worst_case():
    fmt = Format(8, False, 4)
    bits = npu_logit_bits(16, fmt, 8, 24)
    lo, hi = type_range(bits, True)
    assert lo <= 16 * 255 * -128 - 2**23 and 16 * 255 * 127 + 2**23 - 1 <= hi
