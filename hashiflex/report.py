"""
`report.json` of a design: the throughput model (cycles per image: the pipeline's or the
NPU's, whichever is slower), totals, and one entry per layer, from the lowering's hw
report; and the top's ports as the SystemVerilog names them.
"""

from __future__ import annotations

from hashiflex.errors import DesignError


def build_report(hw_report: dict, clock_mhz: float) -> dict:
    """report.json: throughput model, totals and one entry per layer."""
    top = hw_report["top"]
    layers = hw_report["layers"]
    npu = next((l for l in layers if l.get("kind") == "npu"), None)
    pipeline_cycles = top["cycles_per_image"]
    npu_cycles = npu.get("cycles_per_image", 0) if npu else 0
    cycles = max(pipeline_cycles, npu_cycles)
    totals = hw_report["totals"]
    built_lanes = _built_lanes(npu) if npu else 0
    return {
        "pixels_per_cycle": top.get("pixels_per_cycle", 1),
        "cycles_per_image": cycles,
        "pipeline_cycles_per_image": pipeline_cycles,
        "npu_cycles_per_image": npu_cycles,
        "npu_is_bottleneck": npu_cycles > pipeline_cycles,
        "latency_cycles": top.get("latency_cycles", 0),
        "clock_mhz": clock_mhz,
        "images_per_second": clock_mhz * 1e6 / cycles,
        "images_per_second_without_npu": clock_mhz * 1e6 / pipeline_cycles,
        # the multipliers built (Lc x Lk), not the number asked for: --npu-lanes beyond
        # what the NPU can use is clamped by the lowering
        "npu_lanes": built_lanes,
        "npu_lanes_requested": npu.get("lanes", 0) if npu else 0,
        "npu_weight_bits": npu.get("weight_bits", 0) if npu else 0,
        "npu_weight_memory_bits": npu.get("weight_memory_bits", 0) if npu else 0,
        "adders": totals["adders"],
        "register_bits": totals["register_bits"],
        "line_buffer_bits": totals["line_buffer_bits"],
        "nonzero_weights": totals["nonzero_weights"],
        "max_comb_adder_levels": totals["max_comb_adder_levels"],
        "layers": [
            {
                "name": l.get("layer"),
                "module": l.get("module"),
                "kind": l.get("kind"),
                "input_shape": l.get("input_shape"),
                "output_shape": l.get("output_shape"),
                "nonzero_weights": l.get("nonzero_weights", 0),
                "adders": l.get("adders", 0),
                "register_bits": l.get("register_bits", 0),
                "line_buffer_bits": l.get("line_buffer_bits", 0),
                "pipeline_stages": l.get("pipeline_stages", 0),
                "comb_adder_levels": l.get("comb_adder_levels", 0),
                **{k: l[k] for k in ("kernel", "stride", "padding", "groups", "fifo_depths", "lanes",
                                     "multicycle_cycles", "input_interval_cycles", "input_rows",
                                     "output_rows") if k in l},
                "pixels_per_cycle": _output_rate(l, pipeline_cycles),
                **({"lanes": _built_lanes(l), "lanes_requested": l["lanes"]} if l.get("kind") == "npu" else {}),
            }
            for l in layers
        ],
    }


def _built_lanes(npu_layer: dict) -> int:
    """The NPU's multipliers as built: lane_organisation's Lc x Lk for the lanes asked for."""
    from hashiflex.passes.to_hw.npu import lane_organisation

    (k,), (n,) = npu_layer["input_shape"], npu_layer["output_shape"]
    lc, lk = lane_organisation(k, n, npu_layer["lanes"])
    return lc * lk


def _output_rate(layer: dict, cycles_per_image: int) -> float:
    """A layer's output pixels per cycle, averaged over an image (its lanes are the peak)."""
    shape = layer.get("output_shape") or [1]
    pixels = shape[1] * shape[2] if len(shape) == 3 else 1
    return pixels / cycles_per_image


def top_ports(module, top: str) -> list[dict]:
    """The top's ports as the SystemVerilog names them, in order (for the harness)."""
    from xdsl.dialects import hw

    from hashiflex.backends.verilator import ports_of

    for op in module.ops:
        if isinstance(op, hw.HWModuleOp) and op.sym_name.data == top:
            return [{"name": p.name, "width": p.width, "dir": p.direction} for p in ports_of(op)]
    raise DesignError(f"no top module '{top}' in the hw IR")
