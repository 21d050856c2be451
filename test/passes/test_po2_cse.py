"""po2-cse: bit-exact against the layer-level op, fewer adders, bounded depth, bad options.

The main property: for random small convolutions (the same generator as the po2-unroll
tests: kernels 1/3/5, strides, padding, groups, depthwise, extreme codes, bias, every
activation and format), interpreting the IR after po2-unroll, po2-canonicalize, po2-cse,
po2-infer-widths gives exactly the layer-level results, and po2-cse never adds an adder.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from po2_testlib import apply, conv_module, extreme_batch
from test_po2_unroll import conv_cases, make_case
from xdsl.utils.exceptions import DiagnosticException

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.interpreters.po2 import run_po2
from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
from hashiflex.passes.po2_cse import Po2CsePass, Terms, cse_region, naive_adders, share_terms
from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass
from hashiflex.passes.po2_unroll import Po2UnrollPass


def _adders(module) -> int:
    """Two-input adders the region's scalar ops cost (a sum of n operands costs n - 1)."""
    total = 0
    for op in module.walk():
        if isinstance(op, po2.SumOp):
            total += len(op.inputs) - 1
        elif isinstance(op, (po2.AddOp, po2.SubOp, po2.NegOp)):
            total += 1
    return total


def _random_codes(rng, shape, density, exp_bits=3):
    m = 1 << exp_bits
    codes = rng.integers(1, m + 1, shape) * rng.choice([-1, 1], shape)
    return (codes * (rng.random(shape) < density)).astype(np.int8)


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_cse_matches_layer_level(case):
    module, x = make_case(case)
    expected = run_po2(module, x)
    apply(module, Po2UnrollPass(), Po2CanonicalizePass())
    before = _adders(module)
    apply(module, Po2CsePass(), Po2CanonicalizePass(), Po2InferWidthsPass())
    assert _adders(module) <= before
    np.testing.assert_array_equal(run_po2(module, x), expected)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("kernel,cin,cout,density", [
    ((1, 1), 24, 48, 0.9), ((1, 1), 40, 12, 0.5), ((3, 3), 6, 16, 0.7), ((1, 1), 16, 64, 0.2),
])
def test_cse_random_layers_share_and_stay_exact(seed, kernel, cin, cout, density):
    """Dense random layers: bit-exact, and clearly fewer adders than one per weight."""
    rng = np.random.default_rng(seed)
    in_fmt, out_fmt = Format(8, False, 4), Format(8, True, 3)
    codes = _random_codes(rng, (cout, cin, *kernel), density)
    module = conv_module(
        (cin, 3, 3), in_fmt, out_fmt, codes,
        exp_base=rng.integers(-2, 2, cout).tolist(),
        bias=rng.integers(-300, 300, cout), padding=(1, 1, 1, 1) if kernel[0] == 3 else (0,) * 4,
        act="relu",
    )
    x = extreme_batch(rng, (cin, 3, 3), in_fmt)
    expected = run_po2(module, x)
    apply(module, Po2UnrollPass(), Po2CanonicalizePass())
    before = _adders(module)
    apply(module, Po2CsePass(), Po2InferWidthsPass())
    after = _adders(module)
    np.testing.assert_array_equal(run_po2(module, x), expected)
    # Dense layers with many channels share a lot; sparse narrow ones a little.
    assert after < before * (0.8 if density >= 0.7 and cout >= 16 else 1.0)


def test_share_terms_adder_count_is_what_it_builds():
    """`Sharing.adders()` counts the shared columns plus the rows' remaining terms."""
    rng = np.random.default_rng(1)
    codes = _random_codes(rng, (32, 48), 0.8)
    r, c = np.nonzero(codes)
    v = codes[r, c].astype(np.int64)
    terms = Terms(r, c, np.abs(v) - 1, np.sign(v))
    sharing = share_terms(terms, 48)
    assert sharing.adders() < 0.75 * naive_adders(terms)
    # Evaluate the sharing on random inputs: every row equals the matrix product.
    x = rng.integers(-100, 100, 48).astype(object)
    cols = list(x)
    for a, b, d, s in zip(sharing.a, sharing.b, sharing.shift, sharing.sign):
        cols.append(cols[a] + int(s) * (cols[b] << int(d)))
    y = [0] * 32
    t = sharing.terms
    for row, col, shift, sign in zip(t.row, t.col, t.shift, t.sign):
        y[row] += int(sign) * (cols[col] << int(shift))
    weights = np.where(codes != 0, np.sign(codes) * (1 << (np.abs(codes).astype(np.int64) - 1)), 0)
    assert y == list(weights.astype(object) @ x)


@pytest.mark.parametrize("max_depth", [1, 2, 3])
def test_max_depth_bounds_shared_columns(max_depth):
    rng = np.random.default_rng(2)
    codes = _random_codes(rng, (64, 40), 0.9)
    r, c = np.nonzero(codes)
    v = codes[r, c].astype(np.int64)
    terms = Terms(r, c, np.abs(v) - 1, np.sign(v))
    sharing = share_terms(terms, 40, max_depth=max_depth)
    assert 1 <= sharing.depth.max() <= max_depth
    deeper = share_terms(terms, 40, max_depth=max_depth + 1)
    assert deeper.adders() <= sharing.adders()


