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
levels per stage and about 990 MHz at three (`hashiflex synth`, docs/synthesis.md). The
table itself is pessimistic for real layer trees (random full-width operands, every path
sensitised): `PO2_TREE_FACTOR` scales it to our measurement of a real layer: tiny_cnn's
pw_0 compiled with four adder levels per stage (operand carry widths <= 13 bits; table
1.03 ns) measured 1.100 ns register to register (910 MHz, `hashiflex synth`, 2026-12-03),
i.e. 0.95 ns of logic: 0.92 of the table. (With 0.82, fitted first to the ~990 MHz of
three-level stages, the model allowed that four-level stage and missed 1000 MHz.) The NPU (full-width products) uses the table as
measured (`po2_tree=False`).

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
#: Measured Po2 layer trees over the calibration table (see the module docstring).
PO2_TREE_FACTOR = 0.92


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


def adder_path_ns(levels: int, carry_width: int, po2_tree: bool = True) -> float:
    """Combinational delay of `levels` adder levels whose longest carry chain is
    `carry_width` bits (an adder's width minus its operands' constant-zero low bits);
    `po2_tree=False`: the calibration trees' own figure (full-width operands: the NPU)."""
    if levels <= 0:
        return 0.0
    factor = PO2_TREE_FACTOR if po2_tree else 1.0
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
