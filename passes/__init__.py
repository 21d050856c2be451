"""
The passes of HaShiFlex, one file each, named as their `-p` name (with `_` for `-`).

`all_passes()` is the registry that `po2-opt` and the Python API use; a factory imports its
pass lazily so that `po2-opt --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    def canonicalize():
        from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass

        return Po2CanonicalizePass

    def unroll():
        from hashiflex.passes.po2_unroll import Po2UnrollPass

        return Po2UnrollPass

    def infer_widths():
        from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass

        return Po2InferWidthsPass

    def po2_cse():
        from hashiflex.passes.po2_cse import Po2CsePass

        return Po2CsePass

    def to_hw():
        from hashiflex.passes.po2_to_hw import Po2ToHwPass

        return Po2ToHwPass

    def cse():
        from xdsl.transforms.common_subexpression_elimination import (
            CommonSubexpressionElimination,
        )

        return CommonSubexpressionElimination

    def dce():
        from xdsl.transforms.dead_code_elimination import DeadCodeElimination

        return DeadCodeElimination

    return {
        "po2-canonicalize": canonicalize,
        "po2-unroll": unroll,
        "po2-infer-widths": infer_widths,
        "po2-cse": po2_cse,
        "po2-to-hw": to_hw,
        "cse": cse,
        "dce": dce,
    }
