"""The similar ranking's per-row work for big batches, compiled with numba (see SimilarSpace.rank).

Per profile, numpy and scipy make one sparse tf-idf product (a CSR row built, then densified), a pass
to normalise it and the group-max top-k: ~110 us a profile over 10,000 candidates, more than the
dense product itself. `top_rows` does it on the block the dense product (on the leading principal
directions) left, row by row: the postings of the profile's terms added into a scratch row, their
spread, then one pass adding the scaled row to the block's while keeping the best SHORTLIST in a
short sorted list (a new one rarely enters it: the pass is a compare per candidate; group maxima
first, as _top_block does, measured slower compiled), then the other directions' share for those.

Importing numba costs ~0.4 s, so similarity imports this module only for batches of at least
similarity.KERNEL_PROFILES profiles; `nogil` lets the thread per core run it side by side.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def top_rows(
    block, cuts, query_indptr, query_terms, query_weights, term_indptr, term_columns, term_values, term_means,
    common, count, lexical_weight, blocked_indptr, blocked, queries_rest, rest, shortlist, positions, scores,
):  # pragma: no cover - compiled; tests/test_similarity_rank.py compares it with the numpy path
    """Each row of `block` (the dense side's scores over the first `span` candidates on the leading
    directions, overwritten) plus its profile's scaled tf-idf overlaps; the best `shortlist` of them
    before the row's cut, blocked ones left out, get the other directions' share (`queries_rest[row]`
    times their `rest` rows), and the best len(positions[row]) of these, best first (ties to the lower
    position), go into `positions` / `scores` (left at -1 / -inf where there are fewer).

    The tf-idf overlaps are the sum over the profile's terms, `common` ones left out, of weight x the
    term's postings (`term_*`: by_term's CSR). Their z-score weight is lexical_weight over their deviation
    across all `count` candidates (their mean: the weights times `term_means`); the mean, so scaled, is
    the row's offset, added to the scores only (it moves no candidate)."""
    rows, span = block.shape
    limit = positions.shape[1]
    keep = max(shortlist, limit) if rest.shape[1] else limit
    scratch = np.zeros(count, dtype=np.float32)
    kept_values = np.empty(keep, dtype=np.float32)  # the best so far, best first
    kept_columns = np.empty(keep, dtype=np.int64)
    minus = np.float32(-np.inf)
    for row in range(rows):
        mean = 0.0
        for k in range(query_indptr[row], query_indptr[row + 1]):
            term, weight = query_terms[k], query_weights[k]
            if common[term]:
                continue
            mean += np.float64(weight) * term_means[term]
            for j in range(term_indptr[term], term_indptr[term + 1]):
                scratch[term_columns[j]] += weight * term_values[j]
        spread = np.sqrt(max(_sum_of_squares(scratch, count) / max(count, 1) - mean * mean, 0.0))
        scale = lexical_weight / spread if spread > 1e-12 else 0.0
        scale32, offset = np.float32(scale), np.float32(-mean * scale)
        values = block[row]
        for k in range(blocked_indptr[row], blocked_indptr[row + 1]):
            if blocked[k] < span:
                values[blocked[k]] = minus
        found, floor = 0, minus
        for column in range(min(cuts[row], span)):
            value = values[column] + scale32 * scratch[column]
            if value > floor:  # rarely, after the first few: a branch the CPU predicts
                if found < keep:
                    found += 1
                at = found - 1
                while at > 0 and kept_values[at - 1] < value:  # ties stay in column order
                    kept_values[at] = kept_values[at - 1]
                    kept_columns[at] = kept_columns[at - 1]
                    at -= 1
                kept_values[at] = value
                kept_columns[at] = column
                if found == keep:
                    floor = kept_values[keep - 1]
        scratch[:] = 0.0
        if rest.shape[1]:
            for at in range(found):
                kept_values[at] += _dot(queries_rest[row], rest[kept_columns[at]])
            _sort_best_first(kept_values, kept_columns, found)
        for at in range(min(found, limit)):
            positions[row, at] = kept_columns[at]
            scores[row, at] = kept_values[at] + offset


@njit(cache=True, nogil=True)
def _sort_best_first(values, columns, size):  # pragma: no cover - compiled
    """Insertion sort, best first, ties to the lower column (a few dozen, nearly in order already)."""
    for end in range(1, size):
        value, column = values[end], columns[end]
        at = end
        while at > 0 and (values[at - 1] < value or (values[at - 1] == value and columns[at - 1] > column)):
            values[at], columns[at] = values[at - 1], columns[at - 1]
            at -= 1
        values[at], columns[at] = value, column


@njit(cache=True, nogil=True, fastmath=True)
def _dot(a, b):  # pragma: no cover - compiled
    total = np.float32(0.0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(cache=True, nogil=True, fastmath=True)
def _sum_of_squares(values, count):  # pragma: no cover - compiled
    """In float64, in any order: fastmath lets it run in SIMD lanes (in order it waits on every add, 7x slower)."""
    total = 0.0
    for column in range(count):
        value = np.float64(values[column])
        total += value * value
    return total
