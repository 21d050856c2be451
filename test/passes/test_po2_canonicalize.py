"""po2-canonicalize: every rule fires, the IR stays valid and computes the same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from po2_testlib import apply, parse
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Region

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.interpreters.po2 import run_po2
from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass

# One datapath exercising every scalar rule at once.
REDUNDANT = """
func.func @f(%x: !po2.act<2x3x3, u8, 4>) -> !po2.act<3x3x3, s8, 4> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<3x3x3, s8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %z = po2.const 0 : ui1
    %c3 = po2.const 3 : ui2
    %c4 = po2.const 4 : ui3
    %s0 = po2.shl %a, 0 : ui8 -> ui8
    %one = po2.sum %s0 : ui8 -> ui8
    %add = po2.add %one, %z : (ui8, ui1) -> ui9
    %inner = po2.sum %a, %b, %c3 : (ui8, ui8, ui2) -> ui10
    %outer = po2.sum %inner, %b, %c4, %z : (ui10, ui8, ui3, ui1) -> ui11
    %n = po2.sub %z, %outer : (ui1, ui11) -> si12
    %nn = po2.neg %n : si12 -> si13
    %dead = po2.shl %b, 3 : ui8 -> ui11
    %m = po2.add %nn, %add : (si13, ui9) -> si14
    %r0 = po2.rescale %m, 2 clamp [-128, 127] : si14 -> si8
    %r1 = po2.rescale %add, 0 clamp [-128, 127] : ui9 -> si8
    %k = po2.sub %b, %z : (ui8, ui1) -> ui8
    %negk = po2.sub %z, %k : (ui1, ui8) -> si9
    %r2 = po2.rescale %negk, 0 clamp [-128, 127] : si9 -> si8
    po2.yield %r0, %r1, %r2 : si8, si8, si8
  }
  func.return %y : !po2.act<3x3x3, s8, 4>
}
"""


def _datapath_ops(module):
    unrolled = next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp))
    return list(unrolled.body.block.ops)


def test_all_scalar_rules_preserve_values():
    module = parse(REDUNDANT)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 256, (4, 2, 3, 3)), np.full((1, 2, 3, 3), 255)])
    expected = run_po2(module, x)
    apply(module, Po2CanonicalizePass())
    np.testing.assert_array_equal(run_po2(module, x), expected)
    names = [op.name for op in _datapath_ops(module)]
    # a + b + 3 + b + 4 + a as one sum with one constant 7; -(b - 0) as one neg.
    assert names == ["po2.const", "po2.sum", "po2.rescale", "po2.rescale", "po2.neg",
                     "po2.rescale", "po2.yield"]
    const, total = _datapath_ops(module)[:2]
    assert const.value == 7 and len(total.inputs) == 5


def test_idempotent():
    module = apply(parse(REDUNDANT), Po2CanonicalizePass())
    before = str(module)
    apply(module, Po2CanonicalizePass())
    assert str(module) == before


def test_shared_sum_is_not_flattened():
    """A sum with two users stays: splicing it into both would duplicate its adders."""
    text = """
