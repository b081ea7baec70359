"""The keyword ranking of many profiles at once, compiled with numba (README: "Choosing papers").

`PaperIndex._keyword_ranking` ranks one profile with a few numpy calls, ~65 us each, most of it the
calls' own overhead; over 100,000 profiles that is most of selection's time. `rank` does the same
ranking for a whole batch of profiles in one compiled loop (~5 us a profile): for each profile it
adds up its keywords' postings in the profile's keyword order (so every sum is the same float as
`numpy.bincount` gives), zeroes the papers an exclusion, the upvote filter or the ledger rules out,
and keeps the best `limit` by (score descending, recency ascending): the very pairs the numpy way
returns. tests/test_selection_kernel.py compares both on every kind of profile.

Importing numba costs ~0.45 s and loading the cached machine code ~0.1 s, more than a `send` of a
few thousand profiles spends ranking them: `PaperIndex` calls this module only once a run has many
profiles to rank (selection.COMPILED_AFTER). The compiled code is cached beside this file
(`cache=True`), so only a machine's first big run pays the compile (~2 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rank(
    kw_ptr, kw_docs, kw_scores, kw_places, hit_ptr, hit_docs,
    pos_ptr, pos_kw, pos_weight, exc_ptr, exc_kw, sent_ptr, sent_docs,
    cuts, keep_rows, keeps, recency, limits, radix, out_docs, out_scores, out_places, out_counts,
):  # pragma: no cover - compiled; tests/test_selection_kernel.py checks it against the numpy way
    """Rank profile r (= request r): positives pos_kw[pos_ptr[r]:pos_ptr[r + 1]] with their weights,
    exclusions exc_kw[...], already sent sent_docs[...], papers [0, cuts[r]) kept by keeps[keep_rows[r]]
    (row -1: every paper); its best limits[r] (paper, score) pairs into out_docs[r] / out_scores[r], and
    where its positives matched each of them into out_places[r]: the PLACES index of positive j (0 for no
    match) is digit j of that number in base `radix`."""
    count = recency.shape[0]
    total = np.zeros(count)
    stamp = np.full(count, -1, dtype=np.int64)
    touched = np.empty(count, dtype=np.int64)
    width = out_docs.shape[1]
    best_scores = np.empty(width)
    best_recency = np.empty(width, dtype=np.int64)
    best_docs = np.empty(width, dtype=np.int64)
    for r in range(cuts.shape[0]):
        cut = cuts[r]
        found = 0
        for j in range(pos_ptr[r], pos_ptr[r + 1]):
            k = pos_kw[j]
            weight = pos_weight[j]
            start = kw_ptr[k]
            end = start + np.searchsorted(kw_docs[start : kw_ptr[k + 1]], cut)
            for i in range(start, end):
                doc = kw_docs[i]
                if stamp[doc] != r:
                    stamp[doc] = r
                    total[doc] = 0.0
                    touched[found] = doc
                    found += 1
                total[doc] += kw_scores[i] if weight == 1.0 else weight * kw_scores[i]
        for j in range(exc_ptr[r], exc_ptr[r + 1]):
            k = exc_kw[j]
            for i in range(hit_ptr[k], hit_ptr[k + 1]):
                doc = hit_docs[i]
                if doc >= cut:
                    break
                if stamp[doc] == r:
                    total[doc] = 0.0
        for j in range(sent_ptr[r], sent_ptr[r + 1]):
            doc = sent_docs[j]
            if doc < cut and stamp[doc] == r:
                total[doc] = 0.0
        row = keep_rows[r]
        limit = limits[r]
        kept = 0
        for t in range(found if limit > 0 else 0):
            doc = touched[t]
            score = total[doc]
            if score <= 0.0 or (row >= 0 and not keeps[row, doc]):
                continue
            age = recency[doc]
            if kept == limit and (score < best_scores[kept - 1] or (score == best_scores[kept - 1] and age >= best_recency[kept - 1])):
                continue
            at = kept if kept < limit else limit - 1  # insertion into the sorted best list
            while at > 0 and (best_scores[at - 1] < score or (best_scores[at - 1] == score and best_recency[at - 1] > age)):
                best_scores[at] = best_scores[at - 1]
                best_recency[at] = best_recency[at - 1]
                best_docs[at] = best_docs[at - 1]
                at -= 1
            best_scores[at] = score
            best_recency[at] = age
            best_docs[at] = doc
            if kept < limit:
                kept += 1
        out_counts[r] = kept
        for t in range(kept):
            doc = best_docs[t]
            out_docs[r, t] = doc
            out_scores[r, t] = best_scores[t]
            code = 0
            for j in range(pos_ptr[r + 1] - 1, pos_ptr[r] - 1, -1):
                k = pos_kw[j]
                start = kw_ptr[k]
                at = start + np.searchsorted(kw_docs[start : kw_ptr[k + 1]], doc)
                code = code * radix + (kw_places[at] if at < kw_ptr[k + 1] and kw_docs[at] == doc else 0)
            out_places[r, t] = code
