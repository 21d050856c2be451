"""
Calibrated fake-quant model -> layer-level po2 IR.

The quantiser (`frontend/quant.py`) leaves a `Po2FakeQuantModel`: its ops in topological
order, each with its output format. Each op builds its own po2 op (`Fq*.to_po2`, from the
same integers its fake-quant forward uses); this module wires them into one `func.func`.
Every op keeps its fx node name as its `layer` and as its location
(`loc("features.3.conv")`, printed with `--print-debuginfo`), so an error in the IR or a
name in the generated hardware points back at the model.
"""

from __future__ import annotations

from xdsl.builder import Builder
from xdsl.dialects.builtin import ModuleOp, NameLoc, StringAttr, UnknownLoc
from xdsl.dialects.func import FuncOp, FunctionType, ReturnOp
from xdsl.ir import Block, Region, SSAValue
from xdsl.rewriter import InsertPoint

from hashiflex.dialects import po2
from hashiflex.frontend import quant
from hashiflex.names import legal_chars


class ImportError_(ValueError):
    """The quantised model cannot be expressed in po2 IR (names the layer)."""


def _symbol(name: str) -> str:
    """A legal func symbol from a model name."""
    return legal_chars(name) or "net"


def fake_quant_to_po2(fq: quant.Po2FakeQuantModel, name: str = "net") -> ModuleOp:
    """Build a module holding `@name`, the calibrated network as layer-level po2 ops."""
    ops = list(fq.ops)
    if not ops or not isinstance(ops[0], quant.FqInput):
        raise ImportError_("a quantised model starts with its input op")
    if any(op.fmt is None for op in ops[:-1]):
        uncalibrated = next(op for op in ops if op.fmt is None)
        raise ImportError_(f"layer '{uncalibrated.op_name}' has no format: calibrate first")
    first = ops[0]
    in_type = first.result_type()
    block = Block(arg_types=[in_type])
    builder = Builder(InsertPoint.at_end(block))
    values: dict[str, SSAValue] = {first.op_name: block.args[0]}
    last: SSAValue = block.args[0]

    for fq_op in ops[1:]:
        try:
            operands = [values[i] for i in fq_op.inputs]
        except KeyError as missing:
            raise ImportError_(f"layer '{fq_op.op_name}' reads {missing}, which is not defined before it")
        try:
            op = fq_op.to_po2(operands)
        except (ValueError, OverflowError) as error:
            raise ImportError_(f"layer '{fq_op.op_name}': {error}") from None
        op.location = NameLoc(StringAttr(fq_op.op_name), UnknownLoc())
        builder.insert(op)
        result = op.results[0]
        if isinstance(result.type, po2.ActType) and result.type.dims != tuple(fq_op.shape):
            raise ImportError_(
                f"layer '{fq_op.op_name}': the quantiser says shape {list(fq_op.shape)}, the "
                f"po2 op computes {list(result.type.dims)}"
            )
        values[fq_op.op_name] = result
        last = result

    builder.insert(ReturnOp(last))
    func = FuncOp(
        _symbol(name),
        FunctionType.from_lists([in_type], [last.type]),
        Region(block),
    )
    module = ModuleOp([func])
    module.verify()
    return module
