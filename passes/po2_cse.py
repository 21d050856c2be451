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
   the manner of Luby's algorithm, pairs whose priority is the highest of all pairs
   touching either of their terms. The priority is the key's count, recounted after every
   matching step as "occurrences already taken + occurrences still available" (a key that
   loses its occurrences to conflicts sinks: a lazy, exact-per-step greedy, not a single
   stale count); among equal counts, the pair whose two terms are in least demand goes
   first, the demand of a term being the sum of count^2 over the pairs that would lose it
   (the pairs still possible, plus 10x the pairs of the whole round, so keys waiting for a
   later round count too). This is the min-degree rule of greedy matching weighted by
   what the conflicting pairs are worth: on the cmvm benchmark matrices it took po2-cse
   from 1.009x da4ml's adders (plain count, min-degree ties) to 1.000x;
3. a key matched at least twice becomes a new column `a + sign * (b << shift)` (one adder);
   each of its occurrences replaces two terms of its row by one term of the new column.

New columns take part in the next round, so shared terms nest: the pass stops when no
key occurs twice. A round takes only keys at least `round_ratio` (0.85) times as frequent
as its most frequent key (and at least 3 times while such keys exist), so shared terms
nest before the rare keys are spent. Two more steps per round:

- reuse: a pair that an existing shared column computes (up to a shift and a sign: its
  other occurrences went to earlier rounds, this one lost a conflict) becomes a term of
  that column for free, before any new key is matched;
