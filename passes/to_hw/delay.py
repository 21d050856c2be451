"""
The delay model that places pipeline registers (timing-driven pipelining, issue 9).

`compile --clock-mhz F` is a target: a stage of an adder tree gets as many adder levels as
fit in the period 1000/F ns at Nangate45 typical, so a 400 MHz build needs fewer registers
than a 1000 MHz one; `--levels-per-stage` overrides the model with a fixed level count.

Where the numbers come from: Yosys + ABC runs (pyosys 0.70, delay-driven mapping to the
Nangate45 typical liberty, 1.10 V, 25 C), benchmarks/calibrate_cell_model.py on branch
`synth` (2026-12-03): registered trees of 2**L-input adders of W-bit operands, L = 1..4,
W = 8..32; the table is the measured register-output to register-input delay including
the enable multiplexer. Flip-flop clock-to-Q and setup are DFF_X1's from the liberty.

Po2 trees, recalibrated: the calibration trees added W-bit operands whose every bit is
live. In a Po2 tree most operands are shifted (their low bits are constant zeros, which
ABC folds), so the carry chain of an adder is its width minus the constant-zero low bits
of its operands (`Sig.zeros`): the model is indexed by that *carry width*, not by the
adder's width. Indexed by the full width (and taking the worse of table and plane) the
previous model planned one level per stage for tiny_cnn's 17-22-bit adders and doubled its
registers (47,097 -> ~92,300 bits), although those trees measure 1046-1204 MHz at two
levels per stage and about 990 MHz at three (`hashiflex synth`, docs/synthesis.md). Two
calibrations of the factor between this table and a real layer's stage followed: 0.82
(fitted on the ~990 MHz of three-level stages; it allowed four levels in `pw_0`, which
measured 910 MHz), then 0.92 (fitted on that `pw_0` alone).

The table is not the delay of a real layer's stage: ABC maps a whole layer's thousands of
trees against one target, shifted operands fold, and the calibration trees' delay barely
grows from two to three levels (0.76 -> 0.85 ns at 16 bits) where a layer's does. So the
Po2 trees' delay is the table times a factor per level count, fitted on measured stages of
tiny_cnn (`PO2_STAGE_CALIBRATION`): each point is a module compiled at 1000 MHz, the
model's worst stage in it (levels, carry width: traced from the builder's adders, the
widest carry on the path) and the module's measured register-to-register logic (ABC
`stime`, without clock-to-Q and setup; `hashiflex synth`, ABC target 747 ps, 2026-12-03,
benchmarks/results/synth.json). The module's longest path may be other logic than the
tree, so each ratio is an upper bound of its tree's: the factor for L levels is the worst
ratio of the points with at most L levels (at least 2), so the model bounds every measured
stage from above. At 1000 MHz it plans 3 levels up to 11-bit carries, 2 up to 17, 1 beyond.
What it corrects: with the one factor 0.92 the model allowed three levels up to 17-bit
carries, and `down_0` (3 levels, 14-, 17-, 18-bit adders) measured 1.002 ns of logic,
`head_0` (17-, 19-, 20-bit) 1.085 ns, where the model planned at most 0.85 ns: 868 and
809 MHz. The points were added in three rounds (compile, `hashiflex synth`, add the new
worst stages; docs/synthesis.md has the table): the last round measures every tiny_cnn
module >= 1001 MHz. ABC's mapping of a 2,000-adder layer moves by about 5 % between
placements; two-level stages measured 0.84-1.02 of the table. The NPU
(full-width products) uses the table as measured (`po2_tree=False`).

Between table widths the delay is interpolated linearly; beyond the table (more than four
levels or wider than 32 bits) the least-squares plane through it is used.
"""

from __future__ import annotations

# The measured (levels, width) -> ns table and the least-squares plane through it
# (delay = A + B * levels + C * width): one table, kept with the cell model.
from hashiflex.backends.cell_model import ADDER_TREE_DELAY_NS, DELAY_FIT_NS

CLK_TO_Q_NS = 0.1109
SETUP_NS = 0.0398
REGISTER_OVERHEAD_NS = CLK_TO_Q_NS + SETUP_NS

