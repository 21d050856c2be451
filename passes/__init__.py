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
#: options of po2-cse (`max_depth`; the pass can be left out) and of po2-to-hw
#: (`levels_per_stage`, `npu_lanes`, `top_name`) are the user's.
HARDENING_PIPELINE: tuple[str, ...] = (
    "po2-unroll",
    "po2-canonicalize",
    "po2-cse",
    "po2-infer-widths",
    "po2-to-hw",
)


def _pipeline_options(cse: bool, cse_max_depth: int, to_hw_options: dict) -> dict[str, dict]:
    """The options of each pass of the pipeline, by pass name; po2-cse absent if not `cse`."""
    options: dict[str, dict] = {name: {} for name in HARDENING_PIPELINE}
    if cse:
        options["po2-cse"] = {"max_depth": cse_max_depth}
    else:
        del options["po2-cse"]
    options["po2-to-hw"] = dict(to_hw_options)
    return options


def hardening_pipeline(*, cse: bool = True, cse_max_depth: int = 2,
                       **to_hw_options) -> list[ModulePass]:
    """The passes of HARDENING_PIPELINE (po2-cse only if `cse`), with their options."""
    registry = all_passes()
    return [registry[name]()(**opts)
            for name, opts in _pipeline_options(cse, cse_max_depth, to_hw_options).items()]


def hardening_pipeline_spec(*, cse: bool = True, cse_max_depth: int = 2, **to_hw_options) -> str:
    """HARDENING_PIPELINE as po2-opt's `-p` argument (`...,po2-to-hw{levels_per_stage=3}`)."""
    names = []
    for name, opts in _pipeline_options(cse, cse_max_depth, to_hw_options).items():
        text = " ".join(f"{key}={value}" for key, value in opts.items())
        names.append(f"{name}{{{text}}}" if text else name)
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
