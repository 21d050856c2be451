"""
The network loop shared by the `po2-to-hw` pass and the streaming flow: one lowering per
layer kind, looked up by op class (`LOWERINGS`, CIRCT's pattern-per-op seam), the naming of
the modules, the stream timing of every value, and the top.

    net = NetworkLowering(fn, levels_per_stage=2, npu_lanes=0, pixels_per_cycle=1)
    for op in net.layers():
        layer = net.lower(op)         # LayerHw: module (None for wiring), latency, timing
        ...                           # keep layer.module, or write it out and drop it
    top = net.top()

`lower(op, stand_in)` lowers `stand_in` in the place of `op` (the streaming flow unrolls a
`po2.conv2d` just in time into a detached `po2.unrolled_conv2d` with the same operand; the
conv's result stays the key of its stream). The loop keeps only what the top needs of each
layer (`top.TopLayer`), never a module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from xdsl.dialects import func, hw
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.passes.to_hw import (activation, channels, conv, npu, pool, pool2d, requant,
                                    residual)
from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions, LoweringError, act_type, sv_name
from hashiflex.passes.to_hw.multicycle import stream_intervals
from hashiflex.passes.to_hw.rates import RateError, stream_rates
from hashiflex.passes.to_hw.timing import StreamTiming
from hashiflex.passes.to_hw.top import TopLayer, build_top


def lower_flatten(op: po2.FlattenOp, name: str, options: LayerOptions) -> LayerHw:
    """Flattening a Cx1x1 tensor (after global pooling) is wiring: no module."""
    x_t = act_type(op.input)
    if len(x_t.dims) == 3 and x_t.dims[1:] != (1, 1):
        raise LoweringError(
            f"layer '{op.layer}': po2-to-hw flattens only Cx1x1 tensors (after global "
            f"pooling); got {list(x_t.dims)}")
    return LayerHw(None, 0, None, options.streams[op.input])


Lowering = Callable[[Operation, str, LayerOptions], LayerHw]

#: The lowering of each layer-level op class: `lower(op, name, options) -> LayerHw`.
LOWERINGS: dict[type[Operation], Lowering] = {
    po2.UnrolledConv2dOp: conv.lower,
    po2.Conv2dOp: conv.reject_layer_level,
    po2.RequantOp: requant.lower,
    po2.ResidualAddOp: residual.lower,
    po2.AvgPoolOp: pool.lower,
    po2.FlattenOp: lower_flatten,
    po2.MaxPool2dOp: pool2d.lower,
    po2.AvgPool2dOp: pool2d.lower,
    po2.LeakyReluOp: activation.lower,
    po2.ClampOp: activation.lower,
    po2.ConcatOp: channels.lower_concat,
    po2.SelectChannelsOp: channels.lower_select,
    po2.NpuLinearOp: npu.lower,
}


def layer_name(op: Operation) -> str:
    layer = op.properties.get("layer")
    return layer.data if isinstance(layer, StringAttr) else op.name


def lower_layer(op: Operation, name: str, options: LayerOptions) -> LayerHw:
    """The hardware of one layer-level op, by its class."""
    lowering = LOWERINGS.get(type(op))
    if lowering is None:
        raise LoweringError(f"layer '{layer_name(op)}': po2-to-hw cannot lower '{op.name}'")
    return lowering(op, name, options)


class NetworkLowering:
    """Layer modules in graph order, then the top that instantiates and wires them."""

    def __init__(self, fn: func.FuncOp, levels_per_stage: int = 2, npu_lanes: int = 0,
                 top_name: str = "", pixels_per_cycle: int = 1, clock_mhz: float = 1000.0):
        if len(fn.args) != 1 or not isinstance(fn.args[0].type, po2.ActType):
            raise LoweringError(f"@{fn.sym_name.data} must take one !po2.act image argument")
        self.fn = fn
        try:  # the lanes of every stream (rates.py); frame_pixels: input beats per image
            self.rates = stream_rates(fn.args[0], self.layers(), pixels_per_cycle)
        except RateError as error:
            raise LoweringError(str(error))
        self.frame_pixels = self.rates.cycles_per_image
        self.streams: dict[SSAValue, StreamTiming] = {
            fn.args[0]: StreamTiming.input(self.frame_pixels)}
        # levels_per_stage 0: the delay model places the registers for clock_mhz (delay.py)
        intervals = stream_intervals(fn.args[0], self.layers(), self.rates.lanes,
                                     self.frame_pixels)
        self.options = LayerOptions(max(0, levels_per_stage), npu_lanes, self.frame_pixels,
                                    self.streams, self.rates.lanes, clock_mhz, intervals,
                                    self.rates.rows)
        self.top_name = sv_name(top_name or f"{fn.sym_name.data}_top")
        self.used_names: set[str] = {self.top_name}
        self.plan: list[TopLayer] = []
        self.npu: tuple[po2.NpuLinearOp, int] | None = None  # the NPU op and its latency

    def unique(self, name: str) -> str:
        cand = self.peek_unique(name)
        self.used_names.add(cand)
        return cand

    def peek_unique(self, name: str) -> str:
        """The module name `unique` would give `name` next, without taking it."""
        base, i = sv_name(name), 1
        cand = base
        while cand in self.used_names:
            i += 1
            cand = f"{base}_{i}"
        return cand

    def layers(self) -> Iterator[Operation]:
        """The layer-level ops of the func, in order (up to its return)."""
        for op in self.fn.body.block.ops:
            if isinstance(op, func.ReturnOp):
                return
            yield op

    def lower(self, op: Operation, stand_in: Operation | None = None) -> LayerHw:
        """Lower `op` (or `stand_in` in its place); record what the top needs of it."""
        lowered = op if stand_in is None else stand_in
        lname = layer_name(op)
        if isinstance(op, po2.NpuLinearOp) and self.npu is not None:
            raise LoweringError(f"layer '{lname}': only one po2.npu_linear is supported")
        wiring = isinstance(lowered, (po2.FlattenOp, po2.SelectChannelsOp))
        name = "" if wiring else self.unique(lname)
        layer = lower_layer(lowered, name, self.options)
        module = layer.module
        self.record(op, name, None if module is None else module.sym_name,
                    None if module is None else module.module_type, layer.latency, layer.timing,
                    layer.wire)
        return layer

    def record(self, op: Operation, name: str, symbol: StringAttr | None,
               module_type: hw.ModuleType | None, latency: int, timing: StreamTiming,
               wire=None) -> None:
        """What the top needs of a lowered layer (`lower`'s, or a module lowered elsewhere:
        hashiflex/flow.py's worker processes, which name it `unique(layer_name(op))`)."""
        self.streams[op.results[0]] = timing
        self.plan.append(TopLayer(name, symbol, module_type, latency, tuple(op.operands),
                                  op.results[0], wire))
        if isinstance(op, po2.NpuLinearOp):
            self.npu = (op, latency)

    def top(self) -> hw.HWModuleOp:
        fn = self.fn
        ret = fn.body.block.last_op
        if not isinstance(ret, func.ReturnOp):
            raise LoweringError(f"@{fn.sym_name.data} has no func.return")
        result = ret.operands[0]
        if self.npu is not None and result is not self.npu[0].output:
            raise LoweringError("the network must return the result of its po2.npu_linear")
        # Latency model: image 0's beats are accepted one per cycle from cycle 0; its result
        # needs input pixel `need[-1]`, then at most `lat_hi` cycles of layer pipelines and
        # the NPU's own latency. Simulation measures the same quantity.
        final = self.streams[result]
        npu_latency = self.npu[1] if self.npu is not None else 0
        latency = int(final.ready_of([final.per_frame - 1])[0]) + npu_latency
        return build_top(self.top_name, fn.args[0], self.plan, result, latency,
                         self.rates.pixels_per_cycle, self.rates.lanes.get(result, 1))

    def build(self) -> list[hw.HWModuleOp]:
        """Every module of the network, the top last (the whole-module form of the pass)."""
        modules = [layer.module for layer in map(self.lower, self.layers())
                   if layer.module is not None]
        return modules + [self.top()]
