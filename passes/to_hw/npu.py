"""
The reprogrammable NPU classifier (`po2.npu_linear`) as an `hw.module` of hw/comb/seq.

Contract (docs/semantics.md, "NPU linear"), bit exact:

    logits[n] = bias[n] + sum_k W[n, k] * x[k]        (exact integers)
    class     = the lowest n with logits[n] == max(logits)

Unlike the frozen layers this is a real MAC array with a writable weight memory, so that a
deployed chip can be fine-tuned by loading new classifier weights. The design:

Lane organisation
    `lanes` multipliers are arranged as `Lc` class lanes x `Lk` feature lanes
    (`lane_organisation`). One image is processed in `G = ceil(N/Lc)` class groups, each in
    `C = ceil(K/Lk)` feature chunks, group outer, chunk inner: in MAC step `(g, c)` lane
    `(i, j)` multiplies `W[g*Lc + i, c*Lk + j]` by `x[c*Lk + j]`. Per class lane an adder
    tree sums the `Lk` products (plus the bias on the first chunk) into a registered partial
    sum, and an accumulator adds up the `C` partial sums; on the last chunk the result is
    written into the logit register of class `g*Lc + i`. Out-of-range classes / features
    (padding of the last group / chunk) have constant zero weights and cost nothing.
    The factorisation minimises `G*C` for the given lane budget (ties: fewer multipliers,
    then fewer class lanes); `lanes = N*K` is fully parallel (`Lc = N`, `Lk = K`, one step).

Weight memory
    Two banks of `N*K` weight words (`weight_bits`) and `N` bias words (`bias_bits`), each a
    `seq.compreg` with a write enable (a mux), reset to `init_weights` / `init_bias` (zero if
    not given). Per lane, a mux tree indexed by (chunk counter, group counter, image bank)
    selects the weight; the feature is selected from the input register by the chunk
    counter. Products are exact: operands extended to `weight_bits + in_bits` bits (sign- or
    zero-extension of x per `in_signed`), then sign-extended to `logit_bits`; sums are in
    `logit_bits`, which holds the worst case (`npu_logit_bits`), so nothing ever overflows.

Timing (cycle numbers relative to the cycle `a` in which a vector is accepted)
    a+1 .. a+M      MAC steps (stage S0: select, multiply, adder tree -> partial sum regs),
                    M = G*C = `npu_cycles_per_image`
    a+2 .. a+M+1    stage S1: accumulate, write back the logits of a finished group
    a+M+2           argmax comparator tree over the logit registers (registered every
                    `argmax_levels` from the delay model, else ARGMAX_LEVELS_PER_STAGE levels
                    when N >= 16: D extra cycles; MAC registers add `npu_mac_stages`)
    a+M+3+D         `out_valid` pulses, with `out_class` and `out_logits` (all registered)
    The latency is `npu_latency = M + 3 + D` (+ the MAC registers); the initiation
    interval is M (no fixed overhead): the next vector is accepted in the cycle of the
    last MAC step of the current one, and everything after S0 is a free-running pipeline
    without back pressure. Under a clock target the delay model (`npu_mac_stages`) puts
    registers into S0: after the selection, after the multiply, then inside the products'
    adder tree (`_pipelined_sum`), each one cycle more latency, with S1's control signals
    delayed to match.

Flow control (stall rule)
    One input register holds the vector being processed (no separate pending slot).
    A vector is accepted in every cycle with `in_valid && !stall`, where
    `stall = in_valid && busy && !last_step`: the NPU can take a vector when it is idle or
    in the last MAC step of the current image. `busy`/`last_step` are registered state, so
    `stall` depends combinationally only on `in_valid` (no loop through the global stall).
    Vectors that arrive at least M cycles apart (`lanes >= default_lanes(K, N, P)` with a
    pipeline of P >= M cycles per image) are therefore never stalled.

Banks and swap (swap rule)
    `active` is the bank that new images use; writes (`we`, `waddr`, `wdata`) always go to
    the shadow bank `!active` (as registered at the start of the write's cycle). Word
    address `k*N + n` is `W[n, k]` (low `weight_bits` of `wdata`), `N*K + n` is `bias[n]`;
    other addresses are ignored. The NPU counts accepted vectors since reset (`count`, 32
    bits; the vector accepted when `count == i` is image i). A `swap` pulse samples
    `swap_at`, the index of the first image that must use the new bank, and makes the swap
    pending; a swap pulse while one is pending replaces it (its `swap_at` wins, still one
    flip). When a vector is accepted with a swap pending and `count - swap_at >= 0` (32-bit
    wrapping difference read as signed, so a `swap_at` already passed applies to the next
    accepted image) the bank flips for that image and the swap is no longer pending. A
    pulse in the same cycle as the acceptance of image `swap_at` applies to that image.
    Each image latches its bank on acceptance and uses it for all its MAC steps, so every
    image is classified entirely with one bank. Because the old active bank is read only by
    images accepted before the flip, and the next image is accepted only in the last MAC
    step of the previous one, a write never corrupts an image in the NPU. Writes made
    between a swap pulse and the flip go into the bank about to become active (they are
    seen by images >= swap_at); the host protocol is to load, swap, and load again only
    after the swap took effect.

`sv.namehint` attributes name the weight banks (`bank{b}_w_n{n}_k{k}`, `bank{b}_b_n{n}`),
the input register, counters, partial sums (`psum_{i}`), accumulators (`acc_{i}`), logits
(`logit_{n}`) and outputs, so that the SystemVerilog is readable.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import hw, seq
from xdsl.ir import SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format, npu_logit_bits, type_range
from hashiflex.passes.to_hw import delay
from hashiflex.passes.to_hw.builder import DONT_CARE, HwBuilder, int_type, width_of
from hashiflex.passes.to_hw.layer import LayerHw, LayerOptions, ModuleShell, act_type
from hashiflex.passes.to_hw.report import REPORT_ATTR, counted_resources, to_attr

__all__ = [
    "ARGMAX_LEVELS_PER_STAGE",
    "ARGMAX_PIPELINE_MIN_CLASSES",
    "COUNT_BITS",
    "NpuPorts",
    "build_npu_module",
    "default_lanes",
    "lower",
    "lane_organisation",
    "npu_addr_bits",
    "npu_argmax_stages",
    "npu_class_bits",
    "npu_cycles_per_image",
    "npu_latency",
    "npu_mac_stages",
]

#: Width of the accepted-vector counter and of `swap_at`.
COUNT_BITS = 32
#: Comparator levels between argmax pipeline registers (when pipelined).
ARGMAX_LEVELS_PER_STAGE = 2
#: The argmax tree is pipelined from this many classes on.
ARGMAX_PIPELINE_MIN_CLASSES = 16


# ---------------------------------------------------------------------------------------
# Sizing
# ---------------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def lane_organisation(K: int, N: int, lanes: int) -> tuple[int, int]:
    """
    `(Lc, Lk)`: class lanes x feature lanes (Lc*Lk <= lanes) minimising the MAC steps
    `ceil(N/Lc) * ceil(K/Lk)`; ties go to fewer multipliers, then fewer class lanes.
    Each factor is shrunk to the smallest value giving the same number of groups/chunks.
    """
    if K < 1 or N < 1:
        raise ValueError(f"NPU needs K >= 1 and N >= 1, got K={K}, N={N}")
    if lanes < 1:
        raise ValueError(f"NPU needs at least one lane, got {lanes}")
    lanes = min(lanes, N * K)
    best: tuple[int, int, int, int] | None = None
    for lc in range(1, min(N, lanes) + 1):
        lk = min(K, lanes // lc)
        groups, chunks = _ceil_div(N, lc), _ceil_div(K, lk)
        lc_s, lk_s = _ceil_div(N, groups), _ceil_div(K, chunks)
        key = (groups * chunks, lc_s * lk_s, lc_s, lk_s)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2], best[3]


def npu_cycles_per_image(K: int, N: int, lanes: int) -> int:
    """
    Cycles per image (initiation interval) of the NPU: `ceil(N/Lc) * ceil(K/Lk)` MAC steps,
    no fixed overhead (the next vector is accepted during the last step; the pipeline after
    the MAC loop has no back pressure). `== ceil(N*K/lanes)` whenever the factorisation is
    perfect (e.g. lanes divides K, or is a multiple of K dividing N*K); `1` at `lanes = N*K`.
    """
    lc, lk = lane_organisation(K, N, lanes)
    return _ceil_div(N, lc) * _ceil_div(K, lk)


def npu_argmax_stages(N: int, argmax_levels: int | None = None) -> int:
    """
    Extra pipeline registers inside the argmax tree: with `argmax_levels` (compare/select
    levels per stage, from the delay model) a register after every that many levels; None:
    the fixed rule (none below 16 classes, else every ARGMAX_LEVELS_PER_STAGE levels).
    """
    levels = max(0, (N - 1).bit_length())
    if argmax_levels is not None:
        return max(0, _ceil_div(levels, max(1, argmax_levels)) - 1)
    if N < ARGMAX_PIPELINE_MIN_CLASSES or levels <= ARGMAX_LEVELS_PER_STAGE:
        return 0
    return _ceil_div(levels, ARGMAX_LEVELS_PER_STAGE) - 1


def npu_latency(K: int, N: int, lanes: int, mac_stages: int = 0,
                argmax_levels: int | None = None) -> int:
    """
    Cycles from the cycle a vector is accepted (`in_valid && !stall`) to the cycle its
    `out_valid` is high: M MAC steps + 1 (S1 accumulate/write back) + 1 (argmax + output
    register) + 1 (the accept cycle itself) + the argmax pipeline stages + the registers
    inside the MAC path (`npu_mac_stages`).
    """
    return npu_cycles_per_image(K, N, lanes) + 3 + npu_argmax_stages(N, argmax_levels) + mac_stages


def npu_mac_stages(K: int, N: int, lanes: int, in_bits: int, weight_bits: int,
                   logit_bits: int, clock_mhz: float | None, bias_bits: int = 0) -> int:
    """
    Registers inside stage S0 for a `clock_mhz` target (None: none, the unpipelined MAC):
    1 (between the weight/feature/bias selection and the multiply) when the delay model
    (delay.py) says select + multiply + adder tree do not fit in one period, 2 (also after
    the multiply) when multiply + adder tree alone do not either. The multiply and the
    tree are counted as adder levels of the product's width (the sum's upper bits are the
    product's sign copies). With two, the adder tree of the `Lk` products and the bias
    gets more registers (`2 + r`) when its levels do not fit in one period either: r
    registers split its levels evenly, each part as many levels as fit at the width of
    the tree's sums (the products' width plus a bit per level, at least the bias's plus
    one: the bias is added at full width).
    """
    if clock_mhz is None:
        return 0
    Lc, Lk = lane_organisation(K, N, lanes)
    G, C = _ceil_div(N, Lc), _ceil_div(K, Lk)
    select_levels = (G - 1).bit_length() + (C - 1).bit_length() + 1
    product_levels = max(1, (max(1, weight_bits) - 1).bit_length())
    tree_levels = max(1, Lk.bit_length())  # Lk products + the bias
    budget = delay.period_ns(clock_mhz) - delay.REGISTER_OVERHEAD_NS
    product_width = in_bits + weight_bits
    mac = delay.adder_path_ns(product_levels + tree_levels, product_width, po2_tree=False)
    if select_levels * delay.MUX_LEVEL_NS + mac <= budget:
        return 0
    if mac <= budget:
        return 1
    tree_width = max(product_width + tree_levels, bias_bits + 1)
    per_stage = 1
    while (per_stage < tree_levels
           and delay.adder_path_ns(per_stage + 1, tree_width, po2_tree=False) <= budget):
        per_stage += 1
    return 2 + _ceil_div(tree_levels, per_stage) - 1


def default_lanes(K: int, N: int, pipeline_cycles_per_image: int) -> int:
    """The smallest lane count whose cycles per image are <= the pipeline's."""
    p = max(1, int(pipeline_cycles_per_image))
    lo, hi = 1, N * K  # cycles(N*K) == 1 <= p
    while lo < hi:
        mid = (lo + hi) // 2
        if npu_cycles_per_image(K, N, mid) <= p:
            hi = mid
        else:
            lo = mid + 1
    return lo


