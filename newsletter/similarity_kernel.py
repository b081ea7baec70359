"""The similar ranking's per-row work for big batches, compiled with numba (see SimilarSpace.rank).

Per profile, the numpy path makes its tf-idf product (SparseRows.dense_product: postings gathered,
then added into a dense row), a pass to normalise it and the group-max top-k: ~110 us a profile over 10,000 candidates, more than the
dense product itself. `top_rows` does it on the block the dense product (on the leading principal
directions) left, row by row: the postings of the profile's terms added into a scratch row, their
spread, the scaled row added to the block's, then the best SHORTLIST kept in a short sorted list,
and the other directions' share added for those only.

The best are looked for from a floor, the last row's shortlist floor less GUESS_MARGIN: chunks of
CHUNK scores with none above the floor (most of them) are passed over by a compare in SIMD lanes,
and a row with fewer than SHORTLIST above it (~8% of them) is looked at again from -inf. This beat
a compare per candidate (~1.5 of every 2 cycles of a row, 10,000 of them) by ~20%; group maxima, as
_top_block takes, were slower still compiled (no SIMD for a float maximum here).

Importing numba costs ~0.4 s, so similarity imports this module only for batches of at least
similarity.KERNEL_PROFILES profiles; `nogil` lets the thread per core run it side by side.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CHUNK = 16  # candidates whose scores are compared with the floor at once
GUESS_MARGIN = 1.0  # z-score units (0.25: 35% of rows looked at again, 0.5: 23%, 1.0: 8%)


@njit(cache=True, nogil=True)
def top_rows(
    block, cuts, query_indptr, query_terms, query_weights, term_indptr, term_columns, term_values, term_means,
    common, count, lexical_weight, blocked_indptr, blocked, queries_rest, rest, shortlist, positions, scores,
):  # pragma: no cover - compiled; tests/test_similarity_rank.py compares it with the numpy path
    """Each row of `block` (the dense side's scores over the first `span` candidates on the leading
    directions; overwritten) plus its profile's scaled tf-idf overlaps; the best `shortlist` of them
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
    guess = minus  # a score `keep` candidates of the row should pass (see module doc)
    for row in range(rows):
        mean = 0.0
        for k in range(query_indptr[row], query_indptr[row + 1]):
            term, weight = query_terms[k], query_weights[k]
            if common[term]:
                continue
            mean += np.float64(weight) * term_means[term]
            columns = term_columns[term_indptr[term] : term_indptr[term + 1]]
            postings = term_values[term_indptr[term] : term_indptr[term + 1]]
            for j in range(columns.shape[0]):  # unsigned: no negative-index check per posting (25% faster)
                scratch[np.uint32(columns[j])] += weight * postings[j]
        spread = np.sqrt(max(_sum_of_squares(scratch, count) / max(count, 1) - mean * mean, 0.0))
        scale = lexical_weight / spread if spread > 1e-12 else 0.0
        scale32, offset = np.float32(scale), np.float32(-mean * scale)
        values = block[row]
        for k in range(blocked_indptr[row], blocked_indptr[row + 1]):
            if blocked[k] < span:
                values[blocked[k]] = minus
        cut = min(cuts[row], span)
        _add_scaled(values, scratch, scale32, cut)
        scratch[:] = 0.0
        found = _keep_best(values, cut, guess, kept_values, kept_columns)
        if found < keep and guess > minus:  # fewer than `keep` above the guess: look at every candidate
            found = _keep_best(values, cut, minus, kept_values, kept_columns)
        if found == keep:
            guess = kept_values[keep - 1] - GUESS_MARGIN
        if rest.shape[1]:
            for at in range(found):
                kept_values[at] += _dot(queries_rest[row], rest[kept_columns[at]])
            _sort_best_first(kept_values, kept_columns, found)
        for at in range(min(found, limit)):
            positions[row, at] = kept_columns[at]
            scores[row, at] = kept_values[at] + offset


@njit(cache=True, nogil=True)
def _add_scaled(values, scratch, scale, cut):  # pragma: no cover - compiled
    for column in range(cut):
        values[column] += scale * scratch[column]


@njit(cache=True, nogil=True)
def _any_above(chunk, floor):  # pragma: no cover - compiled
    """In SIMD lanes (a count, no branch): most chunks of a row hold nothing above the floor."""
    above = 0
    for i in range(chunk.shape[0]):
        if chunk[i] > floor:
            above += 1
    return above > 0


@njit(cache=True, nogil=True)
def _keep_best(values, cut, floor, kept_values, kept_columns):  # pragma: no cover - compiled
    """The best len(kept_values) of values[:cut] above `floor` into kept_* (best first, ties to the
    lower column); how many there are. Chunks with nothing above the floor so far are skipped."""
    keep, found = len(kept_values), 0
    for start in range(0, cut, CHUNK):
        chunk = values[start : min(start + CHUNK, cut)]
        if not _any_above(chunk, floor):
            continue
        for i in range(chunk.shape[0]):
            value = chunk[i]
            if value > floor:
                if found < keep:
                    found += 1
                at = found - 1
                while at > 0 and kept_values[at - 1] < value:  # ties stay in column order
                    kept_values[at] = kept_values[at - 1]
                    kept_columns[at] = kept_columns[at - 1]
                    at -= 1
                kept_values[at] = value
                kept_columns[at] = start + i
                if found == keep:
                    floor = kept_values[keep - 1]
    return found


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
