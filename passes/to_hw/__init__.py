"""
The lowering of the po2 network to hw/comb/seq (the `po2-to-hw` pass, passes/po2_to_hw.py,
and the streaming flow, hashiflex/flow.py, are two loops over `network.NetworkLowering`).

    builder.py   the one hw/comb/seq builder (registers, mux trees, adder trees, FIFO, ...)
    timing.py    the stream timing analysis that sizes the residual FIFOs (pure)
    layer.py     what every layer lowering shares (module shell, ports, LayerHw, output stage)
    conv.py      po2.unrolled_conv2d: line buffers, window, padding masks, datapath
    requant.py   po2.requant
    residual.py  po2.residual_add: two FIFOs, align, add, requantise
    pool.py      po2.avgpool: accumulate, constant multiply, requantise
    npu.py       po2.npu_linear: the reprogrammable MAC array with two weight banks
    network.py   LOWERINGS (op class -> lowering), lower_layer, NetworkLowering
    top.py       the top module, from the layers' names, port types and latencies
    report.py    the per-module report attribute and design_report
"""

from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions, LoweringError
from hashiflex.passes.to_hw.network import LOWERINGS, NetworkLowering, lower_layer
from hashiflex.passes.to_hw.report import design_report, design_report_of, module_report

__all__ = [
    "LOWERINGS",
    "LayerHw",
    "LayerOptions",
    "LoweringError",
    "NetworkLowering",
    "design_report",
    "design_report_of",
    "lower_layer",
    "module_report",
]
