"""
`po2-to-hw`: the unrolled po2 network becomes a streaming accelerator in hw/comb/seq.

Input: one `func.func` whose argument is the input image, holding layer-level po2 ops after
`po2-unroll` (`po2.unrolled_conv2d`, `po2.residual_add`, `po2.requant`, `po2.avgpool`,
`po2.flatten`, `po2.npu_linear`). Output: one `hw.module` per layer, the NPU module and the
top `<func>_top`, with the interfaces of docs/microarchitecture.md, bit exact with
docs/semantics.md. The func is erased.

The lowering itself lives in passes/to_hw/ (one module per layer kind, the one hw builder,
the stream timing analysis, the top); this pass is the whole-module loop over it
(`NetworkLowering.build`). The streaming flow (hashiflex/flow.py) runs the same loop one
layer at a time.

Option `pixels_per_cycle` P (default 1): the input takes P pixels of a row per beat (or,
P = k*W, k whole rows) and every layer the lanes it needs (passes/to_hw/rates.py, docs/microarchitecture.md).

Latency (per layer, reported as `pipeline_stages`): cycles from the input handshake of the
pixel that completes an output to that output's `out_valid` (see each layer's module).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from hashiflex.dialects import po2
from hashiflex.passes.to_hw import LoweringError, NetworkLowering


@dataclass(frozen=True)
class Po2ToHwPass(ModulePass):
    """Lower the unrolled po2 network to hw/comb/seq: one module per layer, NPU, top."""

    name = "po2-to-hw"

    #: N > 0: a register after every N adder levels; 0: registers placed by the delay model
    #: of Nangate45 for `clock_mhz` (to_hw/delay.py), what `hashiflex compile` does.
    levels_per_stage: int = 2
    clock_mhz: float = 1000.0
    top_name: str = ""
    npu_lanes: int = 0
    pixels_per_cycle: int = 1  # input pixels per beat (passes/to_hw/rates.py)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            fn = po2.network_func(op)
        except ValueError as err:
            raise LoweringError(f"po2-to-hw: {err}") from None
        modules = NetworkLowering(fn, self.levels_per_stage, self.npu_lanes, self.top_name,
                                  self.pixels_per_cycle, self.clock_mhz).build()
        fn.detach()
        fn.erase()
        for m in modules:
            op.body.block.add_op(m)
