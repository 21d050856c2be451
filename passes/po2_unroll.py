"""
`po2-unroll`: every frozen `po2.conv2d` becomes a `po2.unrolled_conv2d`, the shift/add
datapath that computes one output pixel.

Why: the hardened accelerator has no multipliers. A Po2 weight code `c` of output channel
`o` is a left shift of a window value by `|c| - 1` and an add (c > 0) or a subtract (c < 0);
the channel's `2^exp_base[o]` is already folded into its requantisation shift
(docs/semantics.md, Conv2d). This pass writes that datapath out, one op per shift, one sum per
channel and polarity, so that every later pass (width inference, adder-tree balancing, the
lowering to hw/comb/seq) sees the exact arithmetic the silicon performs.

The region of the unrolled op (see `UnrolledConv2dOp`) takes the window values ordered
(input channel, kernel row, kernel column), typed as the input format's scalar type, and
yields one requantised value per output channel. For channel `o` of group `g`:

    P   = sum(shl(x[g*Cin_g + i, kh, kw], |c| - 1)  for c > 0)  [+ const bias  if bias > 0]
    N   = sum(shl(x[g*Cin_g + i, kh, kw], |c| - 1)  for c < 0)  [+ const -bias if bias < 0]
    acc = P - N            (or P alone, or neg N alone, or the bias constant alone)
    y   = rescale(acc, shift[o], clamp_bounds(out_fmt, act))

Why two sums and one subtraction rather than signed terms through `po2.neg`: with the usual
unsigned (post-ReLU) inputs both sums are unsigned adder trees, one bit narrower at every
adder than a signed tree, and the sign appears once, at the final subtractor. Negating each
term instead costs a negation (and a sign bit) per negative weight. The interval of `acc` is
the same either way, so the output widths do not change; only the adder trees get cheaper.

Shifted window values `shl(x_k, s)` depend only on the window element and the shift amount,
not on the output channel, so they are built once per (element, amount) and shared by every
channel that uses them (in hardware they are wiring, so sharing costs nothing). Zero weights
produce no op at all.

Scale: MobileNetV2 has millions of weights, so the datapath is built directly with the ops'
constructors into the block (no text round trip, no greedy rewrite walk); each constructor
computes its exact result type from `value_range`. See `Po2UnrollPass.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerType, ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds


def _add(block: Block, op: Operation) -> SSAValue:
    """Append `op` to the datapath and return its result."""
    block.add_op(op)
    return op.results[0]


def _polarity_sum(
    block: Block, terms: list[SSAValue], bias_term: int, term_range: tuple[int, int]
) -> SSAValue | None:
    """
    The sum of `terms` plus a non-negative constant `bias_term` (omitted when 0), or None
    when there is nothing to add. A single term is returned as it is (no one-operand sum).
    `term_range` is the sum of the terms' `value_range`s, precomputed (see `_sum_ranges`).
    """
    operands = list(terms)
    if bias_term:
        operands.append(_add(block, po2.ConstOp(bias_term)))
    if not operands:
        return None
    if len(operands) == 1:
        return operands[0]
    lo, hi = term_range[0] + bias_term, term_range[1] + bias_term
    # The generic `create` skips the per-operand checks of the IRDL constructor (the verifier
    # checks the same); on sums of hundreds of operands it is about twice as fast.
    typ = po2.scalar_type_for_range(lo, hi)
    return _add(block, po2.SumOp.create(operands=operands, result_types=[typ]))


def _sum_ranges(codes: np.ndarray, in_type: IntegerType, sign: int) -> np.ndarray:
    """
    Per output channel, the interval (lo, hi) of the sum of its terms of one polarity,
    exactly as `SumOp`'s constructor would derive it from the operands' `value_range`s
    (the type range of `shl(x, s)`, which `ShlOp` gives the narrowest type). The
    constructor walks the operands one by one; over a layer of hundreds of thousands of
    weights that walk is most of the pass's time, while this is a few numpy reductions. The
    verifier still checks every sum against `value_range`, so the two cannot disagree
    silently.
    """
    lo_x, hi_x = po2.int_type_range(in_type)
    flat = codes.reshape(codes.shape[0], -1) * sign
    max_code = max(int(np.abs(codes).max(initial=0)), 1)
    ranges = np.zeros((codes.shape[0], 2), dtype=object)
    for amount in range(max_code):
        count = np.count_nonzero(flat == amount + 1, axis=1).astype(object)
        if not count.any():
            continue
        t_lo, t_hi = po2.int_type_range(po2.scalar_type_for_range(lo_x << amount, hi_x << amount))
        ranges[:, 0] += count * t_lo
        ranges[:, 1] += count * t_hi
    return ranges


def build_datapath(conv: po2.Conv2dOp) -> Region:
    """The single-block region of the unrolled op that replaces `conv`."""
    in_t, out_t = conv.input.type, conv.output.type
    assert isinstance(in_t, po2.ActType) and isinstance(out_t, po2.ActType)
    cin, cout, groups = in_t.dims[0], out_t.dims[0], conv.groups
    kh, kw = conv.kernel
    window = kh * kw
    cin_g, cout_g = cin // groups, cout // groups

    in_scalar = po2.scalar_type(in_t.fmt.bits, in_t.fmt.signed)
    out_scalar = po2.scalar_type(out_t.fmt.bits, out_t.fmt.signed)
    lo, hi = clamp_bounds(out_t.fmt, conv.act)
    block = Block(arg_types=[in_scalar] * (cin * window))
    args = block.args

    codes = conv.weight_codes  # (Cout, Cin_g, KH, KW)
    bias = conv.bias
    shifts = conv.shift

    pos_ranges = _sum_ranges(codes, in_scalar, +1)
    neg_ranges = _sum_ranges(codes, in_scalar, -1)

    # One shifted copy per (window element, shift amount), shared by all output channels.
    shifted: dict[tuple[int, int], SSAValue] = {}

    def term(arg_index: int, amount: int) -> SSAValue:
        if amount == 0:
            return args[arg_index]
        key = (arg_index, amount)
        value = shifted.get(key)
        if value is None:
            value = shifted[key] = _add(block, po2.ShlOp(args[arg_index], amount))
        return value

    outputs: list[SSAValue] = []
    for o in range(cout):
        # Flat indices of the nonzero codes of this channel, in (i, kh, kw) order, mapped to
        # block arguments of the channel's group: arg = (g*Cin_g + i)*KH*KW + kh*KW + kw.
        flat = codes[o].reshape(-1)
        nz = np.flatnonzero(flat)
        first_arg = (o // cout_g) * cin_g * window
        pos: list[SSAValue] = []
        neg: list[SSAValue] = []
        for k, c in zip(nz.tolist(), flat[nz].tolist()):
            (pos if c > 0 else neg).append(term(first_arg + k, abs(c) - 1))

        b = int(bias[o])
        if not pos and not neg:
            # No weights: the channel is its bias, still requantised into the output format.
            acc = _add(block, po2.ConstOp(b))
        else:
            p = _polarity_sum(block, pos, max(b, 0), tuple(pos_ranges[o]))
            n = _polarity_sum(block, neg, max(-b, 0), tuple(neg_ranges[o]))
            if p is None:
                assert n is not None
                acc = _add(block, po2.NegOp(n))
            elif n is None:
                acc = p
            else:
                acc = _add(block, po2.SubOp(p, n))
        outputs.append(_add(block, po2.RescaleOp(acc, int(shifts[o]), lo, hi, out_scalar)))

    block.add_op(po2.YieldOp(outputs))
    return Region(block)


def unroll_conv(conv: po2.Conv2dOp) -> po2.UnrolledConv2dOp:
    """The unrolled op equivalent to `conv` (same layer name, geometry, act and type)."""
    out_t = conv.output.type
    assert isinstance(out_t, po2.ActType)
    return po2.UnrolledConv2dOp(
        conv.layer,
        conv.input,
        out_t,
        kernel=conv.kernel,
        stride=conv.stride,
        padding=conv.padding,
        groups=conv.groups,
        act=conv.act,
        body=build_datapath(conv),
    )


@dataclass(frozen=True)
class Po2UnrollPass(ModulePass):
    """Replace every po2.conv2d by its per-pixel shift/add datapath (po2.unrolled_conv2d)."""

    name = "po2-unroll"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        # Collect first: the walk must not see the (large) regions it is creating.
        convs = [o for o in op.walk() if isinstance(o, po2.Conv2dOp)]
        for conv in convs:
            Rewriter.replace_op(conv, unroll_conv(conv))
