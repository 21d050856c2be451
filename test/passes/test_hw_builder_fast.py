"""
The builder's fast op construction (passes/to_hw/builder.py `new_op`, `append_op`) makes
the same ops as xDSL's `Operation.create` and `Block.add_op`: the same fields, operands,
use lists, results, properties and attributes, for every kind of op the builder makes.
If an xDSL upgrade adds a field to Operation, this test names it.
"""

from __future__ import annotations

from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import IntegerAttr, IntegerType, i32
from xdsl.ir import Block

from hashiflex.passes.to_hw.builder import _low_bit, _predicate, _reg_segments, append_op, new_op


def _state(op) -> dict:
    """Everything an op holds, with values and uses as (kind, index) so ops compare."""
    fields = {k: v for k, v in vars(op).items()
              if k not in ("_operands", "_operand_uses", "results")}
    return {
        "class": type(op),
        "fields": fields,
        "operands": [(type(v).__name__, v.index) for v in op._operands],
        "uses": [(u.index, u.operation is op) for u in op._operand_uses],
        "results": [(r.type, r.index, r.op is op, vars(r).keys()) for r in op.results],
    }


def _use_chain(value) -> list[tuple[str, int]]:
    return [(use.operation.name, use.index) for use in value.uses]


i8, i3, i1 = IntegerType(8), IntegerType(3), IntegerType(1)

clk = seq.ClockType()

# (op class, operand types, result type, properties, attributes)
CASES = [
    (comb.AddOp, [i8, i8], i8, None, None),
    (comb.SubOp, [i8, i8], i8, None, None),
    (comb.XorOp, [i8, i8], i8, None, None),
    (comb.AndOp, [i8, i8, i8], i8, None, None),
    (comb.OrOp, [i8, i8], i8, None, None),
    (comb.MulOp, [i8, i8], i8, None, None),
    (comb.MuxOp, [i1, i8, i8], i8, None, None),
    (comb.ConcatOp, [i8, i8], IntegerType(16), None, None),
    (comb.ReplicateOp, [i8], IntegerType(16), None, None),
    (comb.ExtractOp, [i8], i3, lambda: {"lowBit": _low_bit(2)}, None),
    (comb.ICmpOp, [i8, i8], i1, lambda: {"predicate": _predicate("ult")}, None),
    (hw.ConstantOp, [], i8, lambda: {"value": IntegerAttr(5, i8)}, None),
    (seq.CompRegOp, [i8, clk], i8, None,
     lambda: {"operandSegmentSizes": _reg_segments(False)}),
    (seq.CompRegOp, [i8, clk, i1, i8], i8, None,
     lambda: {"operandSegmentSizes": _reg_segments(True)}),
]


def test_new_op_is_operation_create():
    for cls, operand_types, result, props, attrs in CASES:
        fast_block, slow_block = Block(arg_types=operand_types), Block(arg_types=operand_types)
        fast = new_op(cls, fast_block.args, result,
                      props() if props else None, attrs() if attrs else None)
        slow = cls.create(operands=list(slow_block.args), result_types=[result],
                          properties=props() if props else {},
                          attributes=attrs() if attrs else {})
        assert _state(fast) == _state(slow), cls.name
        append_op(fast_block, fast)
        slow_block.add_op(slow)
        assert fast.parent is fast_block and fast_block.first_op is fast_block.last_op is fast
        for a, b in zip(fast_block.args, slow_block.args):
            assert _use_chain(a) == _use_chain(b), cls.name
        fast.verify()  # a well-formed op of its dialect


def test_append_op_links_like_add_op():
    fast_block, slow_block = Block(arg_types=[i8]), Block(arg_types=[i8])
    for block, make in ((fast_block, lambda a: new_op(comb.AddOp, (a, a), i8)),
                        (slow_block, lambda a: comb.AddOp.create(operands=[a, a],
                                                                 result_types=[i8]))):
        value = block.args[0]
        for _ in range(3):
            op = make(value)
            if block is fast_block:
                append_op(block, op)
            else:
                block.add_op(op)
            value = op.results[0]
    fast_ops, slow_ops = list(fast_block.ops), list(slow_block.ops)
    assert len(fast_ops) == len(slow_ops) == 3
    for ops in (fast_ops, slow_ops):
        assert [op.prev_op for op in ops] == [None, *ops[:-1]]
        assert [op.next_op for op in ops] == [*ops[1:], None]
    assert [o.results[0].uses.get_length() for o in fast_ops] == \
        [o.results[0].uses.get_length() for o in slow_ops]
    fast_block.verify()