def npu_addr_bits(K: int, N: int) -> int:
    """Width of `waddr`: holds word addresses 0 .. N*K + N - 1."""
    return max(1, (N * K + N - 1).bit_length())


def npu_class_bits(N: int) -> int:
    """Width of `out_class`: max(1, ceil(log2 N))."""
    return max(1, (N - 1).bit_length())


class NpuPorts:
    """Port names of the NPU module, in order (inputs, then outputs)."""

    INPUTS = ("clk", "rst", "in_valid", "in_data", "we", "waddr", "wdata", "swap", "swap_at")
    OUTPUTS = ("stall", "out_valid", "out_class", "out_logits")


# ---------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------


def _equals(b: HwBuilder, value: SSAValue, constant: int) -> SSAValue:
    """value == constant; a 1-bit counter is its own comparison (the bit or its inverse)."""
    if width_of(value) == 1:
        return value if constant & 1 else b.not_(value)
    return b.eq_const(value, constant)


#: Bits per block of the wrapped compare's block-parallel less-than (`_wrapped_not_before`).
COMPARE_BLOCK_BITS = 8


def _wrapped_not_before(b: HwBuilder, count: SSAValue, at: SSAValue) -> SSAValue:
    """
    `count - at >= 0` read as a signed wrapping difference, without a subtract's borrow
    chain: the difference's sign is `count[msb] ^ at[msb] ^ (count[msb-1:0] <u at[msb-1:0])`,
    and the unsigned less-than is computed in COMPARE_BLOCK_BITS-bit blocks in parallel
    (`lt` and `eq` per block; the result is the highest block's `lt` behind all higher
    blocks' `eq`). A 32-bit subtract (or a carry-select of two 16-bit halves, which ABC
    merges back into one chain) left ~0.95 ns of the NPU's 1 GHz cycle to the path from
    the `swap` port to the bank flip (`hashiflex synth`, Nangate45); the blocks do not
    chain.
    """
    width = width_of(count)
    msb = width - 1
    sign_in = b.xor(b.extract(count, msb, 1), b.extract(at, msb, 1))
    if msb == 0:
        return b.not_(sign_in)
    blocks = [(lo, min(COMPARE_BLOCK_BITS, msb - lo)) for lo in range(0, msb, COMPARE_BLOCK_BITS)]
    less = None
    for lo, w in blocks:  # low block first: a higher block decides unless it is equal
        c, a = b.extract(count, lo, w), b.extract(at, lo, w)
        block_lt = b.icmp(c, a, "ult")
        less = block_lt if less is None else b.or_(block_lt, b.and_(b.icmp(c, a, "eq"), less))
    return b.not_(b.xor(sign_in, less))