- joins, in the tail where no key occurs 3 times any more: two rows that share m aligned
  terms (same columns, same relative shifts and signs) share all m at once, built as one
  balanced sum of m - 1 adders. Pair-at-a-time matching breaks such a common part up
  among competing pairs of count 2; the one-key-at-a-time greedy (da4ml's) grows it one
  term per step instead. The joins are matched with the same greedy matching (a join is
  a key, a matched term pair an occurrence).

Every operation is vectorised over all pairs of the layer; Python loops only run over
rounds, matching steps, window offsets and the terms of the joins taken. The pairs are
not enumerated again each round: they live in a pool (lead term, tail term, key id; key
ids from a persistent code table) kept sorted by key, from which a round drops the pairs
of the terms it consumed and into which it merges only the pairs a fresh enumeration
would add (those of the new terms, of terms a removal brought within the window, and of
the wider window the shrunken rows allow). A round of a big layer changes ~5 % of its
terms, so this cut the pass's CPU time about 2x on MobileNetV2 w1.0's biggest layers at
the same adders. A key is only accepted if the
adder depth of its new column stays within
`max_depth` (the depth of a column is one more than the deeper of its two operands): each
output's tree then has at most `max_depth` adder levels below its own balanced sum, which
bounds what sharing adds to the critical path the pipelining has to absorb. The pass
default, 2, is the default `levels_per_stage`. (tiny_cnn, measured with the register
rules of the time the default was chosen: max_depth 2 gave 3,276 adders and 52.0K register
bits, unbounded 3,166 and 63.2K. Today, with registers placed by the delay model: max_depth
2 gives 3,265 adders and 43.7K register bits, unbounded 3,125 and 40.7K, without the pass
5,202 and 34.5K.) `share_terms` alone (the benchmark against da4ml) is unbounded by default.

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

import heapq
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
DEFAULT_ROUND_RATIO = 0.85
DEFAULT_MAX_DEPTH = 2
# How much more the demand of the whole round weighs than that of the pairs still
# possible in `_greedy_matching` (10: cmvm benchmark matrices, median 1.002 -> 1.000x
# da4ml's adders against 0 or 1).
CONFLICT_WEIGHT = 10


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


def _window(row: np.ndarray, budget: int) -> int:
    """
    The largest window w such that pairing every term with its next w terms in its row
    (`row` sorted) makes at most `budget` pairs (at least 1); all pairs if they fit.
    """
    if len(row) < 2:
        return 1
    lengths = np.diff(np.r_[np.flatnonzero(np.r_[True, row[1:] != row[:-1]]), len(row)])
    # Pairs of a row of n terms with window w: sum over its terms of min(after, w).
    def pairs(w: int) -> int:
        m = np.minimum(lengths, w + 1)
        return int((m * (m - 1) // 2 + (lengths - m) * w).sum())
    hi = max(int(lengths.max()) - 1, 1)
    if pairs(hi) <= budget:
        return hi
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pairs(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _pairs_in_rows(row: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, int]:
    """
    Index pairs (i, j), i < j, of terms in the same row (`row` sorted). Each term pairs with
    its next `window` terms, the window as large as the budget allows (all pairs if it can).
    Returns the pairs and the window.
    """
    n = len(row)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    window = _window(row, budget)
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    lengths = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, lengths)
    after = np.repeat(lengths, lengths) - 1 - pos  # terms after each one in its row
    partners = np.minimum(after, window)
    first = np.repeat(np.arange(n), partners)
    offsets = np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners) + 1
    return first, first + offsets, window


def _greedy_matching(
    first: np.ndarray, second: np.ndarray, key: np.ndarray, n_terms: int, n_keys: int,
    threshold: int = 2,
) -> np.ndarray:
    """
    A maximal set of term-disjoint pairs, most shared keys first: in each step a pair is
    taken when its priority is the highest among the pairs touching either of its terms.
    The priority is its key's count (occurrences taken + occurrences still possible) and,
    among equal counts, the least value its two terms could still give to other pairs:
    the sum of count^2 over the pairs touching them (the still possible ones, plus
    `CONFLICT_WEIGHT` times all pairs of the round, so pairs of keys below the threshold,
    which wait for a later round, count too). Ties: lower pair index. Pairs whose key
    cannot reach `threshold` occurrences are dropped. Returns the indices of the taken
    pairs.
    """
    # What each term can give to the pairs of the whole round (not updated: it tells
    # which terms are in demand, also by keys of later rounds).
    weight_all = np.bincount(key, minlength=n_keys).astype(np.float64) ** 2
    demand_all = CONFLICT_WEIGHT * (np.bincount(first, weight_all[key], minlength=n_terms)
                                    + np.bincount(second, weight_all[key], minlength=n_terms))
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
        weight = count[k].astype(np.float64) ** 2
        demand = (np.bincount(f, weight, minlength=n_terms)
                  + np.bincount(s, weight, minlength=n_terms) + demand_all).astype(np.int64)
        span = 2 * int(demand.max()) + 2
        prio = count[k] * span + (span - 1 - demand[f] - demand[s])
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


def _join_row_pairs(
    cur: Terms, lead: np.ndarray, tail: np.ndarray, key: np.ndarray, n_keys: int,
    depth: np.ndarray, max_depth: int,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, Terms] | None:
    """
    The tail of the greedy, where every key occurs twice: two rows that share m aligned
    terms (the same columns at the same relative shifts and signs) share all m of them,
    built once as a sum of m - 1 adders, where pair-at-a-time matching breaks such a
    common part up among competing pairs (the one-key-at-a-time greedy grows it one term
    per step instead). Each key occurring exactly twice names a row pair, the offset
    between the two occurrences' shifts and their sign relation (a "join"); its lead
    terms and its tail terms are two matches of that join. Joins are then taken with the
    same greedy matching as keys (a match is a pair of terms, a join a key): the largest
    joins first, every term in one join at most. Returns the new columns (a, b, shift,
    sign, depth), the terms consumed and the terms that replace them; None if no join
    keeps two matches.
    """
    per_key = np.bincount(key, minlength=n_keys)
    twice = np.flatnonzero(per_key[key] == 2)
    if not len(twice):
        return None
    twice = twice[np.argsort(key[twice], kind="stable")]
    o1, o2 = twice[0::2], twice[1::2]
    r1, r2 = cur.row[lead[o1]], cur.row[lead[o2]]
    flip = r2 < r1
    o1, o2 = np.where(flip, o2, o1), np.where(flip, o1, o2)
    r1, r2 = np.minimum(r1, r2), np.maximum(r1, r2)
    l1, l2, t1, t2 = lead[o1], lead[o2], tail[o1], tail[o2]
    offset = cur.shift[l2] - cur.shift[l1]
    rel = cur.sign[l2] * cur.sign[l1]
    distinct = r1 != r2
    l1, l2, t1, t2, r1, r2, offset, rel = (
        x[distinct] for x in (l1, l2, t1, t2, r1, r2, offset, rel))
    if not len(l1):
        return None
    # Join code: (row pair, offset, sign relation); its matches: (term in r1, term in r2).
    n_rows = int(cur.row.max()) + 1
    off0 = int(offset.min())
    span = int(offset.max()) - off0 + 1
    join = (((r1 * n_rows + r2) * span + (offset - off0)) * 2 + (rel > 0))
    m_join = np.r_[join, join]
    m1, m2 = np.r_[l1, t1], np.r_[l2, t2]
    match_code = np.unique(np.stack([m_join, m1, m2]), axis=1)
    joins, join_id = np.unique(match_code[0], return_inverse=True)
    m1, m2 = match_code[1], match_code[2]
    chosen = _greedy_matching(m1, m2, join_id, len(cur), len(joins), 2)
    if not len(chosen):
        return None
    # Build every chosen join's common part: the two shallowest partial sums first, so
    # the depth stays near log2(m); a sum that would pass max_depth stays split (each
    # part is still shared by the two rows).
    order = np.lexsort((cur.shift[m1[chosen]], join_id[chosen]))
    chosen = chosen[order]
    jid = join_id[chosen].tolist()
    t_a, t_b = m1[chosen], m2[chosen]
    col, shift, sign = cur.col[t_a].tolist(), cur.shift[t_a].tolist(), cur.sign[t_a].tolist()
    depth_l = depth.tolist()
    n_cols = len(depth_l)
    new_a, new_b, new_d, new_s, new_depth = [], [], [], [], []
    out_join, out_col, out_shift, out_sign = [], [], [], []
    start = 0
    while start < len(jid):
        stop = start
        while stop < len(jid) and jid[stop] == jid[start]:
            stop += 1
        # Partial sums: (depth, shift, column, sign) of sign * (column << shift).
        parts = [(depth_l[col[i]], shift[i], col[i], sign[i]) for i in range(start, stop)]
        heapq.heapify(parts)
        done = []
        while len(parts) > 1:
            p = heapq.heappop(parts)
            q = heapq.heappop(parts)
            if max(p[0], q[0]) + 1 > max_depth:
                done.extend((p, q))
                continue
            if (q[1], q[2]) < (p[1], p[2]):
                p, q = q, p
            new_a.append(p[2]); new_b.append(q[2]); new_d.append(q[1] - p[1])
            new_s.append(p[3] * q[3]); new_depth.append(max(p[0], q[0]) + 1)
            depth_l.append(new_depth[-1])
            heapq.heappush(parts, (new_depth[-1], p[1], n_cols, p[3]))
            n_cols += 1
        for p in done + parts:
            out_join.append(jid[start]); out_col.append(p[2])
            out_shift.append(p[1]); out_sign.append(p[3])
        start = stop
    if not new_a:
        return None
    # Each part goes into both rows of its join: as it is in the first row, moved by the
    # offset and the sign relation in the second.
    code = joins[np.asarray(out_join, np.int64)]
    rel_j = np.where(code % 2 == 1, 1, -1)
    off_j = (code // 2) % span + off0
    pair_j = code // 2 // span
    row1, row2 = pair_j // n_rows, pair_j % n_rows
    col_j = np.asarray(out_col, np.int64)
    shift_j, sign_j = np.asarray(out_shift, np.int64), np.asarray(out_sign, np.int64)
    new_terms = Terms(np.r_[row1, row2], np.r_[col_j, col_j], np.r_[shift_j, shift_j + off_j],
                      np.r_[sign_j, sign_j * rel_j])
    as_array = (lambda xs: np.asarray(xs, np.int64))
    columns = tuple(as_array(x) for x in (new_a, new_b, new_d, new_s, new_depth))
    return columns, np.r_[t_a, t_b], new_terms


def _merge_slots(at: np.ndarray, n_old: int) -> np.ndarray:
    """Where new items inserted before the sorted old positions `at` land: a mask."""
    slots = np.zeros(n_old + len(at), bool)
    slots[at + np.arange(len(at))] = True
    return slots


def _merge(old: np.ndarray, new: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """`np.insert(old, at, new)` for sorted `at`, given `_merge_slots(at)`."""
    out = np.empty(len(slots), old.dtype)
    out[slots] = new
    out[~slots] = old
    return out


class _KeyTable:
    """
    Persistent ids of pair keys (codes as in `share_terms`): `ids(codes)` gives every code
    its id, new codes new ids (appended); `code[id]` decodes; `column[id]` is the shared
    column that computes the key (-1 if none yet).
    """

    def __init__(self) -> None:
        self.sorted_codes = np.zeros(0, np.int64)
        self.sorted_ids = np.zeros(0, np.int64)
        self.code = np.zeros(0, np.int64)
        self.column = np.zeros(0, np.int64)

    def ids(self, codes: np.ndarray) -> np.ndarray:
        # Looked up distinct and sorted: the binary searches then walk the table in order.
        distinct, inverse = np.unique(codes, return_inverse=True)
        pos = np.searchsorted(self.sorted_codes, distinct)
        known = pos < len(self.sorted_codes)
        known[known] = self.sorted_codes[pos[known]] == distinct[known]
        found = np.empty(len(distinct), np.int64)
        found[known] = self.sorted_ids[pos[known]]
        if not known.all():
            fresh = distinct[~known]
            new_ids = len(self.code) + np.arange(len(fresh))
            found[~known] = new_ids
            slots = _merge_slots(pos[~known], len(self.sorted_codes))
            self.sorted_codes = _merge(self.sorted_codes, fresh, slots)
            self.sorted_ids = _merge(self.sorted_ids, new_ids, slots)
            self.code = np.r_[self.code, fresh]
            self.column = np.r_[self.column, np.full(len(fresh), -1, np.int64)]
        return found[inverse]

    def compact(self, in_use: np.ndarray) -> np.ndarray:
        """
        Forget the keys neither in `in_use` (ids) nor computed by a column; returns the
        old-to-new id map (-1: forgotten). Keeps the table near the pool's size.
        """
        keep = self.column >= 0
        keep[in_use] = True
        new_id = np.full(len(keep), -1, np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        self.code, self.column = self.code[keep], self.column[keep]
        at = keep[self.sorted_ids]
        self.sorted_codes = self.sorted_codes[at]
        self.sorted_ids = new_id[self.sorted_ids[at]]
        return new_id


def share_terms(
    terms: Terms, n_inputs: int, max_depth: int = 64, pair_budget: int = DEFAULT_PAIR_BUDGET,
    round_ratio: float = DEFAULT_ROUND_RATIO, join_rows: bool = True, reuse: bool = True,
) -> Sharing:
    """
    Extract shared two-term subexpressions from `terms` until none occurs twice. A round
    only takes keys that occur at least `round_ratio` times as often as the most frequent
    key of the round: the less frequent ones wait for the next round, where the columns
    just created can pair with their terms (close to the one-key-at-a-time greedy, in far
    fewer passes over the pairs). `reuse`: pairs an existing shared column computes become
    its terms first; `join_rows`: the count-2 tail shares whole common parts of two rows
    (`_join_row_pairs`). Both on by default; off only to measure what they bring.

    Incremental: the terms live in one append-only table (a consumed term is only marked
    dead) and the pairs in one pool of (lead term, tail term, key id) that persists across
    rounds. A round drops the pairs of dead terms and adds only the pairs of the terms it
    created (each with its `window` neighbours in its row's (column, shift) order, both
    sides), so it costs a few passes over the pool plus the matching, not a new
    enumeration and sort of every pair (a round changes ~5 % of a big layer's terms).
    """
    start = time.perf_counter()
    empty = np.zeros(0, np.int64)
    order0 = np.lexsort((terms.shift, terms.col, terms.row))
    row, col, shift, sign = (np.asarray(x, np.int64)[order0]
                             for x in (terms.row, terms.col, terms.shift, terms.sign))
    n_terms = len(row)
    alive = np.ones(n_terms, bool)
    depth = np.zeros(n_inputs, np.int64)
    defs: list[tuple[np.ndarray, ...]] = []
    n_cols = n_inputs
    rounds = 0
    # Fixed key encoding for the whole run: columns never exceed n_inputs + n_terms (a new
    # column consumes two terms per use), shifts stay within the input's range.
    shift_lo = int(shift.min(initial=0))
    col_limit = n_inputs + n_terms + 1
    max_d = int(shift.max(initial=0)) - shift_lo + 1
    n_rows = int(row.max(initial=-1)) + 1
    if col_limit * col_limit * max_d * 2 >= 1 << 62:
        raise ValueError(f"po2-cse: layer too large to encode its pair keys ({n_terms} terms)")
    sort_key = (row * col_limit + col) * max_d + (shift - shift_lo)
    order = np.arange(n_terms)  # alive terms in (row, column, shift) order
    keys = _KeyTable()

    def pair_keys(first: np.ndarray, second: np.ndarray):
        """Canonical (lead, tail, key id) of term pairs within the depth bound."""
        swap = (shift[second] < shift[first]) | (
            (shift[second] == shift[first]) & (col[second] < col[first]))
        lead = np.where(swap, second, first)
        tail = np.where(swap, first, second)
        a, b = col[lead], col[tail]
        ok = np.maximum(depth[a], depth[b]) < max_depth
        lead, tail, a, b = lead[ok], tail[ok], a[ok], b[ok]
        code = ((a * col_limit + b) * max_d + (shift[tail] - shift[lead])) * 2 + (
            sign[lead] * sign[tail] > 0)
        return lead, tail, keys.ids(code)

    first, second, window = _pairs_in_rows(row, pair_budget)
    # The pool is kept sorted by key id: counting and looking up keys then walk the key
    # tables in order (random access into tables of millions of keys was most of a
    # round's time on MobileNetV2 w1.0).
    pool_lead, pool_tail, pool_key = pair_keys(first, second)
    by_key = np.argsort(pool_key, kind="stable")
    pool_lead, pool_tail, pool_key = pool_lead[by_key], pool_tail[by_key], pool_key[by_key]

    def apply(removed: np.ndarray, new: Terms) -> None:
        """Mark `removed` dead, append `new` and pair it with its row neighbours."""
        nonlocal row, col, shift, sign, alive, order, sort_key, pool_lead, pool_tail, pool_key
        nonlocal window
        alive[removed] = False
        base = len(row)
        row, col, shift, sign = (np.r_[x, y] for x, y in zip(
            (row, col, shift, sign), (new.row, new.col, new.shift, new.sign)))
        alive = np.r_[alive, np.ones(len(new), bool)]
        new_key = (new.row * col_limit + new.col) * max_d + (new.shift - shift_lo)
        sort_key = np.r_[sort_key, new_key]
        new_ids = base + np.argsort(new_key, kind="stable")
        # The pairs a fresh enumeration would add: terms that the removed ones kept apart
        # come within the window of each other (the windows slide over the gaps), and
        # the window widens as the rows shrink (the same pair budget).
        old_pos = np.zeros(len(row), np.int64)
        old_pos[order] = np.arange(len(order))
        order = order[alive[order]]
        old_window = window
        row_of = row[order]
        window = max(window, _window(row_of, pair_budget))
        # Partners of the term at position j: positions [lo, hi), within the window and
        # its row, and more than the old window apart before (old positions increase
        # along `order`, so those form a range too).
        n = len(order)
        here = np.arange(n)
        row_start = np.maximum.accumulate(np.where(np.r_[True, row_of[1:] != row_of[:-1]], here, 0))
        lo = np.maximum(here - window, row_start)
        along = old_pos[order]
        hi = np.minimum(np.searchsorted(along, along - old_window, "left"), here)
        many = np.maximum(hi - lo, 0)
        total = int(many.sum())
        firsts, seconds = [], []
        if total:
            j = np.repeat(here, many)
            i = np.repeat(lo - (np.cumsum(many) - many), many) + np.arange(total)
            firsts.append(order[i]); seconds.append(order[j])
        at = np.searchsorted(sort_key[order], sort_key[new_ids])
        order = np.insert(order, at, new_ids)
        pos = at + np.arange(len(new_ids))  # where the new terms sit in `order`
        is_new = np.zeros(len(row), bool)
        is_new[new_ids] = True
        for k in range(1, window + 1):
            # The k-th neighbour before (any term) and after (old terms only: a new one
            # pairs with the new terms after it as their neighbour before).
            before = pos - k
            ok = before >= 0
            ok[ok] = row[order[before[ok]]] == row[new_ids[ok]]
            firsts.append(order[before[ok]]); seconds.append(new_ids[ok])
            after = pos + k
            ok = after < len(order)
            ok[ok] = row[order[after[ok]]] == row[new_ids[ok]]
            ok[ok] = ~is_new[order[after[ok]]]
            firsts.append(new_ids[ok]); seconds.append(order[after[ok]])
            if not any(len(x) for x in firsts[-2:]):
                break
        new_lead, new_tail, new_key_ids = pair_keys(np.concatenate(firsts), np.concatenate(seconds))
        live = alive[pool_lead] & alive[pool_tail]
        by_key = np.argsort(new_key_ids, kind="stable")
        new_key_ids = new_key_ids[by_key]
        kept_key = pool_key[live]
        slots = _merge_slots(np.searchsorted(kept_key, new_key_ids, "right"), len(kept_key))
        pool_lead = _merge(pool_lead[live], new_lead[by_key], slots)
        pool_tail = _merge(pool_tail[live], new_tail[by_key], slots)
        pool_key = _merge(kept_key, new_key_ids, slots)
        if len(keys.code) > len(pool_key) + len(pool_key) // 4 + 1000:
            pool_key = keys.compact(pool_key)[pool_key]

    def add_columns(a_new, b_new, d_new, rel_new, depth_new) -> np.ndarray:
        """Append shared columns; their keys learn which column computes them."""
        nonlocal depth, n_cols
        defs.append((a_new, b_new, d_new, rel_new))
        depth = np.r_[depth, depth_new]
        cols = n_cols + np.arange(len(a_new))
        n_cols += len(a_new)
        ids = keys.ids(((a_new * col_limit + b_new) * max_d + d_new) * 2 + (rel_new > 0))
        fresh = keys.column[ids] < 0
        keys.column[ids[fresh]] = cols[fresh]
        return cols

    while len(pool_lead):
        table = Terms(row, col, shift, sign)
        lead, tail, key = pool_lead, pool_tail, pool_key
        removed_reused, new_reused = empty, Terms(empty, empty, empty, empty)
        if reuse and defs:
            # A pair that a shared column already computes (its other occurrences taken
            # by earlier rounds, this one lost to a conflict) costs nothing more: it
            # becomes a term of that column.
            hit = np.flatnonzero(keys.column[key] >= 0)
            if len(hit):
                column = keys.column[key[hit]]
                chosen = _greedy_matching(lead[hit], tail[hit], column - n_inputs, len(row),
                                          n_cols - n_inputs, 1)
                lead_t, tail_t = lead[hit[chosen]], tail[hit[chosen]]
                removed_reused = np.r_[lead_t, tail_t]
                new_reused = Terms(row[lead_t], column[chosen], shift[lead_t], sign[lead_t])
                # The rest of the round works on the pairs of the terms still free.
                free = np.ones(len(row), bool)
                free[removed_reused] = False
                rest = free[lead] & free[tail]
                lead, tail, key = lead[rest], tail[rest], key[rest]
        count = np.bincount(key, minlength=len(keys.code))
        shared = count[key] >= 2
        if not shared.any():
            if len(removed_reused):
                apply(removed_reused, new_reused)
                continue
            break
        lead, tail, key = lead[shared], tail[shared], key[shared]
        # Keys of this round renumbered 0..n-1 (in key id order) for the matching.
        key_ids = np.flatnonzero(count >= 2)
        local = np.zeros(len(count), np.int64)
        local[key_ids] = np.arange(len(key_ids))
        key_local = local[key]
        top = int(count.max())
        # Frequent keys: pair matching, a round of the most frequent ones at a time.
        threshold = max(3 if top >= 3 else 2, int(top * round_ratio))
        n_local = len(key_ids)
        chosen = (_greedy_matching(lead, tail, key_local, len(row), n_local, threshold)
                  if threshold > 2 else empty)
        if not len(chosen) and threshold > 3:
            chosen = _greedy_matching(lead, tail, key_local, len(row), n_local, 3)
        if not len(chosen) and join_rows:
            # The tail (keys twice at most after conflicts): whole subexpressions common
            # to two rows at once, instead of pair by pair.
            joined = _join_row_pairs(table, lead, tail, key_local, n_local, depth, max_depth)
            if joined is not None:
                rounds += 1
                columns, removed, new_terms = joined
                add_columns(*columns)
                apply(np.r_[removed, removed_reused], _concat_terms(new_terms, new_reused))
                continue
        if not len(chosen):
            # No key as frequent as the threshold kept that many occurrences through its
            # conflicts: the rarer keys still share (stopping here lost up to 40 % on
            # some MobileNetV2 layers).
            chosen = _greedy_matching(lead, tail, key_local, len(row), n_local, 2)
        if not len(chosen):
            if len(removed_reused):
                apply(removed_reused, new_reused)
                continue
            break
        rounds += 1
        # One new column per key taken, numbered in key order.
        keys_taken, new_of_pair = np.unique(key_ids[key_local[chosen]], return_inverse=True)
        code_taken = keys.code[keys_taken]
        rel_new = np.where(code_taken % 2 == 1, 1, -1)
        d_new = (code_taken // 2) % max_d
        ab = code_taken // 2 // max_d
        a_new, b_new = ab // col_limit, ab % col_limit
        cols = add_columns(a_new, b_new, d_new, rel_new,
                           np.maximum(depth[a_new], depth[b_new]) + 1)
        # Each taken pair: its two terms become one term of the new column, at the lead
        # term's shift and sign.
        lead_t, tail_t = lead[chosen], tail[chosen]
        new_terms = Terms(row[lead_t], cols[new_of_pair], shift[lead_t], sign[lead_t])
        apply(np.r_[lead_t, tail_t, removed_reused], _concat_terms(new_terms, new_reused))
    cols = [np.concatenate([x[i] for x in defs]) if defs else empty for i in range(4)]
    final = Terms(row, col, shift, sign).take(order[alive[order]])
    return Sharing(n_inputs, *cols, depth=depth, terms=final, rounds=rounds,
                   seconds=time.perf_counter() - start)


def _concat_terms(x: Terms, y: Terms) -> Terms:
    return Terms(np.r_[x.row, y.row], np.r_[x.col, y.col], np.r_[x.shift, y.shift],
                 np.r_[x.sign, y.sign])


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
