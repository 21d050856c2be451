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

Latency (per layer, reported as `pipeline_stages`): cycles from the input handshake of the
pixel that completes an output to that output's `out_valid` (see each layer's module).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from hashiflex.passes.to_hw import LoweringError, NetworkLowering


@dataclass(frozen=True)
class Po2ToHwPass(ModulePass):
    """Lower the unrolled po2 network to hw/comb/seq: one module per layer, NPU, top."""

    name = "po2-to-hw"

    #: 0: pipeline registers placed by the delay model for `clock_mhz` (to_hw/delay.py);
    #: N > 0: a register after every N adder levels (the manual override).
    levels_per_stage: int = 0
    top_name: str = ""
    npu_lanes: int = 0
    clock_mhz: float = 1000.0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        funcs = [f for f in op.ops if isinstance(f, func.FuncOp)]
        if len(funcs) != 1:
            raise LoweringError(f"po2-to-hw expects exactly one func.func, found {len(funcs)}")
        fn = funcs[0]
        modules = NetworkLowering(fn, self.levels_per_stage, self.npu_lanes, self.top_name,
                                  self.clock_mhz).build()
        fn.detach()
        fn.erase()
        for m in modules:
            op.body.block.add_op(m)
