"""
`po2-infer-widths`: give every scalar value of every unrolled datapath the narrowest si/ui
type that holds all the values it can take.

Why: the widths of the adders are the area and the timing of the hardened accelerator, and
they must never be guessed (docs/semantics.md: accumulation is exact). This is the one
width analysis of the project: an interval analysis whose rule is `po2.value_range`, the
same rule the verifiers apply, so the widths it picks always verify:

* `po2.const` is its value, exactly;
* `po2.rescale` is bounded by its clamp;
* `po2.shl`, `po2.add`, `po2.sub`, `po2.neg`, `po2.sum` by the op's transfer function over
  its operands' ranges (`result_range`), where an operand's range is read from its (already
  inferred) type, or exactly for constants and rescales.

Each result then gets `scalar_type_for_range` of its interval. This narrows types that are
wider than needed (after canonicalisation, or in hand-written IR) and widens types that
could overflow: a hand-written `po2.add ... -> si4` whose operands can sum to 20 is
rejected by the verifier, and fixed by this pass.

An op's range depends only on its operands, which precede it in the block (SSA dominance in
a single block), so one walk in block order reaches the fixed point.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from hashiflex.dialects import po2


def infer_block_widths(block: Block) -> int:
    """Retype the scalar results of one datapath in block order; returns how many changed."""
    changed = 0
    for op in block.ops:
        if not isinstance(op, po2.ScalarOp):
            continue
        lo, hi = op.result_range()
        typ = po2.scalar_type_for_range(lo, hi)
        result = op.results[0]
        if result.type != typ:
            Rewriter.replace_value_with_new_type(result, typ)
            changed += 1
    return changed


@dataclass(frozen=True)
class Po2InferWidthsPass(ModulePass):
    """Exact, minimal integer widths for every scalar value of every unrolled datapath."""

    name = "po2-infer-widths"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for unrolled in op.walk():
            if isinstance(unrolled, po2.UnrolledConv2dOp):
                infer_block_widths(unrolled.body.block)
