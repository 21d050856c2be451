"""
Estimated area and fmax per module, from the calibrated cell model (backends/cell_model.py)
and what the compiler knows about each module: its adders' widths (counted on the hw IR), its
register bits and its adder levels per pipeline stage (from report.json). Written into
report.json by `hashiflex compile` as a `synth` section marked `"estimated": true`; `hashiflex
synth` replaces it module by module with measured numbers (rows with `"estimated": false`).

Why: synthesising a large network takes CPU-days (MobileNetV2 w1.0 is ~1,300 layers' worth of
a 70-second conv); the estimate gives the order of magnitude at compile time, and
benchmarks/bench_synth.py states its error against the modules that were synthesised.
"""

from __future__ import annotations

from hashiflex.backends import cell_model

LIBRARY = "NangateOpenCellLibrary"
CORNER = "typical"


def estimate_module(module: str, features: dict | None, report: dict) -> dict:
    """One module's estimated row (same fields as a measured one; cells unknown)."""
    layer = next((l for l in report.get("layers", []) if l.get("module") == module), None)
    features = features or {}
    register_bits = features.get("register_bits")
    if register_bits is None:
        register_bits = (layer or {}).get("register_bits", 0)
    adder_bits = features.get("adder_bits", 0)
    width = features.get("max_adder_width", 0)
    if (layer or {}).get("kind") == "npu":
        # Unpipelined multiply-accumulate: the multiplier's partial-product tree, then the
        # accumulator, at the accumulator's width.
        levels = cell_model.multiplier_levels(report.get("npu_weight_bits", 8)) + 1
    else:
        # The top has no adder levels in the report: one level of its widest adder.
        levels = (layer or {}).get("comb_adder_levels") or (1 if width else 0)
    path_ns = cell_model.register_to_register_ns(levels, width)
    flip_flops = round(register_bits * cell_model.REGISTER_RETENTION)
    cycles = multicycle_cycles(layer)
    return {
        "module": module,
        "area_um2": round(cell_model.module_area_um2(adder_bits, register_bits), 1),
        "ff_area_um2": round(flip_flops * cell_model.FF_AREA_UM2, 1),
        "cells": None,
        "flip_flops": flip_flops,
        "critical_path_ns": round(path_ns, 4),
        "fmax_mhz": round(1000.0 * cycles / path_ns, 1),
        **({"multicycle_cycles": cycles} if cycles > 1 else {}),
        "estimated": True,
    }


def multicycle_cycles(layer: dict | None) -> int:
    """N for a layer whose adder trees are multicycle paths (rtl/constraints.sdc gives them
    N periods; passes/to_hw/multicycle.py), else 1. Its longest path is such a tree, so the
    module's fmax is N / path (its single-cycle paths, counters and valid bits, are taken
    to be shorter than path / N), and `critical_path_ns` stays the whole path."""
    return int((layer or {}).get("multicycle_cycles", 1))


def estimated_section(report: dict, modules: list[str], features: dict[str, dict]) -> dict:
    """
    The `synth` section of a freshly compiled design: every module estimated from its
    `features` (hashiflex/flow.module_features), which each row keeps for `hashiflex synth`
    (it re-estimates the modules it does not synthesise; the hw IR is optional).
    """
    rows = []
    for m in modules:
        row = estimate_module(m, features.get(m), report)
        if m in features:
            row["features"] = features[m]
        rows.append(row)
    slowest = min(rows, key=lambda r: r["fmax_mhz"])
    return {
        "library": LIBRARY,
        "corner": CORNER,
        "estimated": True,
        "model": "backends/cell_model.py (calibrated on Nangate45 typical, Yosys + ABC)",
        "area_um2": round(sum(r["area_um2"] for r in rows), 1),
        "fmax_mhz": slowest["fmax_mhz"],
        "slowest_module": slowest["module"],
        "modules_measured": 0,
        "modules": rows,
    }