def _pipelined_sum(b: HwBuilder, terms: list[SSAValue], zero: SSAValue, registers: int) -> SSAValue:
    """
    A balanced tree of modular adds of `terms` with exactly `registers` pipeline registers:
    after every ceil(levels / (registers + 1)) levels (all values of a level registered
    together), any left over (a tree shallower than planned) after its root.
    """
    level = list(terms) or [zero]
    levels = max(0, (len(level) - 1).bit_length())
    per_stage = max(1, _ceil_div(levels, registers + 1))
    placed = depth = 0
    while len(level) > 1:
        nxt = [b.add_wrap(x, y) for x, y in zip(level[0::2], level[1::2])]
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
        if placed < registers and depth % per_stage == 0 and len(level) > 1:
            level = [b.delay(t, 1) for t in level]
            placed += 1
    return b.delay(level[0], registers - placed)


def build_npu_module(
    name: str,
    *,
    in_features: int,
    out_features: int,
    in_bits: int,
    in_signed: bool,
    weight_bits: int,
    bias_bits: int,
    logit_bits: int,
    lanes: int,
    init_weights: np.ndarray | None = None,
    init_bias: np.ndarray | None = None,
    mac_stages: int = 0,
    argmax_levels: int | None = None,
) -> hw.HWModuleOp:
    """
    The NPU as one `hw.module` named `name`, ports (see the module docstring for behaviour):

        in:  clk !seq.clock, rst i1, in_valid i1, in_data i(K*in_bits),
             we i1, waddr i(npu_addr_bits), wdata i(bias_bits), swap i1, swap_at i32
        out: stall i1, out_valid i1, out_class i(npu_class_bits(N)), out_logits i(N*logit_bits)
    """
    K, N = int(in_features), int(out_features)
    IB, WB, BB, LB = int(in_bits), int(weight_bits), int(bias_bits), int(logit_bits)
    if K < 1 or N < 1 or IB < 1 or WB < 2 or BB < 2:
        raise ValueError(f"bad NPU shape/widths K={K} N={N} in_bits={IB} weight_bits={WB} bias_bits={BB}")
    need = npu_logit_bits(K, Format(IB, bool(in_signed), 0), WB, BB)
    if LB < need:
        raise ValueError(f"logit_bits {LB} cannot hold the worst case ({need} bits needed)")
    w_lo, w_hi = type_range(WB, True)
    b_lo, b_hi = type_range(BB, True)
    W0 = np.zeros((N, K), dtype=np.int64) if init_weights is None else np.asarray(init_weights, dtype=np.int64)
    B0 = np.zeros((N,), dtype=np.int64) if init_bias is None else np.asarray(init_bias, dtype=np.int64).reshape(-1)
    if W0.shape != (N, K) or B0.shape != (N,):
        raise ValueError(f"init weights {W0.shape} / bias {B0.shape} must be ({N}, {K}) / ({N},)")
    if W0.size and (W0.min() < w_lo or W0.max() > w_hi):
        raise ValueError(f"an initial weight lies outside [{w_lo}, {w_hi}]")
    if B0.min() < b_lo or B0.max() > b_hi:
        raise ValueError(f"an initial bias lies outside [{b_lo}, {b_hi}]")

    Lc, Lk = lane_organisation(K, N, lanes)
    G, C = _ceil_div(N, Lc), _ceil_div(K, Lk)
    gb = (G - 1).bit_length()  # 0 when G == 1 (no counter)
    cb = (C - 1).bit_length()
    A = npu_addr_bits(K, N)
    CB = npu_class_bits(N)
    PW = WB + IB  # exact product width

    in_ports = [
        ("clk", seq.ClockType()),
        ("rst", int_type(1)),
        ("in_valid", int_type(1)),
        ("in_data", int_type(K * IB)),
        ("we", int_type(1)),
        ("waddr", int_type(A)),
        ("wdata", int_type(BB)),
        ("swap", int_type(1)),
        ("swap_at", int_type(COUNT_BITS)),
    ]
    out_ports = [
        ("stall", int_type(1)),
        ("out_valid", int_type(1)),
        ("out_class", int_type(CB)),
        ("out_logits", int_type(N * LB)),
    ]
    shell = ModuleShell(name, in_ports, out_ports)
    args = shell.args
    for port, arg in args.items():
        arg.name_hint = port
    b = HwBuilder(shell.block, args["clk"], args["rst"])
    one = b.const(1, 1)

    # ---------------- control state ----------------
    busy = b.feedback_reg(1, 0, "npu_busy")
    c_reg = b.feedback_reg(cb, 0, "npu_chunk") if cb else None
    g_reg = b.feedback_reg(gb, 0, "npu_group") if gb else None
    count = b.feedback_reg(COUNT_BITS, 0, "npu_count")
    pend = b.feedback_reg(1, 0, "npu_swap_pending")
    pend_at = b.feedback_reg(COUNT_BITS, 0, "npu_swap_at")
    active = b.feedback_reg(1, 0, "npu_active_bank")
    cur_bank = b.feedback_reg(1, 0, "npu_image_bank")
    xreg = b.feedback_reg(K * IB, None, "npu_x")

    c_last = _equals(b, c_reg.q, C - 1) if c_reg else one
    g_last = _equals(b, g_reg.q, G - 1) if g_reg else one
    c_first = _equals(b, c_reg.q, 0) if c_reg else one
    t_last = b.and_(c_last, g_last)
    can_accept = b.or_(b.not_(busy.q), t_last)
    stall = b.and_(args["in_valid"], b.not_(can_accept), name="npu_stall")
    accept = b.and_(args["in_valid"], can_accept, name="npu_accept")

    busy.set(b.or_(accept, b.and_(busy.q, b.not_(t_last))))
    if c_reg:
        c_inc = b.add_wrap(c_reg.q, b.const(1, cb))
        c_reg.set(b.mux(b.and_(busy.q, b.not_(c_last)), c_inc, b.const(0, cb)))
    if g_reg:
        g_inc = b.mux(g_last, b.const(0, gb), b.add_wrap(g_reg.q, b.const(1, gb)))
        g_reg.set(b.mux(b.and_(busy.q, c_last), g_inc, g_reg.q))
    xreg.set(b.mux(accept, args["in_data"], xreg.q))
    # count + 1 from the register alone, then selected by `accept`: the 32-bit carry chain
    # does not wait for `accept` (the chunk/group compares) as it would with count + accept.
    count.set(b.mux(accept, b.add_wrap(count.q, b.const(1, COUNT_BITS)), count.q))

    # swap: an incoming pulse replaces a pending swap and counts in its own cycle
    # count - swap_at >= 0 (wrapping), compared against the port and the pending value in
    # parallel and selected last: `swap` does not wait for (nor fan out into) a 32-bit mux.
    eff_pend = b.or_(args["swap"], pend.q)
    eff_at = b.mux(args["swap"], args["swap_at"], pend_at.q)
    reached = b.mux(args["swap"], _wrapped_not_before(b, count.q, args["swap_at"]),
                    _wrapped_not_before(b, count.q, pend_at.q))
    flip = b.and_(accept, eff_pend, reached, name="npu_swap_now")
    new_active = b.xor(active.q, flip)
    active.set(new_active)
    pend.set(b.and_(eff_pend, b.not_(flip)))
    pend_at.set(eff_at)
    cur_bank.set(b.mux(accept, new_active, cur_bank.q))

    # ---------------- weight memory: two banks ----------------
    we, waddr, wdata = args["we"], args["waddr"], args["wdata"]
    wdata_w = b.extract(wdata, 0, WB)
    we_bank = [b.and_(we, active.q), b.and_(we, b.not_(active.q))]  # shadow = !active
    wregs: list[list[list[SSAValue]]] = [[[None] * K for _ in range(N)] for _ in range(2)]  # type: ignore[list-item]
    bregs: list[list[SSAValue]] = [[None] * N for _ in range(2)]  # type: ignore[list-item]
    for k in range(K):
        for n in range(N):
            hit = _equals(b, waddr, k * N + n)
            for bank in range(2):
                r = b.feedback_reg(WB, int(W0[n, k]), f"bank{bank}_w_n{n}_k{k}")
                r.set(b.mux(b.and_(we_bank[bank], hit), wdata_w, r.q))
                wregs[bank][n][k] = r.q
    for n in range(N):
        hit = _equals(b, waddr, N * K + n)
        for bank in range(2):
            r = b.feedback_reg(BB, int(B0[n]), f"bank{bank}_b_n{n}")
            r.set(b.mux(b.and_(we_bank[bank], hit), wdata, r.q))
            bregs[bank][n] = r.q

    # ---------------- stage S0: select, multiply, adder tree ----------------
    c_bits = [b.extract(c_reg.q, i, 1) for i in range(cb)]
    g_bits = [b.extract(g_reg.q, i, 1) for i in range(gb)]
    bank_bit = cur_bank.q
    zero_w, zero_x, zero_l = b.const(0, WB), b.const(0, IB), b.const(0, LB)
    assert mac_stages >= 0, "a negative count of MAC registers"
    select_regs = min(mac_stages, 1)  # after the selection
    product_regs = min(mac_stages - select_regs, 1)  # after the multiply
    tree_regs = mac_stages - select_regs - product_regs  # inside the products' adder tree

    def selected(value: SSAValue) -> SSAValue:
        """A selected operand, registered before the multiply when the MAC path is split."""
        return b.delay(value, select_regs)
    xs = [b.extract(xreg.q, k * IB, IB) for k in range(K)]

    # feature lane j: x[c*Lk + j], shared by all class lanes
    x_lane: list[SSAValue] = []
    for j in range(Lk):
        leaves = []
        for c in range(1 << cb):
            k = c * Lk + j
            leaves.append(DONT_CARE if c >= C else (xs[k] if k < K else None))
        x_lane.append(b.resize(selected(b.mux_tree(leaves, c_bits, zero_x)), PW, bool(in_signed)))

    psum_regs = []
    for i in range(Lc):
        terms = []
        for j in range(Lk):
            # index = c | g << cb | bank << (cb + gb)
            leaves = []
            for bank in range(2):
                for g in range(1 << gb):
                    for c in range(1 << cb):
                        n, k = g * Lc + i, c * Lk + j
                        if g >= G or c >= C:
                            leaves.append(DONT_CARE)
                        elif n >= N or k >= K:
                            leaves.append(None)
                        else:
                            leaves.append(wregs[bank][n][k])
            if all(leaf is None or leaf is DONT_CARE for leaf in leaves):
                continue  # this lane only ever sees padding
            w = selected(b.mux_tree(leaves, c_bits + g_bits + [bank_bit], zero_w))
            prod = b.mul_wrap(b.resize(w, PW, True), x_lane[j])
            terms.append(b.resize(b.delay(prod, product_regs), LB, True))
        bleaves = []
        for bank in range(2):
            for g in range(1 << gb):
                n = g * Lc + i
                bleaves.append(DONT_CARE if g >= G else (bregs[bank][n] if n < N else None))
        bias = b.resize(b.mux_tree(bleaves, g_bits + [bank_bit], b.const(0, BB)), LB, True)
        terms.append(b.delay(selected(b.mux(c_first, bias, zero_l)), product_regs))
        psum = b.feedback_reg(LB, None, f"psum_{i}")
        psum.set(_pipelined_sum(b, terms, zero_l, tree_regs))
        psum_regs.append(psum)

    v1 = b.feedback_reg(1, 0, "s1_valid")
    v1.set(b.delay(busy.q, mac_stages, reset_value=0))
    first1 = last1 = g1 = None
    if C > 1:
        first1 = b.feedback_reg(1, None, "s1_first")
        first1.set(b.delay(c_first, mac_stages))
        last1 = b.feedback_reg(1, None, "s1_last")
        last1.set(b.delay(c_last, mac_stages))
    if G > 1:
        g1 = b.feedback_reg(gb, None, "s1_group")
        g1.set(b.delay(g_reg.q, mac_stages))

    # ---------------- stage S1: accumulate, write back ----------------
    acc_next = []
    for i in range(Lc):
        if C > 1:
            acc = b.feedback_reg(LB, None, f"acc_{i}")
            nxt = b.add_wrap(b.mux(first1.q, zero_l, acc.q), psum_regs[i].q)
            acc.set(nxt)
            acc_next.append(nxt)
        else:
            acc_next.append(psum_regs[i].q)
    wb_base = b.and_(v1.q, last1.q) if last1 else v1.q
    logits = []
    for n in range(N):
        g, i = divmod(n, Lc)
        en = b.and_(wb_base, _equals(b, g1.q, g)) if g1 else wb_base
        r = b.feedback_reg(LB, None, f"logit_{n}")
        r.set(b.mux(en, acc_next[i], r.q))
        logits.append(r.q)
    lv = b.feedback_reg(1, 0, "logits_valid")
    lv.set(b.and_(wb_base, _equals(b, g1.q, G - 1)) if g1 else wb_base)

    # ---------------- argmax (lowest index wins ties) ----------------
    nodes: list[tuple[SSAValue, SSAValue]] = [(logits[n], b.const(n, CB)) for n in range(N)]
    valid, vec = lv.q, b.concat(logits[::-1])
    argmax_stages = npu_argmax_stages(N, argmax_levels)
    per_stage = argmax_levels or ARGMAX_LEVELS_PER_STAGE
    pipelined = argmax_stages > 0
    level = 0
    stage = 0
    while len(nodes) > 1:
        nxt = []
        for (av, ai), (bv, bi) in zip(nodes[0::2], nodes[1::2]):
            take_b = b.icmp(bv, av, "sgt")  # strictly greater: ties keep the lower index
            nxt.append((b.mux(take_b, bv, av), b.mux(take_b, bi, ai)))
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
        level += 1
        if pipelined and level % per_stage == 0 and len(nodes) > 1:
            stage += 1
            regd = []
            for m, (v, ix) in enumerate(nodes):
                rv = b.feedback_reg(LB, None, f"argmax{stage}_v{m}")
                rv.set(v)
                ri = b.feedback_reg(CB, None, f"argmax{stage}_i{m}")
                ri.set(ix)
                regd.append((rv.q, ri.q))
            nodes = regd
            rvalid = b.feedback_reg(1, 0, f"argmax{stage}_valid")
            rvalid.set(valid)
            rvec = b.feedback_reg(N * LB, None, f"argmax{stage}_logits")
            rvec.set(vec)
            valid, vec = rvalid.q, rvec.q
    assert stage == argmax_stages

    out_valid = b.feedback_reg(1, 0, "out_valid_r")
    out_valid.set(valid)
    out_class = b.feedback_reg(CB, None, "out_class_r")
    out_class.set(nodes[0][1])
    out_logits = b.feedback_reg(N * LB, None, "out_logits_r")
    out_logits.set(vec)

    b.check_closed()
    return shell.finish({"stall": stall, "out_valid": out_valid.q, "out_class": out_class.q,
                         "out_logits": out_logits.q})