func.func @f(%x: !po2.act<2x1x1, u8, 0>) -> !po2.act<2x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u8, 0> -> !po2.act<2x1x1, u8, 0> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.sum %a, %b : (ui8, ui8) -> ui9
    %t = po2.sum %s, %a : (ui9, ui8) -> ui10
    %u = po2.sum %s, %b : (ui9, ui8) -> ui10
    %r0 = po2.rescale %t, 2 clamp [0, 255] : ui10 -> ui8
    %r1 = po2.rescale %u, 2 clamp [0, 255] : ui10 -> ui8
    po2.yield %r0, %r1 : ui8, ui8
  }
  func.return %y : !po2.act<2x1x1, u8, 0>
}
"""
    module = apply(parse(text), Po2CanonicalizePass())
    assert [op.name for op in _datapath_ops(module)].count("po2.sum") == 3


REQUANT = """
func.func @f(%x: !po2.act<2x2x2, {fin}, 3>) -> !po2.act<2x2x2, {fout}, {frac}> {{
  %y = po2.requant "q" %x act "{act}" : !po2.act<2x2x2, {fin}, 3> -> !po2.act<2x2x2, {fout}, {frac}>
  func.return %y : !po2.act<2x2x2, {fout}, {frac}>
}}
"""


@pytest.mark.parametrize(
    "fin, fout, frac, act, removed",
    [
        ("s8", "s8", 3, "none", True),
        ("u8", "u8", 3, "relu", True),  # relu is a no-op on an unsigned format
        ("u4", "u4", 3, "relu6", True),  # 6 * 2^3 = 48 > 15: the clamp never bites
        ("u8", "u8", 3, "relu6", False),  # 48 < 255
        ("s8", "s8", 3, "relu", False),
        ("s8", "s8", 2, "none", False),  # a real shift
        ("s8", "s6", 3, "none", False),  # a real saturation
    ],
)
def test_no_op_requant(fin, fout, frac, act, removed):
    module = apply(parse(REQUANT.format(fin=fin, fout=fout, frac=frac, act=act)), Po2CanonicalizePass())
    has_requant = any(isinstance(op, po2.RequantOp) for op in module.walk())
    assert has_requant != removed


# ---------------------------------------------------------------------------
# Property: on random datapaths full of redundancies, canonicalisation (and width
# inference after it) keeps the IR valid and every output bit-exact.
# ---------------------------------------------------------------------------




def random_datapath_module(seed: int, n_ops: int, signed: bool) -> ModuleOp:
    rng = np.random.default_rng(seed)
    cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    in_fmt, out_fmt = Format(6, signed, 2), Format(8, True, 2)
    body = Block(arg_types=[po2.scalar_type(6, signed)] * cin)
    values = list(body.args)

    def pick():
        return values[int(rng.integers(len(values)))]

    for _ in range(n_ops):
        kind = rng.choice(["const", "shl", "add", "sub", "neg", "sum"])
        if kind == "const":
            op = po2.ConstOp(int(rng.choice([0, 0, 1, -3, 7])))
        elif kind == "shl":
            op = po2.ShlOp(pick(), int(rng.integers(0, 3)))
        elif kind in ("add", "sub"):
            op = (po2.AddOp if kind == "add" else po2.SubOp)(pick(), pick())
        elif kind == "neg":
            op = po2.NegOp(pick())
        else:
            op = po2.SumOp([pick() for _ in range(int(rng.integers(1, 5)))])
        body.add_op(op)
        values.append(op.results[0])
    outs = []
    for _ in range(cout):
        r = po2.RescaleOp(pick(), int(rng.integers(0, 3)), out_fmt.lo, out_fmt.hi,
                          po2.scalar_type(8, True))
        body.add_op(r)
        outs.append(r.result)
    body.add_op(po2.YieldOp(outs))

    in_t, out_t = po2.ActType((cin, 2, 3), in_fmt), po2.ActType((cout, 2, 3), out_fmt)
    block = Block(arg_types=[in_t])
    unrolled = po2.UnrolledConv2dOp(
        "r", block.args[0], out_t, kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0),
        groups=1, act="none", body=Region(body),
    )
    block.add_ops([unrolled, func.ReturnOp(unrolled.output)])
    return ModuleOp([func.FuncOp("f", ([in_t], [out_t]), Region(block))])


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 25), st.booleans())
def test_random_datapaths_preserved(seed, n_ops, signed):
    module = random_datapath_module(seed, n_ops, signed)
    module.verify()
    fmt = Format(6, signed, 2)
    cin = len(next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp)).body.block.args)
    rng = np.random.default_rng(seed)
    x = np.concatenate([
        rng.integers(fmt.lo, fmt.hi + 1, (3, cin, 2, 3)),
        np.full((1, cin, 2, 3), fmt.hi), np.full((1, cin, 2, 3), fmt.lo),
    ])
    expected = run_po2(module, x)
    apply(module, Po2CanonicalizePass())
    np.testing.assert_array_equal(run_po2(module, x), expected)
    apply(module, Po2InferWidthsPass())
    np.testing.assert_array_equal(run_po2(module, x), expected)
    # Canonical: no rule applies any more.
    body = next(op for op in module.walk() if isinstance(op, po2.UnrolledConv2dOp)).body.block
    for op in body.ops:
        assert not (isinstance(op, po2.ShlOp) and op.amount == 0)
        assert not (isinstance(op, po2.SumOp) and len(op.inputs) == 1)
        assert not (isinstance(op, po2.ScalarOp) and not op.results[0].uses)
