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
rounds, matching steps and the terms of the joins taken. A key is only accepted if the
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


def _replace_terms(cur: Terms, removed: np.ndarray, new_terms: Terms,
                   also: tuple[np.ndarray, Terms] | None = None) -> Terms:
    """
    `cur` without the terms `removed`, plus `new_terms`, sorted by (row, col, shift);
    `also`: a second (removed, new terms) replacement of other terms, applied with it.
    """
    if also is not None:
        removed = np.r_[removed, also[0]]
        new_terms = Terms(*(np.r_[x, y] for x, y in zip(
            (new_terms.row, new_terms.col, new_terms.shift, new_terms.sign),
            (also[1].row, also[1].col, also[1].shift, also[1].sign))))
    keep = np.ones(len(cur), bool)
    keep[removed] = False
    rest = cur.take(np.flatnonzero(keep))
    merged = Terms(*(np.r_[x, y] for x, y in zip(
        (rest.row, rest.col, rest.shift, rest.sign),
        (new_terms.row, new_terms.col, new_terms.shift, new_terms.sign))))
    return merged.take(np.lexsort((merged.shift, merged.col, merged.row)))


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


def _reuse_columns(
    cur: Terms, lead: np.ndarray, tail: np.ndarray, code: np.ndarray,
    defs: list[tuple[np.ndarray, ...]], n_inputs: int, n_cols: int, max_d: int,
) -> tuple[np.ndarray, Terms] | None:
    """
    Pairs (lead, tail, code as in `share_terms`) equal to an existing shared column up to
    a shift and a sign: a term-disjoint set of them, the terms they consume and the terms
    of the existing columns that replace them; None if there is none.
    """
    a, b, d, rel = (np.concatenate([x[i] for x in defs]) for i in range(4))
    # Only pairs whose lead column leads some shared column can be one (cheap to test).
    leads = np.zeros(n_cols, bool)
    leads[a] = True
    maybe = np.flatnonzero(leads[cur.col[lead]])
    lead, tail, code = lead[maybe], tail[maybe], code[maybe]
    fits = d < max_d
    col_code = ((a * n_cols + b) * max_d + d) * 2 + (rel > 0)
    col_id = np.flatnonzero(fits)
    col_code = col_code[fits]
    order = np.argsort(col_code)
    col_code, col_id = col_code[order], col_id[order]
    at = np.minimum(np.searchsorted(col_code, code), max(len(col_code) - 1, 0))
    hit = np.flatnonzero(col_code[at] == code) if len(col_code) else np.zeros(0, np.int64)
    if not len(hit):
        return None
    chosen = _greedy_matching(lead[hit], tail[hit], col_id[at[hit]], len(cur), len(a), 1)
    lead_t, tail_t = lead[hit[chosen]], tail[hit[chosen]]
    column = n_inputs + col_id[at[hit[chosen]]]
    new_terms = Terms(cur.row[lead_t], column, cur.shift[lead_t], cur.sign[lead_t])
    return np.r_[lead_t, tail_t], new_terms


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
        reused = None
        if reuse and defs:
            # A pair that a shared column already computes (its other occurrences taken
            # by earlier rounds, this one lost to a conflict) costs nothing more: it
            # becomes a term of that column.
            reused = _reuse_columns(cur, lead, tail, code, defs, n_inputs, n_cols, max_d)
            if reused is not None:
                # The rest of the round works on the pairs of the terms still free.
                free = np.ones(len(cur), bool)
                free[reused[0]] = False
                rest = free[lead] & free[tail]
                lead, tail, code = lead[rest], tail[rest], code[rest]
        uniq, key, count = np.unique(code, return_inverse=True, return_counts=True)
        shared = count[key] >= 2
        if not shared.any():
            if reused is not None:
                cur = _replace_terms(cur, *reused)
                continue
            break
        lead, tail, key = lead[shared], tail[shared], key[shared]
        top = int(count.max())
        # Frequent keys: pair matching, a round of the most frequent ones at a time.
        threshold = max(3 if top >= 3 else 2, int(top * round_ratio))
        chosen = (_greedy_matching(lead, tail, key, len(cur), len(uniq), threshold)
                  if threshold > 2 else np.zeros(0, np.int64))
        if not len(chosen) and threshold > 3:
            chosen = _greedy_matching(lead, tail, key, len(cur), len(uniq), 3)
        if not len(chosen) and join_rows:
            # The tail (keys twice at most after conflicts): whole subexpressions common
            # to two rows at once, instead of pair by pair.
            joined = _join_row_pairs(cur, lead, tail, key, len(uniq), depth, max_depth)
            if joined is not None:
                rounds += 1
                (a_new, b_new, d_new, rel_new, depth_new), removed, new_terms = joined
                defs.append((a_new, b_new, d_new, rel_new))
                depth = np.r_[depth, depth_new]
                n_cols += len(a_new)
                cur = _replace_terms(cur, removed, new_terms, reused)
                continue
        if not len(chosen):
            # No key as frequent as the threshold kept that many occurrences through its
            # conflicts: the rarer keys still share (stopping here lost up to 40 % on
            # some MobileNetV2 layers).
            chosen = _greedy_matching(lead, tail, key, len(cur), len(uniq), 2)
        if not len(chosen):
            if reused is not None:
                cur = _replace_terms(cur, *reused)
                continue
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
        new_terms = Terms(
            cur.row[lead_t], n_cols + new_of_pair, cur.shift[lead_t], cur.sign[lead_t]
        )
        n_cols += len(keys_taken)
        cur = _replace_terms(cur, np.r_[lead_t, tail_t], new_terms, reused)
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