def lower(op: po2.NpuLinearOp, name: str, options: LayerOptions) -> LayerHw:
    """
    The NPU of the network's classifier, with enough lanes to keep up with one image per
    `frame_pixels` cycles unless `npu_lanes` says otherwise; its output stream is its input's
    (the top reads the NPU's own latency).
    """
    x_t, y_t = act_type(op.input), act_type(op.output)
    k, n = x_t.dims[0], y_t.dims[0]
    lanes = options.npu_lanes or default_lanes(k, n, options.frame_pixels)
    weight_bits, bias_bits = op.weight_bits, op.bias_bits
    timed = not options.levels_per_stage  # registers placed by the delay model
    mac_stages = npu_mac_stages(k, n, lanes, x_t.fmt.bits, weight_bits, y_t.fmt.bits,
                                options.clock_mhz if timed else None, bias_bits)
    argmax_levels = (delay.compare_select_levels_per_stage(options.clock_mhz, y_t.fmt.bits)
                     if timed else None)
    module = build_npu_module(
        name,
        in_features=k,
        out_features=n,
        in_bits=x_t.fmt.bits,
        in_signed=x_t.fmt.signed,
        weight_bits=weight_bits,
        bias_bits=bias_bits,
        logit_bits=y_t.fmt.bits,
        lanes=lanes,
        init_weights=op.weight_matrix,
        init_bias=np.asarray(op.bias),
        mac_stages=mac_stages,
        argmax_levels=argmax_levels,
    )
    latency = npu_latency(k, n, lanes, mac_stages, argmax_levels)
    report = {
        "kind": "npu",
        "layer": op.layer,
        "input_shape": list(x_t.dims),
        "output_shape": list(y_t.dims),
        "lanes": lanes,
        "weight_bits": weight_bits,
        # two banks of N*K weights and N biases
        "weight_memory_bits": 2 * (n * k * weight_bits + n * bias_bits),
        "cycles_per_image": npu_cycles_per_image(k, n, lanes),
        "pipeline_stages": latency,
        "mac_stages": mac_stages,
        **counted_resources(module),
    }
    module.attributes[REPORT_ATTR] = to_attr(report)
    return LayerHw(module, latency, report, options.streams[op.input])