def test_cse_twice_is_safe():
    """A region that already holds shared terms is read back as linear forms and re-shared."""
    rng = np.random.default_rng(3)
    in_fmt, out_fmt = Format(6, True, 2), Format(8, True, 2)
    codes = _random_codes(rng, (20, 12, 1, 1), 0.9)
    module = conv_module((12, 3, 3), in_fmt, out_fmt, codes, exp_base=[0] * 20,
                         bias=rng.integers(-50, 50, 20))
    x = extreme_batch(rng, (12, 3, 3), in_fmt)
    expected = run_po2(module, x)
    apply(module, Po2UnrollPass(), Po2CsePass(), Po2InferWidthsPass())
    once = _adders(module)
    apply(module, Po2CsePass(), Po2InferWidthsPass())
    assert _adders(module) <= once
    np.testing.assert_array_equal(run_po2(module, x), expected)


def test_cse_region_reports_adders():
    rng = np.random.default_rng(4)
    codes = _random_codes(rng, (32, 16, 1, 1), 0.9)
    module = conv_module((16, 2, 2), Format(8, False, 4), Format(8, False, 3), codes,
                         exp_base=[0] * 32, bias=[0] * 32)
    apply(module, Po2UnrollPass(), Po2CanonicalizePass())
    before = _adders(module)
    unrolled = next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp))
    stats = cse_region(unrolled)
    module.verify()
    assert stats.layer == "conv" and stats.adders_before == before
    assert stats.adders_after == _adders(module) < before


def test_bad_max_depth_is_an_error():
    module = conv_module((2, 2, 2), Format(8, False, 4), Format(8, False, 3),
                         np.ones((2, 2, 1, 1), np.int8), exp_base=[0, 0], bias=[0, 0])
    with pytest.raises(DiagnosticException, match="max_depth must be >= 1, got 0"):
        apply(module, Po2UnrollPass(), Po2CsePass(max_depth=0))


def test_compile_rejects_bad_cse_depth(tmp_path):
    """`hashiflex compile --cse-max-depth 0` is a one-line input error, checked first."""
    from hashiflex import api
    from hashiflex.errors import InputError

    with pytest.raises(InputError, match="--cse-max-depth must be >= 1, got 0"):
        api.compile("tiny_cnn", tmp_path / "out", cse_max_depth=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("round_ratio", [0.8, 0.95])
@pytest.mark.parametrize("seed,shape,density", [(0, (48, 8), 0.9), (1, (24, 64), 0.7)])
def test_share_terms_stops_only_when_no_pair_repeats(round_ratio, seed, shape, density):
    """
    When `share_terms` stops, no two-term key (columns, shift difference, sign relation)
    occurs twice in distinct rows or disjoint pairs: a round whose frequent keys all lost
    their occurrences to conflicts must fall back to the rarer keys, not stop.
    """
    rng = np.random.default_rng(seed)
    codes = _random_codes(rng, shape, density)
    r, c = np.nonzero(codes)
    v = codes[r, c].astype(np.int64)
    sharing = share_terms(Terms(r, c, np.abs(v) - 1, np.sign(v)), shape[1], round_ratio=round_ratio)
    t = sharing.terms
    seen: dict[tuple, list[tuple[int, int, int]]] = {}
    for row in np.unique(t.row):
        idx = np.flatnonzero(t.row == row)
        for i in idx:
            for j in idx:
                if (t.shift[i], t.col[i]) < (t.shift[j], t.col[j]):
                    key = (t.col[i], t.col[j], t.shift[j] - t.shift[i], t.sign[i] * t.sign[j])
                    seen.setdefault(key, []).append((row, i, j))
    for key, uses in seen.items():
        disjoint = {frozenset((i, j)) for _, i, j in uses}
        # Two uses of one key that share no term could have been one more shared column.
        assert not any(a.isdisjoint(b) for a in disjoint for b in disjoint if a != b), key


def _evaluate(sharing, n_rows: int, x: np.ndarray) -> list[int]:
    """Every row of a `Sharing` evaluated on the inputs x (Python ints: exact)."""
    cols = list(x)
    for a, b, d, s in zip(sharing.a, sharing.b, sharing.shift, sharing.sign):
        cols.append(cols[a] + int(s) * (cols[b] << int(d)))
    y = [0] * n_rows
    t = sharing.terms
    for row, col, shift, sign in zip(t.row, t.col, t.shift, t.sign):
        y[row] += int(sign) * (cols[col] << int(shift))
    return y


@pytest.mark.parametrize("max_depth,depth", [(64, 3), (2, 2)])
def test_two_rows_share_their_common_part_as_one_balanced_sum(max_depth, depth):
    """
    Two channels holding the same six terms (the second shifted by 2 and negated) plus one
    term of their own: every pair key occurs exactly twice, so the tail joins the common
    part once, as a balanced sum (5 adders, depth 3), and each channel adds its own term:
    7 adders against 12. With max_depth 2 the common part stays in two shared halves.
    """
    common_cols, common_shifts = np.arange(6), np.array([0, 1, 2, 3, 4, 5])
    row = np.r_[np.zeros(7, np.int64), np.ones(7, np.int64)]
    col = np.r_[common_cols, 10, common_cols, 11]
    shift = np.r_[common_shifts, 0, common_shifts + 2, 3]
    sign = np.r_[np.ones(7, np.int64), -np.ones(6, np.int64), 1]
    sharing = share_terms(Terms(row, col, shift, sign), 12, max_depth=max_depth)
    assert sharing.depth.max() == depth
    assert sharing.adders() == (7 if max_depth >= 3 else 8)
    x = np.random.default_rng(0).integers(-100, 100, 12).astype(object)
    y0 = sum(x[c] << int(s) for c, s in zip(common_cols, common_shifts))
    assert _evaluate(sharing, 2, x) == [y0 + x[10], -(y0 << 2) + (x[11] << 3)]
