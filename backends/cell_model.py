"""
A calibrated delay and area model of the hardware the compiler emits, at Nangate45 (FreePDK45,
typical corner: 1.10 V, 25 C) after Yosys + ABC with the delay-driven script of
hashiflex/synth.py. Pure numbers and arithmetic, no imports from the flow: the estimate in
report.json (hashiflex/estimate.py) uses it, and a timing-driven pipeliner can too ("how many
adder levels of this width fit in a clock period?").

Where the numbers come from (all our own synthesis runs, pyosys 0.70, 2026-12-03):
- Flip-flop timing and area: Nangate45 DFF_X1 as read from the liberty file's tables by
  hashiflex/liberty.py (middle slew/load entry, worst of rise/fall). Yosys maps every register
  of our RTL (synchronous reset, enable) to DFF_X1 plus a MUX2_X1 for the enable.
- Adder-tree delay and adder area: benchmarks/calibrate_cell_model.py, which synthesises
  registered trees of 2**L-input two-operand adders, L = 1..4 levels, W = 8..32 bits
  (results in benchmarks/results/cell_model_calibration.json). The delay is ABC's fastest
  mapping (target 1 ps): what a pipeliner can count on.
- Whole-module area and register retention: fitted on the 9 modules of tiny_cnn compiled at
  1000 MHz (`hashiflex synth`; benchmarks/bench_synth.py writes the same figures to
  benchmarks/results/synth.json). MobileNetV2 modules are out of sample: bench_synth.py
  states the error there.
"""

from __future__ import annotations

# --- Flip-flops (DFF_X1, liberty tables) -----------------------------------------------------
CLK_TO_Q_NS = 0.1109
SETUP_NS = 0.0398
REGISTER_OVERHEAD_NS = CLK_TO_Q_NS + SETUP_NS  # add to any register-to-register logic delay
FF_AREA_UM2 = 4.522  # DFF_X1
ENABLE_MUX_AREA_UM2 = 1.862  # MUX2_X1 in front of each enabled flip-flop

# --- Adder trees (calibrate_cell_model.py, fastest mapping) -----------------------------------
# Combinational delay (ns) from register outputs through L adder levels of width W and the
# enable multiplexer to the register inputs, measured. ABC's mapping is not monotonic in
# (L, W) (e.g. L=2,W=32 measured slower than L=3,W=32); the smooth fit below is what the
# estimate uses.
ADDER_TREE_DELAY_NS: dict[tuple[int, int], float] = {
    (1, 8): 0.295, (1, 12): 0.394, (1, 16): 0.510, (1, 20): 0.604, (1, 24): 0.716, (1, 32): 0.913,
    (2, 8): 0.536, (2, 12): 0.607, (2, 16): 0.756, (2, 20): 0.937, (2, 24): 1.119, (2, 32): 1.518,
    (3, 8): 0.620, (3, 12): 0.712, (3, 16): 0.847, (3, 20): 1.055, (3, 24): 1.156, (3, 32): 1.443,
    (4, 8): 0.857, (4, 12): 1.002, (4, 16): 1.109, (4, 20): 1.288, (4, 24): 1.343, (4, 32): 1.708,
}
# Least-squares plane through the table: delay = A + B * levels + C * width (max error 0.24 ns,
# rms 0.08 ns over the 24 points).
DELAY_FIT_NS = (-0.2233, 0.1998, 0.03442)

# Adder logic area per adder output bit (um^2): the median over the 24 trees of (area - flip-flop
# area - enable-mux area) / adder bits, mapped at a relaxed 1 GHz target (5.32) and at the
# fastest target (5.67).
ADDER_AREA_PER_BIT_UM2 = 5.32
ADDER_AREA_PER_BIT_FAST_UM2 = 5.67

# --- Whole modules (fitted on tiny_cnn, see the module docstring) -----------------------------
# Least squares over tiny_cnn's 9 modules at 1000 MHz (Nangate45 typical, ABC target 747 ps):
#   area = 1.28 um^2 * adder output bits + 8.23 um^2 * register bits   (both from the hw IR)
# (per-module error -8 % .. +16 %). An adder bit of the compiled layers costs far less than a
# full-width adder's 5.3 um^2 above: Po2 operands are shifted, so their low bits are constant
# and their high bits sign copies that synthesis folds. A register bit carries its flip-flop
# (kept: 81 % of the bits the compiler counts; Yosys drops constant and duplicate ones), its
# enable multiplexer and the valid/control logic around it.
MODULE_AREA_PER_ADDER_BIT_UM2 = 1.28
MODULE_AREA_PER_REGISTER_BIT_UM2 = 8.23
REGISTER_RETENTION = 0.81  # flip-flops Yosys keeps per register bit of the hw IR


def adder_tree_delay_ns(levels: int, width: int) -> float:
    """Combinational delay of `levels` adder levels of `width` bits (fit to the measurements;
    0 for no levels)."""
    if levels <= 0:
        return 0.0
    a, b, c = DELAY_FIT_NS
    return max(0.1, a + b * levels + c * width)


def register_to_register_ns(levels: int, width: int) -> float:
    """Clock period needed by a pipeline stage of `levels` adder levels of `width` bits."""
    return REGISTER_OVERHEAD_NS + adder_tree_delay_ns(levels, width)


def max_levels_for_period(period_ns: float, width: int, limit: int = 16) -> int:
    """The most adder levels of `width` bits whose stage fits in `period_ns` (at least 1)."""
    best = 1
    for levels in range(1, limit + 1):
        if register_to_register_ns(levels, width) <= period_ns:
            best = levels
    return best


def module_area_um2(adder_bits: int, register_bits: int) -> float:
    """Area of a compiled module from its adder output bits and register bits (hw IR)."""
    return (adder_bits * MODULE_AREA_PER_ADDER_BIT_UM2
            + register_bits * MODULE_AREA_PER_REGISTER_BIT_UM2)


def multiplier_levels(weight_bits: int) -> int:
    """Adder levels of a `weight_bits`-bit constant-free multiplier's partial-product tree."""
    return max(1, (max(1, weight_bits) - 1).bit_length())
