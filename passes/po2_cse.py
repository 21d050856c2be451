"""
`po2-cse`: share shift/add subexpressions across the output channels of every unrolled
layer (the constant matrix-vector multiplication problem, CMVM).

Why: after `po2-unroll` every nonzero weight costs one adder. A layer computes y = M x for a
constant matrix M whose entries are signed powers of two, and many output channels contain
the same two-term pattern up to a shift and a sign: `x3 + 2*x7` in one channel,
`-(4*x3 + 8*x7)` in another. Computing `t = x3 + (x7 << 1)` once and using `t` and
`-(t << 2)` saves one adder per reuse. Repeated on the new terms (t pairs with x9 or with
another shared term), a layer needs far fewer adders: about half on dense layers.

The algorithm (`share_terms`) works on the layer's terms as flat numpy arrays (row = output
channel, column = window value or shared term, shift, sign), in rounds:

1. every pair of terms within a row, limited to a window of neighbours in column order
   when a layer has too many pairs for the memory budget, gets a canonical key: the two
   columns ordered by (shift, column), the shift difference and the sign relation. So
   `a - b` and `b - a` share a key (signed pairs), and so do `a + 2b` and `2a + 4b`
   (shifted pairs);
2. the keys are counted (`np.unique`), and a greedy matching picks, in parallel rounds in
   the manner of Luby's algorithm, pairs whose key is the most frequent one touching either
   of their terms. A key's priority is recounted after every matching step as "occurrences
   already taken + occurrences still available", so a key that loses its occurrences to
   conflicts sinks (a lazy, exact-per-step greedy, not a single stale count); among keys
   of equal priority, the pairs whose terms have the fewest other candidate pairs go first
   (the min-degree rule of greedy matching: flexible terms stay free for later keys);
3. a key matched at least twice becomes a new column `a + sign * (b << shift)` (one adder);
   each of its occurrences replaces two terms of its row by one term of the new column.

New columns take part in the next round, so shared terms nest: the pass stops when no
key occurs twice. A round takes only keys at least `round_ratio` (0.8) times as frequent
as its most frequent key, so shared terms nest before the rare keys are spent. Every
operation is vectorised over all pairs of the layer; Python loops only run over rounds and
matching steps. A key is only accepted if the adder depth of its new column stays within
`max_depth` (the depth of a column is one more than the deeper of its two operands): each
output's tree then has at most `max_depth` adder levels below its own balanced sum, which
bounds what sharing adds to the critical path the pipelining has to absorb. The pass
default, 2, is the default `levels_per_stage`: deeper sharing saves a few percent more
adders but costs pipeline and alignment registers (tiny_cnn: max_depth 2 gives 3,276
adders and 52.0K register bits, unbounded 3,166 and 63.2K; without the pass 5,201 and
47.1K). `share_terms` alone (the benchmark against da4ml) is unbounded by default.

The region is then rebuilt: each shared column is one `po2.add`/`po2.sub` of its operands
(with a `po2.shl` for the second), each output channel `sum(positive terms) -
sum(negative terms)` over window values and shared columns as `po2-unroll` writes it, then
the same `po2.rescale`. The linear form of every channel is read from the region itself
(any mix of `po2.shl/add/sub/neg/sum/const`, so running the pass twice is safe), and every
op gets its exact type from the constructors' interval rule (`po2.value_range`): the
verifiers are the same ones, and the widths stay exact. The matching counts one adder per
extra term, but a channel left with only negative terms also costs a negation: the rebuilt
datapath replaces the old one only when it really has fewer adders (`block_adders`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException

from hashiflex.dialects import po2

# Pairs enumerated per round at most; beyond it each term pairs only with its nearest
# neighbours in column order (MobileNetV2 w0.25 loses 0.02 % of the sharing to it, and
# runs 20 % faster than with 12M).
DEFAULT_PAIR_BUDGET = 2_000_000
# A round takes only keys at least this fraction as frequent as its most frequent one (see
# `share_terms`); 0 would take every key that occurs twice in one round.
DEFAULT_ROUND_RATIO = 0.8
DEFAULT_MAX_DEPTH = 2


@dataclass
class Terms:
    """A layer's linear forms: output `row` has the term `sign * (col << shift)`."""

    row: np.ndarray
    col: np.ndarray
    shift: np.ndarray
    sign: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def take(self, index: np.ndarray) -> Terms:
        return Terms(self.row[index], self.col[index], self.shift[index], self.sign[index])


