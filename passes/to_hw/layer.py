"""
What every layer lowering shares: the module shell, the stream ports, `LayerHw` (what a
lowered layer hands to the network loop and the top) and the output stage.

Streams. A stream carries one pixel (all channels, channel 0 in the low bits) per `valid`
cycle in raster order, image after image; a stream of `lanes` q > 1 carries q consecutive
pixels of a row per valid beat, lane 0 in the low bits, or k whole rows (rates.py). Every register of a layer is enabled by `en` (the
global stall), a layer's stream position advances on `en && in_valid`, and a layer's output
is registered: `out_valid` is high for exactly one enabled cycle per output pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from xdsl.dialects import hw, seq
from xdsl.dialects.builtin import ArrayAttr, IntegerType, StringAttr, i1
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.utils.exceptions import DiagnosticException

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format
from hashiflex.names import legal_chars, namehint
from hashiflex.passes.to_hw.multicycle import SAMPLE_SUFFIX
from hashiflex.passes.to_hw.builder import HwBuilder, Sig
from hashiflex.passes.to_hw.report import REPORT_ATTR, to_attr
from hashiflex.passes.to_hw.timing import StreamTiming


class LoweringError(DiagnosticException):
    """The network cannot be lowered; the message names the layer and the rule broken."""


def sv_name(name: str) -> str:
    """A SystemVerilog identifier from a layer name (`features.0.conv` -> `features_0_conv`)."""
    ident = legal_chars(name).strip("_") or "layer"
    return ident if not ident[0].isdigit() else f"l_{ident}"


@dataclass
class ModuleShell:
    """An `hw.module` under construction: its body block, named input args, output ports."""

    name: str
    inputs: list[tuple[str, Attribute]]
    outputs: list[tuple[str, Attribute]]
    block: Block = field(init=False)
    args: dict[str, SSAValue] = field(init=False)

    def __post_init__(self):
        self.block = Block(arg_types=[t for _, t in self.inputs])
        self.args = {n: a for (n, _), a in zip(self.inputs, self.block.args)}

    def finish(self, values: dict[str, SSAValue], report: dict | None = None) -> hw.HWModuleOp:
        self.block.add_op(hw.OutputOp([values[n] for n, _ in self.outputs]))
        ports = [hw.ModulePort(StringAttr(n), t, hw.DirectionAttr(hw.Direction.INPUT))
                 for n, t in self.inputs]
        ports += [hw.ModulePort(StringAttr(n), t, hw.DirectionAttr(hw.Direction.OUTPUT))
                  for n, t in self.outputs]
        module = hw.HWModuleOp(StringAttr(self.name), hw.ModuleType(ArrayAttr(ports)),
                               Region(self.block))
        if report is not None:
            module.attributes[REPORT_ATTR] = to_attr(report)
        return module


def stream_module(name: str, in_type: po2.ActType, out_type: po2.ActType, options: LayerOptions,
                  b_type: po2.ActType | None = None, lanes_in: int = 1,
                  lanes_out: int = 1) -> tuple[ModuleShell, HwBuilder]:
    """
    The shell of a streaming layer module (`layer_ports`; two input streams a, b when
    `b_type` is given; `lanes_in`/`lanes_out` pixels per beat) and the builder of its body,
    with the module's clk, rst and en.
    """
    ins, outs = layer_ports(stream_bits(in_type, lanes_in),
                            out_type.dims[0] * out_type.fmt.bits * lanes_out,
                            two_inputs=b_type is not None)
    if b_type is not None:  # the two operands may have different formats
        ins[6] = ("b_data", IntegerType(stream_bits(b_type, lanes_in)))
    shell = ModuleShell(name, ins, outs)
    a = shell.args
    return shell, HwBuilder(shell.block, a["clk"], a["rst"], a["en"], options.levels_per_stage,
                            options.clock_mhz)


def layer_ports(data_in: int, data_out: int, two_inputs: bool = False) -> tuple[list, list]:
    ins: list[tuple[str, Attribute]] = [("clk", seq.ClockType()), ("rst", i1), ("en", i1)]
    if two_inputs:
        ins += [("a_valid", i1), ("a_data", IntegerType(data_in)),
                ("b_valid", i1), ("b_data", IntegerType(data_in))]
    else:
        ins += [("in_valid", i1), ("in_data", IntegerType(data_in))]
    return ins, [("out_valid", i1), ("out_data", IntegerType(data_out))]


def act_type(value: SSAValue) -> po2.ActType:
    typ = value.type
    assert isinstance(typ, po2.ActType)
    return typ


def stream_bits(typ: po2.ActType, lanes: int = 1) -> int:
    """Width of one stream item: all channels of `lanes` pixels (a vector: all its elements)."""
    return typ.dims[0] * typ.fmt.bits * lanes


@dataclass(frozen=True)
class LayerOptions:
    """
    What a layer lowering reads besides its op: the pass options and the timing of every
    stream lowered so far (keyed by the layer-level func's values).
    """

    levels_per_stage: int = 2  # 0: registers placed by the delay model for clock_mhz
    npu_lanes: int = 0  # 0: enough lanes to keep up with the pipeline
    frame_pixels: int = 1  # input beats per image (pixels at one pixel per cycle)
    streams: Mapping[SSAValue, StreamTiming] = field(default_factory=dict)
    lanes: Mapping[SSAValue, int] = field(default_factory=dict)  # pixels per beat (rates.py)
    clock_mhz: float = 1000.0  # the target the delay model places registers for (delay.py)
    #: fewest enabled cycles between two items of each stream (multicycle.stream_intervals)
    intervals: Mapping[SSAValue, int] = field(default_factory=dict)
    #: whole rows per beat of the streams whose beats span rows (rates.py; absent: 1)
    rows: Mapping[SSAValue, int] = field(default_factory=dict)

    def lanes_of(self, value: SSAValue) -> int:
        return self.lanes.get(value, 1)

    def rows_of(self, value: SSAValue) -> int:
        return self.rows.get(value, 1)


@dataclass
class LayerHw:
    """
    A lowered layer: its module (None for pure wiring, `po2.flatten`), the latency the top
    and the timing analysis need, its report, and the timing of its output stream. The top
    reads only `symbol`, `module_type` and `latency` (see `top.TopLayer`).
    """

    module: hw.HWModuleOp | None
    latency: int  # cycles from the completing input handshake to out_valid
    report: dict | None
    timing: StreamTiming
    # wiring layers (module None): how the top derives the output data from the input's
    # (None: the same bits, as po2.flatten)
    wire: Callable[[HwBuilder, SSAValue], SSAValue] | None = None


def finish_outputs(hb: HwBuilder, outs: list[Sig], fmt: Format, start_valid: SSAValue,
                   name: str, sample_after: int = 1,
                   hold: int = 1) -> tuple[SSAValue, SSAValue, int]:
    """
    Register, equalise and concatenate output channels; delay the valid to match.
    `sample_after` N > 1: the outputs are unpipelined multicycle paths from inputs held
    for at least N cycles (multicycle.py); their registers (named `*_mc_sample`) sample
    every cycle and the valid comes N cycles after the inputs were taken.
    `hold` k > 1: the datapath's inputs (lat 0) are registers held for k cycles after an
    item is taken (a conv whose input items come >= k cycles apart), so a value of latency
    L, sampled every cycle behind them, still holds this item's result up to latency
    L + k - 1: a channel that early waits in its own register, unequalised (issue 10).
    """
    sample_name = f"{name}{SAMPLE_SUFFIX}" if sample_after > 1 else None
    outs = [hb.stage(o, sample_name) if o.depth > 0 else o for o in outs]
    latest = max((o.lat for o in outs if not o.const), default=0)
    latency = latest + sample_after - 1
    # the valid is read `latency` after the item: only channels too early are delayed
    outs = [o if latency - o.lat < hold else hb.retime(o, latest) for o in outs]
    channels = [hb.resize(o.value, fmt.bits, o.signed) for o in outs]
    data = hb.concat(channels[::-1])
    if len(channels) > 1:
        namehint(data.owner, f"{name}_out")
    valid = hb.delay(start_valid, latency, hb.en, reset_value=0, name=f"{name}_valid")
    return valid, data, latency


def input_sig(hb: HwBuilder, data: SSAValue, fmt: Format, channel: int) -> Sig:
    value = hb.extract(data, channel * fmt.bits, fmt.bits)
    return Sig(value, fmt.signed, fmt.lo, fmt.hi)


def lanes_entry(lanes: int) -> dict:
    """The report's `lanes` (datapath copies), only when > 1: P=1 modules stay as they were."""
    return {"lanes": lanes} if lanes > 1 else {}


def layer_report(kind: str, op: po2.LayerOp, hb: HwBuilder, latency: int, **extra) -> dict:
    """The report of a layer without weights (requant, residual add, pooling)."""
    report = {
        "kind": kind,
        "layer": op.layer,
        "input_shape": list(act_type(op.operands[0]).dims),
        "output_shape": list(act_type(op.results[0]).dims),
        "nonzero_weights": 0,
        "adders": hb.stats.adders,
        "register_bits": hb.stats.register_bits,
        "line_buffer_bits": 0,
        "pipeline_stages": latency,
        "comb_adder_levels": hb.stats.max_depth,
    }
    report.update(extra)
    return report
