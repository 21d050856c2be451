"""
`po2-canonicalize`: local simplifications of po2 IR, one rewrite pattern per rule.

Why: hand-written IR, the frontend and later transformations (sharing of subexpressions,
pruning of weights) leave trivial arithmetic behind: shifts by zero, one-operand sums,
additions of zero, double negations, sums of sums, dead values and no-op requantisations.
Each costs an adder, a register or at least a name in the hardware, and each makes the
adder trees harder to balance. The patterns bring the IR to one canonical form so that the
passes after it (po2-infer-widths, the lowering to hw) see only real work.

Types. A pattern may replace a value by one of a different si/ui type. That is safe because
every user of a scalar value (the scalar ops and `po2.yield`) accepts any integer type and
checks only ranges (`po2.value_range`), and every rewrite here replaces a value by one whose
range is contained in the old one: ranges only shrink, so every user's verifier still holds
(the unrolled op's check that each yielded value fits the output format included). Ops that
are rebuilt keep the old result type; po2-infer-widths narrows the types afterwards.

The layer-level rule (no-op `po2.requant`) compares types exactly, since layer-level users
expect the same activation tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from hashiflex.dialects import po2
from hashiflex.golden.semantics import clamp_bounds


def _const_value(value: SSAValue) -> int | None:
    """The value of a `po2.const` result, else None."""
    owner = value.owner
    return owner.value if isinstance(owner, po2.ConstOp) else None


def _single_use_sum(value: SSAValue) -> po2.SumOp | None:
    """The `po2.sum` defining `value` when this is its only use (so it can be dissolved)."""
    owner = value.owner
    if isinstance(owner, po2.SumOp) and value.has_one_use():
        return owner
    return None


class ShlByZero(RewritePattern):
    """`po2.shl %x, 0` is `%x`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.ShlOp, rewriter: PatternRewriter) -> None:
        if op.amount == 0:
            rewriter.replace(op, [], [op.input])


class SingleOperandSum(RewritePattern):
    """A `po2.sum` of one operand is that operand."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.SumOp, rewriter: PatternRewriter) -> None:
        if len(op.inputs) == 1:
            rewriter.replace(op, [], [op.inputs[0]])


class FoldSumConstants(RewritePattern):
    """
    The constants among a `po2.sum`'s operands become one `po2.const` (their total), placed
    last, and disappear if the total is 0; a sum of constants only becomes a constant.
    """

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.SumOp, rewriter: PatternRewriter) -> None:
        consts = [v for v in (_const_value(x) for x in op.inputs) if v is not None]
        # Canonical already: at most one constant, nonzero, in last place.
        if not consts or (
            len(consts) == 1 and consts[0] != 0 and _const_value(op.inputs[-1]) is not None
        ):
            return
        total = sum(consts)
        rest = [x for x in op.inputs if _const_value(x) is None]
        new_ops: list[Operation] = []
        if total != 0 or not rest:
            new_ops.append(const := po2.ConstOp(total))
            rest.append(const.result)
        if len(rest) > 1:
            # Same range as before (constants are exact), so the old type still fits.
            new_ops.append(po2.SumOp(rest, op.result.type))
            rewriter.replace(op, new_ops)
        else:
            rewriter.replace(op, new_ops, [rest[0]])


class AddSubZero(RewritePattern):
    """`x + 0`, `0 + x` and `x - 0` are `x`; `0 - x` is `po2.neg x`."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, po2.AddOp | po2.SubOp):
            return
        lhs, rhs = _const_value(op.lhs), _const_value(op.rhs)
        if rhs == 0:
            rewriter.replace(op, [], [op.lhs])
        elif lhs == 0 and isinstance(op, po2.AddOp):
            rewriter.replace(op, [], [op.rhs])
        elif lhs == 0:
            rewriter.replace(op, po2.NegOp(op.rhs))


class NegNeg(RewritePattern):
    """`po2.neg (po2.neg x)` is `x`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.NegOp, rewriter: PatternRewriter) -> None:
        inner = op.input.owner
        if isinstance(inner, po2.NegOp):
            rewriter.replace(op, [], [inner.input])


class FlattenNestedSum(RewritePattern):
    """
    A single-use `po2.sum` operand of a `po2.sum` is spliced into its user: one n-ary sum
    is one adder tree, which the lowering can balance as a whole. (A sum with other users
    stays: its value is shared, and splicing would duplicate its adders.)
    """

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.SumOp, rewriter: PatternRewriter) -> None:
        if not any(_single_use_sum(x) for x in op.inputs):
            return
        operands: list[SSAValue] = []
        for x in op.inputs:
            inner = _single_use_sum(x)
            operands.extend(inner.inputs if inner else [x])
        rewriter.replace(op, po2.SumOp(operands, op.result.type))


class MergeAddOfSums(RewritePattern):
    """`po2.add` with a single-use `po2.sum` operand becomes one `po2.sum` of all terms."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.AddOp, rewriter: PatternRewriter) -> None:
        parts = [_single_use_sum(x) for x in (op.lhs, op.rhs)]
        if not any(parts):
            return
        operands: list[SSAValue] = []
        for x, inner in zip((op.lhs, op.rhs), parts):
            operands.extend(inner.inputs if inner else [x])
        rewriter.replace(op, po2.SumOp(operands, op.result.type))


class DeadScalarOp(RewritePattern):
    """A scalar op whose result is unused is erased (they are all pure)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, po2.ScalarOp) and not op.results[0].uses:
            rewriter.erase(op)


class NoOpRequant(RewritePattern):
    """
    A `po2.requant` whose result type equals its input type is the identity when its clamp
    does not narrow the format: round_shift by 0 is exact and the saturation covers the
    whole format (act none, or relu on an unsigned format, or a relu6 bound above its max).
    """

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: po2.RequantOp, rewriter: PatternRewriter) -> None:
        typ = op.input.type
        if typ != op.output.type or not isinstance(typ, po2.ActType):
            return
        if clamp_bounds(typ.fmt, op.act) == (typ.fmt.lo, typ.fmt.hi):
            rewriter.replace(op, [], [op.input])


def canonicalization_patterns() -> list[RewritePattern]:
    """The po2 canonicalisation patterns, in the order they are tried."""
    return [
        DeadScalarOp(),
        ShlByZero(),
        SingleOperandSum(),
        FoldSumConstants(),
        AddSubZero(),
        NegNeg(),
        FlattenNestedSum(),
        MergeAddOfSums(),
        NoOpRequant(),
    ]


def canonicalizer() -> PatternRewriteWalker:
    """
    The walker that applies `canonicalization_patterns` to a fixed point (on a module, or
    on one datapath region in the streaming flow).
    """
    # xDSL's built-in DCE of the applier would also erase unused layer-level ops; dead
    # code removal here is limited to scalar ops (DeadScalarOp).
    applier = GreedyRewritePatternApplier(canonicalization_patterns(), dce_enabled=False)
    return PatternRewriteWalker(applier, walk_reverse=True)


@dataclass(frozen=True)
class Po2CanonicalizePass(ModulePass):
    """Apply the po2 canonicalisation patterns to a fixed point."""

    name = "po2-canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        canonicalizer().rewrite_module(op)
