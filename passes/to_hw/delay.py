"""
The delay model that places pipeline registers (timing-driven pipelining, issue 9).

`compile --clock-mhz F` is a target: a stage of the datapath gets as many adder levels as
fit in the period 1000/F ns at Nangate45 typical, so a 400 MHz build needs fewer registers
than a 1000 MHz one; `--levels-per-stage` overrides the model with a fixed level count.

Where the numbers come from: our own Yosys + ABC runs (pyosys 0.70, delay-driven mapping to
the Nangate45 typical liberty, 1.10 V, 25 C), made by the engineer `synth` on 2026-12-03 with
benchmarks/calibrate_cell_model.py on branch `synth` (registered trees of 2**L-input adders,
L = 1..4, W = 8..32 bits; backends/cell_model.py there). The table is the measured
register-output to register-input delay including the enable multiplexer; the plane is the
least-squares fit through it (max error 0.24 ns). The model takes the larger of the two, so
a stage is never planned shorter than what was measured. Flip-flop clock-to-Q and setup are
DFF_X1's from the liberty tables.

A chain of adders costs roughly `B` per level plus `C` per bit of the widest adder (the carries
of successive levels overlap), hence `adder_path_ns(levels, width)`. A level of a wide
multiplexer tree whose inputs are all registers (the NPU's weight select) costs little:
ABC flattens it; `MUX_LEVEL_NS` is fitted to one measurement, tiny_cnn's unpipelined NPU
(10 select levels, 8x8-bit multiply, bias add: 1.32 ns register to register at Nangate45
typical, `hashiflex synth` on branch synth), minus the adder model's 4 levels at 16 bits.
"""

from __future__ import annotations

CLK_TO_Q_NS = 0.1109
SETUP_NS = 0.0398
REGISTER_OVERHEAD_NS = CLK_TO_Q_NS + SETUP_NS

#: (levels, width) -> ns, measured (see the module docstring).
ADDER_TREE_DELAY_NS: dict[tuple[int, int], float] = {
    (1, 8): 0.295, (1, 12): 0.394, (1, 16): 0.510, (1, 20): 0.604, (1, 24): 0.716, (1, 32): 0.913,
    (2, 8): 0.536, (2, 12): 0.607, (2, 16): 0.756, (2, 20): 0.937, (2, 24): 1.119, (2, 32): 1.518,
    (3, 8): 0.620, (3, 12): 0.712, (3, 16): 0.847, (3, 20): 1.055, (3, 24): 1.156, (3, 32): 1.443,
    (4, 8): 0.857, (4, 12): 1.002, (4, 16): 1.109, (4, 20): 1.288, (4, 24): 1.343, (4, 32): 1.708,
}
#: delay = A + B * levels + C * width (ns), the least-squares plane through the table.
DELAY_FIT_NS = (-0.2233, 0.1998, 0.03442)
MUX_LEVEL_NS = 0.006  # (1.32 - 0.1507 - 1.109) / 10, see the docstring
_WIDTHS = (8, 12, 16, 20, 24, 32)


def adder_path_ns(levels: int, width: int) -> float:
    """Combinational delay of `levels` adder levels whose widest adder has `width` bits."""
    if levels <= 0:
        return 0.0
    a, b, c = DELAY_FIT_NS
    fit = max(0.1, a + b * levels + c * width)
    if levels <= 4 and width <= _WIDTHS[-1]:
        measured_width = next(w for w in _WIDTHS if w >= width)
        # ABC's mapping is not monotonic in L: take the worst measured up to `levels`.
        measured = max(ADDER_TREE_DELAY_NS[(l, measured_width)] for l in range(1, levels + 1))
        return max(fit, measured)
    return fit


def period_ns(clock_mhz: float) -> float:
    return 1000.0 / clock_mhz


def levels_per_stage(clock_mhz: float, width: int, limit: int = 32) -> int:
    """The most adder levels of `width` bits between two registers at `clock_mhz` (>= 1)."""
    budget = period_ns(clock_mhz) - REGISTER_OVERHEAD_NS
    best = 1
    for levels in range(1, limit + 1):
        if adder_path_ns(levels, width) <= budget:
            best = levels
        else:
            break
    return best


def mux_levels_per_stage(clock_mhz: float, extra_ns: float = 0.0) -> int:
    """Multiplexer levels that fit in a stage besides `extra_ns` of other logic (>= 1)."""
    budget = period_ns(clock_mhz) - REGISTER_OVERHEAD_NS - extra_ns
    return max(1, int(budget // MUX_LEVEL_NS))


def compare_select_levels_per_stage(clock_mhz: float, width: int) -> int:
    """Levels of compare (`width`-bit carry chain) + select (a mux) per stage (argmax)."""
    per_level = adder_path_ns(1, width) + MUX_LEVEL_NS
    budget = period_ns(clock_mhz) - REGISTER_OVERHEAD_NS
    return max(1, int(budget // per_level))
