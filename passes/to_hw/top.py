"""
The top module `<func>_top`: instantiates the layer modules and wires their streams, drives
the global stall from the NPU and the NPU's bank-swap image index.

It is built from what each lowered layer leaves behind (`TopLayer`: the instance name, the
module's symbol and port types, its latency, the func values it reads and writes), never
from the layer modules themselves, so that a streaming consumer may write each module out
and drop it before the top is built (hashiflex/flow.py). Which module is the NPU, and which
layer takes two streams, is read from the port names (`we`, `a_valid`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import hw, seq
from xdsl.dialects.builtin import FlatSymbolRefAttr, IntegerType, StringAttr, i1
from xdsl.ir import Attribute, SSAValue

from hashiflex.dialects import po2
from hashiflex.names import namehint
from hashiflex.passes.to_hw.builder import HwBuilder
from hashiflex.passes.to_hw.layer import ModuleShell, act_type, stream_bits
from hashiflex.passes.to_hw.rates import cycles_per_image


@dataclass(frozen=True)
class TopLayer:
    """A layer as the top sees it (`symbol` None: pure wiring, as `po2.flatten`)."""

    name: str
    symbol: StringAttr | None
    module_type: hw.ModuleType | None
    latency: int
    inputs: tuple[SSAValue, ...]  # the func values its streams come from
    output: SSAValue
    wire: Callable[[HwBuilder, SSAValue], SSAValue] | None = None  # wiring: data -> data

    def ports(self, direction: hw.Direction) -> list[tuple[str, Attribute]]:
        assert self.module_type is not None
        return [(p.port_name.data, p.type) for p in self.module_type.ports.data
                if p.dir.data == direction]

    @property
    def is_npu(self) -> bool:
        return self.module_type is not None and "we" in dict(self.ports(hw.Direction.INPUT))


def _drive_swap_at(hb: HwBuilder, in_t: po2.ActType, in_valid: SSAValue, en: SSAValue,
                   npu_inst: hw.InstanceOp, pixels_per_cycle: int = 1) -> None:
    """
    The NPU flips weight banks at an image boundary given by `swap_at`: the number of
    images whose first pixel (beat) the top had accepted *before* the cycle of the swap pulse.
    So every image is classified with the weights that were current when it entered,
    however many images are still in flight inside the pipeline.
    """
    beats_per_image = beats_per_input_image(in_t, pixels_per_cycle)
    accept = hb.and_(in_valid, en)
    pixel = hb.counter(beats_per_image - 1, accept, name="in_pixel")
    first_pixel = hb.and_(accept, hb.eq_const(pixel, 0))
    started = hb.feedback_reg(32, 0, "images_started")
    started.set(hb.mux(first_pixel, hb.add_wrap(started.q, hb.const(1, 32)), started.q))
    names = [n.data for n in npu_inst.arg_names.data]
    npu_inst.operands[names.index("swap_at")] = started.q


def beats_per_input_image(in_t: po2.ActType, pixels_per_cycle: int) -> int:
    """Input beats per image (rates.cycles_per_image: a row's last beat may carry fewer
    pixels; P = k*W carries k whole rows)."""
    if len(in_t.dims) != 3:
        return 1
    return cycles_per_image(in_t.dims[1], in_t.dims[2], pixels_per_cycle)


def build_top(name: str, image: SSAValue, layers: Sequence[TopLayer], result: SSAValue,
              latency_cycles: int = 0, pixels_per_cycle: int = 1,
              result_lanes: int = 1) -> hw.HWModuleOp:
    """
    The top of a network whose input stream is the func value `image` (`pixels_per_cycle`
    pixels per beat) and whose output is `result` (`result_lanes` pixels per beat); with an
    NPU its ports are the NPU's write port and class/logits, else the result stream.
    """
    in_t, out_t = act_type(image), act_type(result)
    ins: list[tuple[str, Attribute]] = [
        ("clk", seq.ClockType()), ("rst", i1), ("in_valid", i1),
        ("in_data", IntegerType(stream_bits(in_t, pixels_per_cycle)))]
    outs: list[tuple[str, Attribute]] = [("in_ready", i1), ("out_valid", i1)]
    npu = next((layer for layer in layers if layer.is_npu), None)
    if npu is not None:
        ports = dict(npu.ports(hw.Direction.INPUT) + npu.ports(hw.Direction.OUTPUT))
        ins += [("npu_we", i1), ("npu_waddr", ports["waddr"]), ("npu_wdata", ports["wdata"]),
                ("npu_swap", i1)]
        outs += [("out_class", ports["out_class"]), ("out_logits", ports["out_logits"])]
    else:
        outs += [("out_data", IntegerType(stream_bits(out_t, result_lanes)))]
    shell = ModuleShell(name, ins, outs)
    a = shell.args
    hb = HwBuilder(shell.block, a["clk"], a["rst"])
    en_placeholder = hb.const(1, 1)
    streams: dict[SSAValue, tuple[SSAValue, SSAValue]] = {image: (a["in_valid"], a["in_data"])}
    gated: list[hw.InstanceOp] = []
    npu_inst = None
    for layer in layers:
        if layer.symbol is None:  # flatten, select_channels: wiring
            valid, data = streams[layer.inputs[0]]
            streams[layer.output] = (valid, data if layer.wire is None else layer.wire(hb, data))
            continue
        out_types = layer.ports(hw.Direction.OUTPUT)
        if layer is npu:
            valid, data = streams[layer.inputs[0]]
            inputs = [("clk", a["clk"]), ("rst", a["rst"]), ("in_valid", valid),
                      ("in_data", data), ("we", a["npu_we"]), ("waddr", a["npu_waddr"]),
                      ("wdata", a["npu_wdata"]), ("swap", a["npu_swap"]),
                      ("swap_at", hb.const(0, 32))]
            names = dict(layer.ports(hw.Direction.INPUT))
            inputs = [(n, v) for n, v in inputs if n in names]
            npu_inst = hw.InstanceOp(f"{layer.name}_inst", FlatSymbolRefAttr(layer.symbol),
                                     inputs, out_types)
            shell.block.add_op(npu_inst)
            continue
        inputs = [("clk", a["clk"]), ("rst", a["rst"]), ("en", en_placeholder)]
        if "a_valid" in dict(layer.ports(hw.Direction.INPUT)):
            (va, da), (vb, db) = (streams[v] for v in layer.inputs)
            inputs += [("a_valid", va), ("a_data", da), ("b_valid", vb), ("b_data", db)]
        else:
            valid, data = streams[layer.inputs[0]]
            inputs += [("in_valid", valid), ("in_data", data)]
        inst = hw.InstanceOp(f"{layer.name}_inst", FlatSymbolRefAttr(layer.symbol), inputs,
                             out_types)
        shell.block.add_op(inst)
        gated.append(inst)
        streams[layer.output] = (inst.results[0], inst.results[1])
    if npu_inst is not None:
        results = dict(zip([n.data for n in npu_inst.result_names.data], npu_inst.results))
        en = hb.not_(results["stall"])
        namehint(en.owner, "en")
        for inst in gated:
            inst.operands[2] = en
        _drive_swap_at(hb, in_t, a["in_valid"], en, npu_inst, pixels_per_cycle)
        values = {"in_ready": en, "out_valid": results["out_valid"],
                  "out_class": results["out_class"], "out_logits": results["out_logits"]}
    else:
        valid, data = streams[result]
        values = {"in_ready": en_placeholder, "out_valid": valid, "out_data": data}
    report = {
        "kind": "top",
        "layer": name,
        "input_shape": list(in_t.dims),
        "output_shape": list(out_t.dims),
        "cycles_per_image": beats_per_input_image(in_t, pixels_per_cycle),
        "pipeline_stages": sum(layer.latency for layer in layers if layer.symbol is not None),
        "latency_cycles": latency_cycles,
        **({"pixels_per_cycle": pixels_per_cycle} if pixels_per_cycle > 1 else {}),
    }
    return shell.finish(values, report)
