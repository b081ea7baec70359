"""The Python side of the compiled keyword ranking (keyword_kernel): the table of every keyword's
postings it reads, and one call that ranks a batch of profiles and turns the results into picks.

Imported by selection, but numba only when `rank_compiled` first runs (a run of COMPILED_AFTER profiles).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from newsletter.models import Pick

if TYPE_CHECKING:
    from newsletter.selection import PaperIndex, _Matches, _Ranking

class PostingsTable:
    """Every keyword's `docs`, `scores`, `places` and `hits` in one set of growing arrays, as the compiled kernel
    reads them (keyword k's docs are docs[ptr[k]:ptr[k + 1]]); capacity doubles, so a run that meets
    new keywords chunk after chunk does not copy the whole table each time."""

    def __init__(self) -> None:
        self.ptr, self.hit_ptr = [0], [0]
        self.docs = np.empty(0, dtype=np.int64)
        self.scores = np.empty(0)
        self.places = np.empty(0, dtype=np.uint8)  # each posting's PLACES index
        self.hits = np.empty(0, dtype=np.int64)
        self.arrays: tuple[np.ndarray, ...] = ()

    def add(self, found: list[_Matches]) -> None:
        """Give every one of `found` without a number its row (all new ones written in one go)."""
        new: list[_Matches] = []
        for matches in found:
            if matches.number < 0:
                matches.number = len(self.ptr) - 1 + len(new)
                new.append(matches)
        if not new and self.arrays:
            return
        end, hits_end = self.ptr[-1], self.hit_ptr[-1]
        self.ptr += (end + np.cumsum([len(m.docs) for m in new], dtype=np.int64)).tolist()
        self.hit_ptr += (hits_end + np.cumsum([len(m.hits) for m in new], dtype=np.int64)).tolist()
        if new:
            self.docs = _put(self.docs, np.concatenate([m.docs for m in new]), end)
            self.scores = _put(self.scores, np.concatenate([m.scores for m in new]), end)
            self.places = _put(self.places, np.concatenate([m.places for m in new]), end)
            self.hits = _put(self.hits, np.concatenate([m.hits for m in new]), hits_end)
        self.arrays = (
            np.array(self.ptr, dtype=np.int64), self.docs, self.scores, self.places,
            np.array(self.hit_ptr, dtype=np.int64), self.hits,
        )


def _put(array: np.ndarray, values: np.ndarray, at: int) -> np.ndarray:
    """`values` written at `at` of `array`, which is grown (doubled) when too short."""
    end = at + len(values)
    if end > len(array):
        grown = np.empty(max(end, 2 * len(array)), dtype=array.dtype)
        grown[:at] = array[:at]
        array = grown
    array[at:end] = values
    return array


def _ragged(lists: list) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ints as (pointers, values), list r being values[pointers[r]:pointers[r + 1]]."""
    pointers = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(values) for values in lists], out=pointers[1:])
    return pointers, np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(pointers[-1]))


@lru_cache(maxsize=1 << 16)
def _matched(code: int, radix: int) -> tuple[tuple[int, int], ...]:
    """(positive keyword, PLACES index) of each keyword a pick matched, from the kernel's code for it:
    digit j in base `radix` (len(PLACES)) is keyword j's place (see keyword_kernel.rank)."""
    found = []
    j = 0
    while code:
        code, place = divmod(code, radix)
        if place:
            found.append((j, place))
        j += 1
    return tuple(found)


def rank_compiled(index: PaperIndex, requests: list[_Ranking]) -> list[tuple[list[int], list[Pick]]]:
    """`PaperIndex._keyword_rankings` by the compiled kernel: each request's keyword picks and their positions."""
    from newsletter.keyword_kernel import rank
    from newsletter.selection import PLACES

    radix = len(PLACES)
    positives, excluded = [], []
    for r in requests:
        positives += [matches for _, matches in r.positives]
        excluded += r.excluded
    index._table.add(positives + excluded)
    filters = {id(r.flt.keep): r.flt.keep for r in requests if r.flt.keep is not None}  # upvote filters
    rows = {key: row for row, key in enumerate(filters)}
    keeps = np.zeros((len(filters), len(index.papers)), dtype=np.bool_)
    for row, keep in enumerate(filters.values()):
        keeps[row, : len(keep)] = keep > 0
    if index._recency_array is None:
        index._recency_array = np.array(index._recency, dtype=np.int64)
    limits = np.array([r.limit for r in requests], dtype=np.int64)
    out_docs = np.empty((len(requests), max(int(limits.max()), 1)), dtype=np.int64)
    out_scores = np.empty(out_docs.shape)
    out_places = np.empty(out_docs.shape, dtype=np.int64)  # PLACES indexes, a digit per positive keyword
    counts = np.empty(len(requests), dtype=np.int64)
    rank(
        *index._table.arrays,
        *_ragged([[m.number for _, m in r.positives] for r in requests]),
        np.array([k.weight for r in requests for k, _ in r.positives], dtype=np.float64),
        *_ragged([[m.number for m in r.excluded] for r in requests]),
        *_ragged([r.sent for r in requests]),
        np.array([r.flt.cut for r in requests], dtype=np.int64),
        np.array([-1 if r.flt.keep is None else rows[id(r.flt.keep)] for r in requests], dtype=np.int64),
        keeps, index._recency_array, limits, radix, out_docs, out_scores, out_places, counts,
    )
    papers, places = index.papers, index._places
    found = []
    for r, docs, scores, codes, count in zip(
        requests, out_docs.tolist(), out_scores.tolist(), out_places.tolist(), counts.tolist()
    ):
        docs = docs[:count]
        labels = [places[keyword.text] for keyword, _ in r.positives]
        picks = []
        for i, score, code in zip(docs, scores, codes[:count]):
            matched = _matched(code, radix)
            if len(matched) == 1:  # most picks: one keyword matched, a ready-made reason
                (k, place), = matched
                reason = labels[k][place + radix]
            else:
                reason = "matched " + "; ".join([labels[k][place] for k, place in matched])
            picks.append(Pick(papers[i], score, [reason]))
        found.append((docs, picks))
    return found
