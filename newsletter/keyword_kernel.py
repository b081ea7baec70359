"""The selection of many keyword and trending profiles in one compiled loop (numba; README: "Choosing papers").

`select` spends ~120 us on a profile, nearly all of it the overhead of a dozen numpy calls and the
Python around them, where the work itself (adding up ~1,000 postings, keeping the best ten) takes a
few microseconds. `select_batch` does a whole batch of profiles in one call of this loop: for each
it adds up its keywords' postings in the profile's keyword order (so every sum is the float
`numpy.bincount` gives), drops the papers an exclusion, the upvote filter or the ledger rules out,
keeps the best `wanted` by (score descending, recency ascending), and fills a mixed or trending
profile's other slots in trending order: the very picks `select` makes. tests/test_keyword_batch.py
holds both ways to the same picks, bit for bit, on every kind of profile.

Loading numba costs ~0.8-1.1 s a process here (its import, and its numpy support importing
scipy.linalg), more than a few thousand profiles save: only a big run uses this (see
`selection.BATCH_PROFILES`). The machine code is cached beside this file (`cache=True`), so only a
checkout's first use compiles it (~3-4 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def _search(values, lo, hi, value):  # pragma: no cover - compiled
    """The first i in [lo, hi) with values[i] >= value (hi when there is none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def select_batch(
    ptr, docs, scores, places, hit_ptr, hits,
    kw_row, kw_label, kw_weight, kw_exclude,
    request_ptr, request_kw, sent_ptr, sent_docs, request_filter, wanted, limits, fill,
    cuts, keep_rows, keeps, trend_ptr, trend_docs, trend_scores, recency, place_count, labels_at,
    out_ptr, out_docs, out_scores, out_reason, several_ptr, several_parts,
):  # pragma: no cover - compiled; tests/test_keyword_batch.py checks it against `select`
    """Select for request r: its keywords request_kw[request_ptr[r]:request_ptr[r + 1]] (numbers into
    kw_*: a table row, a reason label, a weight, whether it excludes), papers already sent
    sent_docs[...] (-1: not in the index), filter f = request_filter[r]: papers [0, cuts[f]) kept by
    keeps[keep_rows[f]] (row -1: all), trending order trend_docs[trend_ptr[f]:trend_ptr[f + 1]].
    Its best wanted[r] keyword picks, then (fill[r]) trending picks up to limits[r], go to
    out_docs / out_scores [out_ptr[r]:out_ptr[r + 1]]; out_reason there is the index of each pick's
    reason string: the trending reason of paper d is d; a keyword's match in a place is
    `labels_at + label * 2 * place_count + place` ('matched "text" in title'), and the same plus
    place_count its continuation ('; "text" in title'). A pick that several keywords matched gets
    ~m, m counting such picks in the batch, its reason being the strings of several_parts[several_ptr[m]:
    several_ptr[m + 1]] put together (a match, then continuations, in the profile's keyword order)."""
    count = recency.shape[0]
    total = np.zeros(count)
    seen = np.full(count, -1, dtype=np.int64)
    blocked = np.full(count, -1, dtype=np.int64)
    touched = np.empty(count, dtype=np.int64)
    width = 1
    for r in range(limits.shape[0]):
        width = max(width, wanted[r])
    best_scores = np.empty(width)
    best_recency = np.empty(width, dtype=np.int64)
    best_docs = np.empty(width, dtype=np.int64)
    several = 0
    several_ptr[0] = 0
    o = 0
    out_ptr[0] = 0
    for r in range(request_filter.shape[0]):
        f = request_filter[r]
        cut = cuts[f]
        row = keep_rows[f]
        first, last = request_ptr[r], request_ptr[r + 1]
        for j in range(sent_ptr[r], sent_ptr[r + 1]):
            if sent_docs[j] >= 0:
                blocked[sent_docs[j]] = r
        for j in range(first, last):
            k = request_kw[j]
            if kw_exclude[k]:
                k = kw_row[k]
                for i in range(hit_ptr[k], hit_ptr[k + 1]):
                    if hits[i] >= cut:
                        break
                    blocked[hits[i]] = r
        limit = wanted[r]
        found = 0
        if limit > 0:
            for j in range(first, last):
                k = request_kw[j]
                if kw_exclude[k]:
                    continue
                weight = kw_weight[k]
                k = kw_row[k]
                end = _search(docs, ptr[k], ptr[k + 1], cut)
                for i in range(ptr[k], end):
                    doc = docs[i]
                    if seen[doc] != r:
                        seen[doc] = r
                        total[doc] = 0.0
                        touched[found] = doc
                        found += 1
                    total[doc] += scores[i] if weight == 1.0 else weight * scores[i]
        kept = 0
        for t in range(found):
            doc = touched[t]
            score = total[doc]
            if kept == limit and score < best_scores[kept - 1]:
                continue
            if score <= 0.0 or blocked[doc] == r or (row >= 0 and not keeps[row, doc]):
                continue
            age = recency[doc]
            if kept == limit and score == best_scores[kept - 1] and age >= best_recency[kept - 1]:
                continue
            at = kept if kept < limit else limit - 1  # insertion into the sorted best list
            while at > 0 and (
                best_scores[at - 1] < score or (best_scores[at - 1] == score and best_recency[at - 1] > age)
            ):
                best_scores[at] = best_scores[at - 1]
                best_recency[at] = best_recency[at - 1]
                best_docs[at] = best_docs[at - 1]
                at -= 1
            best_scores[at] = score
            best_recency[at] = age
            best_docs[at] = doc
            if kept < limit:
                kept += 1
        for t in range(kept):
            doc = best_docs[t]
            blocked[doc] = r
            out_docs[o] = doc
            out_scores[o] = best_scores[t]
            start = several_ptr[several]
            matched = start
            for j in range(first, last):
                k = request_kw[j]
                if kw_exclude[k]:
                    continue
                label = kw_label[k]
                k = kw_row[k]
                at = _search(docs, ptr[k], ptr[k + 1], doc)
                if at < ptr[k + 1] and docs[at] == doc and places[at]:
                    several_parts[matched] = labels_at + (2 * label + (matched > start)) * place_count + places[at]
                    matched += 1
            if matched == start + 1:
                out_reason[o] = several_parts[start]
            else:
                out_reason[o] = ~several
                several += 1
                several_ptr[several] = matched
            o += 1
        if fill[r]:
            end = out_ptr[r] + limits[r]
            for i in range(trend_ptr[f], trend_ptr[f + 1]):
                if o >= end:
                    break
                doc = trend_docs[i]
                if blocked[doc] != r:
                    out_docs[o] = doc
                    out_scores[o] = trend_scores[doc]
                    out_reason[o] = doc
                    o += 1
        out_ptr[r + 1] = o
    return several
