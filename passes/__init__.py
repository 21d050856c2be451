"""
The passes of HaShiFlex, one file each, named as their `-p` name (with `_` for `-`).

`all_passes()` is the registry that `po2-opt` and the Python API use; a factory imports its
pass lazily so that `po2-opt --help` stays fast. `HARDENING_PIPELINE` is the order in which
they take a layer-level po2 network to hw/comb/seq, written once: `api.lower_to_hw` runs it
on a whole module, hashiflex/flow.py one layer at a time, and `po2-opt --help` shows it.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


#: The hardening pipeline, layer-level po2 IR to hw/comb/seq: pass names, in order. The
#: options of the last (`levels_per_stage`, `npu_lanes`, `top_name`) are the user's.
HARDENING_PIPELINE: tuple[str, ...] = (
    "po2-unroll",
    "po2-canonicalize",
    "po2-infer-widths",
    "po2-to-hw",
)


def hardening_pipeline(**to_hw_options) -> list[ModulePass]:
    """The passes of HARDENING_PIPELINE, `to_hw_options` given to po2-to-hw."""
    registry = all_passes()
    return [registry[name]()(**(to_hw_options if name == "po2-to-hw" else {}))
            for name in HARDENING_PIPELINE]


def hardening_pipeline_spec(**to_hw_options) -> str:
    """HARDENING_PIPELINE as po2-opt's `-p` argument (`po2-to-hw{levels_per_stage=3}`)."""
    options = " ".join(f"{key}={value}" for key, value in to_hw_options.items())
    names = list(HARDENING_PIPELINE)
    if options:
        names[-1] += f"{{{options}}}"
    return ",".join(names)


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
        "po2-to-hw": to_hw,
        "cse": cse,
        "dce": dce,
    }