@dataclass
class Sharing:
    """
    The result of `share_terms`: shared columns `n_inputs + i` = `a[i] + sign[i] * (b[i] <<
    shift[i])` (in creation order, operands always earlier columns) and the rows' terms
    over inputs and shared columns.
    """

    n_inputs: int
    a: np.ndarray
    b: np.ndarray
    shift: np.ndarray
    sign: np.ndarray
    depth: np.ndarray  # adder depth of every column, inputs included (0)
    terms: Terms
    rounds: int = 0
    seconds: float = 0.0

    def adders(self) -> int:
        """Adders of the shared columns plus one per extra term of every nonempty row."""
        return len(self.a) + naive_adders(self.terms)


def naive_adders(terms: Terms) -> int:
    """One adder per term beyond the first of every row (what po2-unroll builds)."""
    return len(terms) - len(np.unique(terms.row))


def _pairs_in_rows(row: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Index pairs (i, j), i < j, of terms in the same row (`row` sorted). Each term pairs with
    its next `window` terms, the window as large as the budget allows (all pairs if it can).
    """
    n = len(row)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    lengths = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, lengths)
    after = np.repeat(lengths, lengths) - 1 - pos  # terms after each one in its row
    window = int(after.max())
    if int(after.sum()) > budget:
        lo, hi = 1, window  # largest window whose pair count fits the budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(np.minimum(after, mid).sum()) <= budget:
                lo = mid
            else:
                hi = mid - 1
        window = lo
    partners = np.minimum(after, window)
    first = np.repeat(np.arange(n), partners)
    offsets = np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners) + 1
    return first, first + offsets


def _greedy_matching(
    first: np.ndarray, second: np.ndarray, key: np.ndarray, n_terms: int, n_keys: int,
    threshold: int = 2,
) -> np.ndarray:
    """
    A maximal set of term-disjoint pairs, most shared keys first: in each step a pair is
    taken when its key's priority (occurrences taken + occurrences still possible) is the
    highest among the pairs touching either of its terms (ties: lower key, then lower pair
    index). Pairs whose key cannot reach two occurrences are dropped. Returns the indices
    of the taken pairs.
    """
    alive = np.arange(len(first))
    taken_per_key = np.zeros(n_keys, np.int64)
    used = np.zeros(n_terms, bool)
    taken: list[np.ndarray] = []
    while len(alive):
        k = key[alive]
        count = np.bincount(k, minlength=n_keys) + taken_per_key
        keep = count[k] >= threshold
        alive, k = alive[keep], k[keep]
        if not len(alive):
            break
        f, s = first[alive], second[alive]
        deg = np.bincount(f, minlength=n_terms) + np.bincount(s, minlength=n_terms)
        span = 2 * int(deg.max()) + 2
        prio = count[k] * span + (span - 1 - deg[f] - deg[s])
        best = np.full(n_terms, -1, np.int64)
        np.maximum.at(best, f, prio)
        np.maximum.at(best, s, prio)
        win = np.flatnonzero((best[f] == prio) & (best[s] == prio))
        # Several pairs of one key may still share a term (a column repeated at several
        # shifts in a row): of those, the lowest pair index wins.
        low = np.full(n_terms, len(first), np.int64)
        np.minimum.at(low, f[win], alive[win])
        np.minimum.at(low, s[win], alive[win])
        win = win[(low[f[win]] == alive[win]) & (low[s[win]] == alive[win])]
        chosen = alive[win]
        taken.append(chosen)
        taken_per_key += np.bincount(key[chosen], minlength=n_keys)
        used[first[chosen]] = True
        used[second[chosen]] = True
        alive = alive[~used[first[alive]] & ~used[second[alive]]]
    chosen = np.concatenate(taken) if taken else np.zeros(0, np.int64)
    # A key taken only once shares nothing (its adder replaces the row's): leave it.
    return chosen[taken_per_key[key[chosen]] >= threshold]


def share_terms(
    terms: Terms, n_inputs: int, max_depth: int = 64, pair_budget: int = DEFAULT_PAIR_BUDGET,
    round_ratio: float = DEFAULT_ROUND_RATIO,
) -> Sharing:
    """
    Extract shared two-term subexpressions from `terms` until none occurs twice. A round
    only takes keys that occur at least `round_ratio` times as often as the most frequent
    key of the round: the less frequent ones wait for the next round, where the columns
    just created can pair with their terms (close to the one-key-at-a-time greedy, in far
    fewer passes over the pairs).
    """
    start = time.perf_counter()
    depth = np.zeros(n_inputs, np.int64)
    defs: list[tuple[np.ndarray, ...]] = []
    n_cols = n_inputs
    rounds = 0
    cur = terms.take(np.lexsort((terms.shift, terms.col, terms.row)))
    while True:
        first, second = _pairs_in_rows(cur.row, pair_budget)
        if not len(first):
            break
        # Canonical order within a pair: (shift, column) ascending.
        c1, c2 = cur.col[first], cur.col[second]
        s1, s2 = cur.shift[first], cur.shift[second]
        swap = (s2 < s1) | ((s2 == s1) & (c2 < c1))
        lead = np.where(swap, second, first)
        tail = np.where(swap, first, second)
        a, b = cur.col[lead], cur.col[tail]
        d = cur.shift[tail] - cur.shift[lead]
        rel = cur.sign[lead] * cur.sign[tail]
        new_depth = np.maximum(depth[a], depth[b]) + 1
        ok = new_depth <= max_depth
        lead, tail, a, b, d, rel = lead[ok], tail[ok], a[ok], b[ok], d[ok], rel[ok]
        max_d = int(d.max(initial=0)) + 1
        code = ((a * n_cols + b) * max_d + d) * 2 + (rel > 0)
        uniq, key, count = np.unique(code, return_inverse=True, return_counts=True)
        shared = count[key] >= 2
        if not shared.any():
            break
        lead, tail, key = lead[shared], tail[shared], key[shared]
        threshold = max(2, int(count.max() * round_ratio))
        chosen = _greedy_matching(lead, tail, key, len(cur), len(uniq), threshold)
        if not len(chosen) and threshold > 2:
            # No key as frequent as the threshold kept that many occurrences through its
            # conflicts: the rarer keys still share (stopping here lost up to 40 % on
            # some MobileNetV2 layers).
            chosen = _greedy_matching(lead, tail, key, len(cur), len(uniq), 2)
        if not len(chosen):
            break
        rounds += 1
        # One new column per key taken, numbered in key order.
        keys_taken, new_of_pair = np.unique(key[chosen], return_inverse=True)
        code_taken = uniq[keys_taken]
        rel_new = np.where(code_taken % 2 == 1, 1, -1)
        d_new = (code_taken // 2) % max_d
        ab = code_taken // 2 // max_d
        a_new, b_new = ab // n_cols, ab % n_cols
        defs.append((a_new, b_new, d_new, rel_new))
        depth = np.r_[depth, np.maximum(depth[a_new], depth[b_new]) + 1]
        # Each taken pair: its two terms become one term of the new column, at the lead
        # term's shift and sign.
        lead_t, tail_t = lead[chosen], tail[chosen]
        keep = np.ones(len(cur), bool)
        keep[lead_t] = keep[tail_t] = False
        new_terms = Terms(
            cur.row[lead_t], n_cols + new_of_pair, cur.shift[lead_t], cur.sign[lead_t]
        )
        n_cols += len(keys_taken)
        rest = cur.take(np.flatnonzero(keep))
        merged = Terms(*(np.r_[x, y] for x, y in zip(
            (rest.row, rest.col, rest.shift, rest.sign),
            (new_terms.row, new_terms.col, new_terms.shift, new_terms.sign))))
        cur = merged.take(np.lexsort((merged.shift, merged.col, merged.row)))
    empty = np.zeros(0, np.int64)
    cols = [np.concatenate([x[i] for x in defs]) if defs else empty for i in range(4)]
    return Sharing(n_inputs, *cols, depth=depth, terms=cur, rounds=rounds,
                   seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------
# Reading the linear forms out of a region, writing the shared datapath back
# ---------------------------------------------------------------------------------------


def _csd_terms(row: np.ndarray, col: np.ndarray, coeff: np.ndarray) -> Terms:
    """Signed power-of-two digits (canonical signed digits) of integer coefficients."""
    rows, cols, shifts, signs = [], [], [], []
    c = coeff.astype(object) if np.abs(coeff).max(initial=0) >= 1 << 60 else coeff.copy()
    shift = 0
    while len(c):
        odd = (c % 2) != 0
        # Digit +-1 chosen so that the rest is divisible by 4 (non-adjacent form).
        digit = np.where(odd, 2 - (c % 4), 0)
        nz = np.flatnonzero(digit)
        rows.append(row[nz]); cols.append(col[nz])
        shifts.append(np.full(len(nz), shift, np.int64)); signs.append(np.asarray(digit[nz], np.int64))
        c = (c - digit) // 2
        live = np.flatnonzero(c != 0)
        row, col, c = row[live], col[live], c[live]
        shift += 1
    cat = (lambda xs: np.concatenate(xs).astype(np.int64)) if rows else (lambda xs: np.zeros(0, np.int64))
    return Terms(cat(rows), cat(cols), cat(shifts), cat(signs))


def _linear_forms(block: Block) -> tuple[Terms, list[int], list[po2.RescaleOp]] | None:
    """
    The linear form over the block arguments of every yielded channel's accumulator, as
    terms (one per power-of-two digit), plus each channel's constant and its rescale.
    None when the region is not of that shape (the pass then leaves it alone).
    """
    yield_op = block.last_op
    if not isinstance(yield_op, po2.YieldOp):
        return None
    arg_index = {arg: i for i, arg in enumerate(block.args)}
    forms: dict[SSAValue, tuple[dict[int, int], int]] = {}

    def form(value: SSAValue) -> tuple[dict[int, int], int] | None:
        if value in forms:
            return forms[value]
        if isinstance(value, BlockArgument):
            result = ({arg_index[value]: 1}, 0)
        else:
            op = value.owner
            if isinstance(op, po2.ConstOp):
                result = ({}, op.value)
            elif isinstance(op, po2.ShlOp):
                inner = form(op.input)
                if inner is None:
                    return None
                k = 1 << op.amount
                result = ({i: c * k for i, c in inner[0].items()}, inner[1] * k)
            elif isinstance(op, po2.NegOp):
                inner = form(op.input)
                if inner is None:
                    return None
                result = ({i: -c for i, c in inner[0].items()}, -inner[1])
            elif isinstance(op, (po2.SumOp, po2.AddOp, po2.SubOp)):
                signs = [1] * len(op.operands)
                if isinstance(op, po2.SubOp):
                    signs[1] = -1
                coeffs: dict[int, int] = {}
                const = 0
                for operand, sign in zip(op.operands, signs):
                    inner = form(operand)
                    if inner is None:
                        return None
                    for i, c in inner[0].items():
                        coeffs[i] = coeffs.get(i, 0) + sign * c
                    const += sign * inner[1]
                result = (coeffs, const)
            else:
                return None
        forms[value] = result
        return result

    rows, cols, coeffs, consts, rescales = [], [], [], [], []
    for o, value in enumerate(yield_op.values):
        rescale = value.owner
        if not isinstance(rescale, po2.RescaleOp):
            return None
        lin = form(rescale.input)
        if lin is None:
            return None
        items = [(i, c) for i, c in lin[0].items() if c]
        rows.extend([o] * len(items))
        cols.extend(i for i, _ in items)
        coeffs.extend(c for _, c in items)
        consts.append(lin[1])
        rescales.append(rescale)
    terms = _csd_terms(np.asarray(rows, np.int64), np.asarray(cols, np.int64),
                       np.asarray(coeffs, dtype=np.int64 if all(abs(c) < 1 << 62 for c in coeffs) else object))
    return terms, consts, rescales


def count_weight_terms(block: Block) -> int | None:
    """
    The number of power-of-two terms of the channels' linear forms (the nonzero weights of
    an unrolled layer, shared or not), or None when the region is not a linear datapath.
    """
    parsed = _linear_forms(block)
    return None if parsed is None else len(parsed[0])


def _build_block(block: Block, sharing: Sharing, consts: list[int],
                 rescales: list[po2.RescaleOp]) -> Block:
    """
    The rebuilt datapath: shared columns first, then one accumulator per channel. Ops are
    made with the generic `create` and types from intervals tracked here (the same rule
    as the ops' constructors, which would walk `value_range` for every operand: on
    MobileNetV2 that walk was most of the pass's time); the verifier checks every type.
    """
    new = Block(arg_types=[a.type for a in block.args])
    ops: list[Operation] = []

    def add(op: Operation) -> SSAValue:
        ops.append(op)
        return op.results[0]

    def make(cls, operands: list[SSAValue], lo: int, hi: int) -> tuple[SSAValue, int, int]:
        """The op's result and the range its users see (`value_range`: its type's)."""
        typ = po2.scalar_type_for_range(lo, hi)
        return (add(cls.create(operands=operands, result_types=[typ])),
                *po2.int_type_range(typ))

    values: list[SSAValue] = list(new.args)
    ranges: list[tuple[int, int]] = [po2.int_type_range(a.type) for a in new.args]
    shifted: dict[tuple[int, int], SSAValue] = {}

    def term(col: int, amount: int) -> tuple[SSAValue, int, int]:
        if amount == 0:
            return values[col], *ranges[col]
        found = shifted.get((col, amount))
        if found is None:
            typ = po2.scalar_type_for_range(ranges[col][0] << amount, ranges[col][1] << amount)
            found = shifted[(col, amount)] = (add(po2.ShlOp.create(
                operands=[values[col]], result_types=[typ],
                properties={"amount": IntegerAttr(amount, i64)})), *po2.int_type_range(typ))
        return found

    for a, b, d, s in zip(sharing.a.tolist(), sharing.b.tolist(), sharing.shift.tolist(),
                          sharing.sign.tolist()):
        rhs, b_lo, b_hi = term(b, d)
        a_lo, a_hi = ranges[a]
        if s > 0:
            value, lo, hi = make(po2.AddOp, [values[a], rhs], a_lo + b_lo, a_hi + b_hi)
        else:
            value, lo, hi = make(po2.SubOp, [values[a], rhs], a_lo - b_hi, a_hi - b_lo)
        values.append(value)
        ranges.append((lo, hi))

    t = sharing.terms
    order = np.lexsort((t.shift, t.col, t.row))
    row, col, shift, sign = (x[order].tolist() for x in (t.row, t.col, t.shift, t.sign))
    per_row: list[list[tuple[int, int, int]]] = [[] for _ in rescales]
    for r, c, s, g in zip(row, col, shift, sign):
        per_row[r].append((c, s, g))

    def total(parts: list[tuple[SSAValue, int, int]]) -> tuple[SSAValue, int, int] | None:
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return make(po2.SumOp, [p[0] for p in parts], sum(p[1] for p in parts),
                    sum(p[2] for p in parts))

    outputs: list[SSAValue] = []
    for o, rescale in enumerate(rescales):
        pos = [term(c, s) for c, s, g in per_row[o] if g > 0]
        neg = [term(c, s) for c, s, g in per_row[o] if g < 0]
        bias = consts[o]
        if bias > 0 or (not pos and not neg):
            # (No weights: the channel is its bias, po2-unroll's form.)
            pos.append((add(po2.ConstOp(bias)), bias, bias))
        elif bias < 0:
            neg.append((add(po2.ConstOp(-bias)), -bias, -bias))
        p, n = total(pos), total(neg)
        if n is None:
            acc = p[0]
        elif p is None:
            acc = make(po2.NegOp, [n[0]], -n[2], -n[1])[0]
        else:
            acc = make(po2.SubOp, [p[0], n[0]], p[1] - n[2], p[2] - n[1])[0]
        outputs.append(add(po2.RescaleOp(
            acc, rescale.shift, rescale.lo, rescale.hi,
            rescale.result.type)))
    ops.append(po2.YieldOp(outputs))
    new.add_ops(ops)
    return new


def block_adders(block: Block) -> int:
    """Two-input adders of a datapath: n - 1 per n-operand sum, one per add/sub/neg."""
    total = 0
    for op in block.ops:
        if isinstance(op, po2.SumOp):
            total += len(op.inputs) - 1
        elif isinstance(op, (po2.AddOp, po2.SubOp, po2.NegOp)):
            total += 1
    return total


@dataclass
class CseStats:
    """What `cse_region` did to one layer."""

    layer: str
    adders_before: int
    adders_after: int
    shared_terms: int
    rounds: int
    seconds: float


def cse_region(op: po2.UnrolledConv2dOp, max_depth: int = DEFAULT_MAX_DEPTH,
               pair_budget: int = DEFAULT_PAIR_BUDGET) -> CseStats | None:
    """
    Share subexpressions across the output channels of one unrolled layer, in place (the
    op's region gets a new block). Returns what it did, or None when the region is not a
    linear datapath ending in rescales (left as it is). The flow calls this right after
    po2-unroll and po2-canonicalize; `Po2CsePass` calls it on every unrolled op.
    """
    start = time.perf_counter()
    block = op.body.block
    parsed = _linear_forms(block)
    if parsed is None:
        return None
    terms, consts, rescales = parsed
    sharing = share_terms(terms, len(block.args), max_depth, pair_budget)
    before = block_adders(block)
    stats = CseStats(
        layer=op.layer,
        adders_before=before,
        adders_after=before,
        shared_terms=len(sharing.a),
        rounds=sharing.rounds,
        seconds=0.0,
    )
    if not len(sharing.a):
        # Nothing shared (a depthwise layer, say): the region stays as it is.
        stats.seconds = time.perf_counter() - start
        return stats
    new_block = _build_block(block, sharing, consts, rescales)
    # The matching counts one adder per extra term; a channel left with only negative
    # terms also needs a negation. So compare what the two blocks really cost, and keep
    # the old one unless sharing wins.
    stats.adders_after = block_adders(new_block)
    if stats.adders_after >= stats.adders_before:
        for new_op in reversed(list(new_block.ops)):
            new_op.drop_all_references()
        stats.adders_after, stats.shared_terms = stats.adders_before, 0
        stats.seconds = time.perf_counter() - start
        return stats
    # Swap the blocks: drop the old datapath's uses first (it uses its own arguments only).
    region = op.body
    for old_op in reversed(list(block.ops)):
        old_op.drop_all_references()
    region.detach_block(block)
    region.add_block(new_block)
    stats.seconds = time.perf_counter() - start
    return stats


@dataclass(frozen=True)
class Po2CsePass(ModulePass):
    """Share shift/add subexpressions across output channels (CMVM) in every unrolled layer."""

    name = "po2-cse"

    max_depth: int = DEFAULT_MAX_DEPTH
    """Adder depth bound of any shared subexpression (>= 1)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.max_depth < 1:
            raise DiagnosticException(f"po2-cse: max_depth must be >= 1, got {self.max_depth}")
        for unrolled in [o for o in op.walk() if isinstance(o, po2.UnrolledConv2dOp)]:
            cse_region(unrolled, self.max_depth)
