"""
Quantised graph -> layer-level po2 IR.

The quantiser (`frontend/quant.py`) produces a list of layer records in topological order;
this module turns them into one `func.func` of po2 ops. Every op keeps its fx node name as
its `layer` and as its location (`loc("features.3.conv")`, printed with
`--print-debuginfo`), so an error in the IR or a name in the generated hardware points
back at the model.
"""

from __future__ import annotations


from xdsl.builder import Builder
from xdsl.dialects.builtin import ModuleOp, NameLoc, StringAttr, UnknownLoc
from xdsl.dialects.func import FuncOp, FunctionType, ReturnOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from hashiflex.dialects import po2
from hashiflex.frontend import quant
from hashiflex.names import legal_chars


class ImportError_(ValueError):
    """The quantised graph cannot be expressed in po2 IR (names the layer)."""


def _symbol(name: str) -> str:
    """A legal func symbol from a model name."""
    return legal_chars(name) or "net"


def graph_to_po2(graph: list[quant.Layer], name: str = "net") -> ModuleOp:
    """Build a module holding `@name`, the network as layer-level po2 ops."""
    if not graph or not isinstance(graph[0], quant.Input):
        raise ImportError_("a quantised graph starts with its Input record")
    first = graph[0]
    in_type = po2.ActType(first.shape, first.fmt)
    block = Block(arg_types=[in_type])
    builder = Builder(InsertPoint.at_end(block))
    values: dict[str, SSAValue] = {first.name: block.args[0]}
    last: SSAValue = block.args[0]

    for layer in graph[1:]:
        try:
            operands = [values[i] for i in layer.inputs]
        except KeyError as missing:
            raise ImportError_(f"layer '{layer.name}' reads {missing}, which is not defined before it")
        op = _layer_op(layer, operands)
        op.location = NameLoc(StringAttr(layer.name), UnknownLoc())
        builder.insert(op)
        result = op.results[0]
        if isinstance(result.type, po2.ActType) and result.type.dims != tuple(layer.shape):
            raise ImportError_(
                f"layer '{layer.name}': the quantiser says shape {list(layer.shape)}, the "
                f"po2 op computes {list(result.type.dims)}"
            )
        values[layer.name] = result
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


def _act_type(layer: quant.Layer) -> po2.ActType:
    return po2.ActType(layer.shape, layer.fmt)


def _layer_op(layer: quant.Layer, operands: list[SSAValue]) -> Operation:
    match layer:
        case quant.Conv2d():
            return po2.Conv2dOp(
                layer.name,
                operands[0],
                _act_type(layer),
                weights=layer.weight,
                exp_base=[int(e) for e in layer.exp_base],
                bias=[int(b) for b in layer.bias],
                stride=tuple(layer.stride),
                padding=tuple(layer.padding),
                groups=layer.groups,
                act=layer.act,
                exp_bits=layer.exp_bits,
            )
        case quant.Add():
            return po2.ResidualAddOp(layer.name, operands[0], operands[1], _act_type(layer), layer.act)
        case quant.Requant():
            return po2.RequantOp(layer.name, operands[0], _act_type(layer), layer.act)
        case quant.AvgPool():
            return po2.AvgPoolOp(layer.name, operands[0], _act_type(layer))
        case quant.Flatten():
            return po2.FlattenOp(layer.name, operands[0])
        case quant.MaxPool2d():
            return po2.MaxPool2dOp(layer.name, operands[0], _act_type(layer), kernel=layer.kernel,
                                   stride=layer.stride, padding=layer.padding)
        case quant.AvgPool2d():
            return po2.AvgPool2dOp(layer.name, operands[0], _act_type(layer), kernel=layer.kernel,
                                   stride=layer.stride, padding=layer.padding)
        case quant.LeakyRelu():
            return po2.LeakyReluOp(layer.name, operands[0], _act_type(layer), layer.slope_shift)
        case quant.Clamp():
            return po2.ClampOp(layer.name, operands[0], _act_type(layer), layer.lo, layer.hi)
        case quant.Concat():
            return po2.ConcatOp(layer.name, operands[0], operands[1], _act_type(layer))
        case quant.SelectChannels():
            return po2.SelectChannelsOp(layer.name, operands[0], layer.channels)
        case quant.NpuLinear():
            return po2.NpuLinearOp(
                layer.name,
                operands[0],
                weights=layer.weight,
                bias=[int(b) for b in layer.bias],
                weight_frac=layer.weight_frac,
                weight_bits=layer.weight_bits,
                bias_bits=layer.bias_bits,
            )
    raise ImportError_(f"layer '{layer.name}': no po2 op for a {type(layer).__name__} record")