_WIDTHS = (8, 12, 16, 20, 24, 32)
_MAX_TABLE_LEVELS = 4
#: Calibration points of the Po2 trees (module docstring): (module, levels, carry width,
#: measured ns). Measured: `hashiflex synth` of tiny_cnn compiled at 1000 MHz on branch
#: npu9 (2026-12-03; ABC `stime` delay = critical_path_ns - 0.151 of
#: benchmarks/results/synth.json); the (levels, carry width) of the model's worst stage in
#: each module by tracing the builder's adders. The 4-level `pw_0` point is the first
#: compile of branch regs (four levels where carries were <= 13 bits: 1.100 ns, 910 MHz).
PO2_STAGE_CALIBRATION: tuple[tuple[str, int, int, float], ...] = (
    ("stem_0", 2, 18, 0.745),   # table 0.847: ratio 0.88
    ("pw_0", 3, 16, 0.768),     # table 0.847: 0.91
    ("dw_0", 3, 16, 0.838),     # table 0.847: 0.99
    ("down_0", 3, 17, 1.002),   # table 0.899: 1.11
    ("head_0", 3, 17, 1.085),   # table 0.899: 1.21
    ("pw_0", 4, 13, 0.950),     # table 1.029: 0.92
    # tiny_cnn recompiled with the factors of the points above (0.88 / 1.21: 2 levels up to
    # 20-bit carries, 3 up to 11), `hashiflex synth` at 1000 MHz, 2026-12-03 (branch delay9):
    ("stem_0", 2, 18, 0.743),   # table 0.847: 0.88
    ("down_0", 2, 20, 0.790),   # table 0.937: 0.84
    ("dw_0", 2, 17, 0.757),     # table 0.801: 0.94
    ("pw_0", 2, 18, 0.742),     # table 0.847: 0.88
    ("head_0", 2, 20, 0.866),   # table 0.937: 0.92
    # recompiled with the points above (0.945 / 1.21: 2 levels up to 19-bit carries): head_0
    # 0.913 ns, a 2-level stage `{_746} + _747` (17, 18 bits) then + a 20-bit sum into a
    # 20-bit adder (ABC `stime -p`); its carry width is at most 19 (the most the model
    # allowed two levels; head_0 has 20-bit two-level results at 13-19), taken as 19, so
    # the ratio is a lower bound. down_0 measured 0.818 ns in that run.
    ("head_0", 2, 19, 0.913),   # table 0.892: 1.02
)


def _table(levels: int, width: int) -> float:
    """The measured delay, the worst up to `levels` (ABC's mapping is not monotonic in L),
    linearly interpolated between the measured widths."""
    def at(w: int) -> float:
        return max(ADDER_TREE_DELAY_NS[(l, w)] for l in range(1, levels + 1))

    width = max(width, _WIDTHS[0])
    hi = next(w for w in _WIDTHS if w >= width)
    if hi == width:
        return at(hi)
    lo = _WIDTHS[_WIDTHS.index(hi) - 1]
    return at(lo) + (at(hi) - at(lo)) * (width - lo) / (hi - lo)


def po2_tree_factor(levels: int) -> float:
    """Measured Po2 stages of at most `levels` (>= 2) levels over the table: the worst ratio
    of `PO2_STAGE_CALIBRATION` (1.02 for one or two levels, 1.21 from three)."""
    return max(ns / _table(l, w) for _, l, w, ns in PO2_STAGE_CALIBRATION if l <= max(levels, 2))


def adder_path_ns(levels: int, carry_width: int, po2_tree: bool = True) -> float:
    """Combinational delay of `levels` adder levels whose longest carry chain is
    `carry_width` bits (an adder's width minus its operands' constant-zero low bits);
    `po2_tree=False`: the calibration trees' own figure (full-width operands: the NPU)."""
    if levels <= 0:
        return 0.0
    factor = po2_tree_factor(levels) if po2_tree else 1.0
    if levels <= _MAX_TABLE_LEVELS and carry_width <= _WIDTHS[-1]:
        return factor * _table(levels, carry_width)
    a, b, c = DELAY_FIT_NS
    return factor * max(0.1, a + b * levels + c * carry_width)


#: One level of the NPU's weight-select multiplexer tree (inputs all registers; ABC
#: flattens it): fitted to tiny_cnn's unpipelined NPU (10 select levels, 8x8-bit multiply,
#: bias add: 1.32 ns register to register, `hashiflex synth`), minus the adder model's 4
#: levels at 16 bits. An estimate from one measurement.
MUX_LEVEL_NS = 0.006


def period_ns(clock_mhz: float) -> float:
    return 1000.0 / clock_mhz


def levels_per_stage(clock_mhz: float, carry_width: int, limit: int = 64) -> int:
    """The most adder levels with a `carry_width`-bit carry chain that fit between two
    registers at `clock_mhz` (at least 1)."""
    budget = period_ns(clock_mhz) - REGISTER_OVERHEAD_NS
    best = 1
    for levels in range(1, limit + 1):
        if adder_path_ns(levels, carry_width) > budget:
            break
        best = levels
    return best


def compare_select_levels_per_stage(clock_mhz: float, width: int) -> int:
    """Levels of compare (`width`-bit carry chain) + select (a mux) per stage (the NPU's
    argmax; at least 1)."""
    per_level = adder_path_ns(1, width, po2_tree=False) + MUX_LEVEL_NS
    budget = period_ns(clock_mhz) - REGISTER_OVERHEAD_NS
    return max(1, int(budget // per_level))
