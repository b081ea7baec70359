"""Keyword and trending selection of a big run, a batch of profiles per compiled call (keyword_kernel).

`selection.select_many(..., compiled=True)` sends here every profile that `select` would rank by
keywords and trending alone (no followed authors, no similar share); the rest still go through
`select`. Each index keeps one `KeywordTable`: every keyword the batches met, its postings appended
to flat arrays the kernel reads (capacity doubling, so a run meeting new keywords chunk after chunk
does not copy the whole table each time), and the reason strings the kernel's codes stand for, made
once per keyword instead of once per pick.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, pairwise, repeat
from operator import attrgetter

import numpy as np

from newsletter.models import Pick, Subscriber
from newsletter.selection import PLACES, PaperIndex


class KeywordTable:
    """The keywords one `PaperIndex` has selected with in batches, as the kernel reads them: each
    keyword string a number (its postings' row, reason label, weight, whether it excludes); row k's
    postings docs[ptr[k]:ptr[k + 1]], its exclusion hits hits[hit_ptr[k]:hit_ptr[k + 1]]."""

    def __init__(self, index: PaperIndex):
        self.index = index
        self.number: dict[str, int] = {}  # keyword string -> its number
        self._rows: dict[int, int] = {}  # id of the index's matches -> row
        self._labels: dict[str, int] = {}  # keyword text -> label
        # reason strings: each paper's trending reason, then from labels_at each label's 'matched "text" in
        # title' by place (PLACES), and their continuations ('; "text" in title') by place
        self.reasons: list[str] = list(index._trend_reasons)
        self.labels_at = len(self.reasons)
        self._new: list = []  # matches given a row, not yet in the arrays
        self._keywords: list[tuple[int, int, float, bool]] = []  # numbered, not yet in the arrays
        self._columns = Columns(ptr=np.int64, hit_ptr=np.int64, docs=np.int64, scores=np.float64,
                                places=np.uint8, hits=np.int64, row=np.int64, label=np.int64,
                                weight=np.float64, exclude=np.bool_)
        self._columns.extend(ptr=[[0]], hit_ptr=[[0]])
        self.filters: dict[tuple[int, int | None], int] = {}  # (max age, min upvotes) -> filter number
        self._filter_arrays: tuple[np.ndarray, ...] = ()
        self.recency = np.array(index._recency, dtype=np.int64)
        self.trend_scores = np.array(index._trend_score, dtype=np.float64)

    def learn(self, raw: str) -> int:
        """A keyword string's number (raises ValueError for bad syntax)."""
        keyword, matches = self.index._keyword(raw)
        row = self._rows.get(id(matches))
        if row is None:
            row = self._rows[id(matches)] = len(self._rows)
            self._new.append(matches)
        label = self._labels.get(keyword.text)
        if label is None:
            label = self._labels[keyword.text] = len(self._labels)
            parts = [""] + [f'"{keyword.text}" {place}' for place in PLACES[1:]]
            self.reasons += [f"matched {part}" for part in parts] + [f"; {part}" for part in parts]
        self._keywords.append((row, label, keyword.weight, keyword.exclude))
        number = self.number[raw] = len(self.number)
        return number

    def numbers(self, raws: Iterable[str]) -> list[int]:
        """Each keyword string's number, learning the new ones."""
        raws = list(raws)
        try:
            return list(map(self.number.__getitem__, raws))
        except KeyError:
            return [self.number[raw] if raw in self.number else self.learn(raw) for raw in raws]

    def filter_numbers(self, keys: Iterable[tuple[int, int | None]]) -> list[int]:
        """Each (max age, min upvotes) filter's number, numbering the new ones."""
        keys = list(keys)
        try:
            return list(map(self.filters.__getitem__, keys))
        except KeyError:
            for key in keys:
                if key not in self.filters:
                    self.filters[key] = len(self.filters)
                    self._filter_arrays = ()
            return list(map(self.filters.__getitem__, keys))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The postings table with every learned keyword in it, and the keywords' columns."""
        columns = self._columns
        if self._new:
            new, self._new = self._new, []
            columns.extend(
                ptr=[columns.last("ptr") + np.cumsum([len(m.docs) for m in new])],
                hit_ptr=[columns.last("hit_ptr") + np.cumsum([len(m.hits) for m in new])],
                docs=[m.docs for m in new],
                scores=[m.scores for m in new],
                places=[np.frombuffer(m.where, dtype=np.uint8)[m.docs] for m in new],
                hits=[m.hits for m in new],
            )
        if self._keywords:
            row, label, weight, exclude = zip(*self._keywords)
            self._keywords = []
            columns.extend(row=[row], label=[label], weight=[weight], exclude=[exclude])
        return columns.view("ptr", "docs", "scores", "places", "hit_ptr", "hits", "row", "label", "weight", "exclude")

    def filter_arrays(self) -> tuple[np.ndarray, ...]:
        """Per filter: its age cut, its row of `keeps` (-1: keeps every paper), its trending order."""
        if not self._filter_arrays:
            found = [self.index._filter(*key) for key in self.filters]
            rows, kept = [], []
            for flt in found:
                rows.append(-1 if flt.keep is None else len(kept))
                if flt.keep is not None:
                    kept.append(flt.keep)
            keeps = np.zeros((len(kept), len(self.index)), dtype=np.bool_)
            for row, keep in enumerate(kept):
                keeps[row, : len(keep)] = keep > 0
            self._filter_arrays = (
                np.array([flt.cut for flt in found], dtype=np.int64), np.array(rows, dtype=np.int64), keeps,
                *_ragged([flt.trending for flt in found]), self.trend_scores,
            )
        return self._filter_arrays


class Columns:
    """Growing numpy arrays, one per name; capacity doubles, so appending chunk after chunk copies
    each value a constant number of times on average."""

    def __init__(self, **dtypes):
        self._arrays = {name: np.empty(0, dtype=dtype) for name, dtype in dtypes.items()}
        self._sizes = dict.fromkeys(dtypes, 0)

    def extend(self, **pieces) -> None:
        """Each named column extended by its pieces (sequences of values), copied once, straight into
        the column: a concatenation first and then a copy took 6x as long for a big run's keywords."""
        for name, some in pieces.items():
            array, at = self._arrays[name], self._sizes[name]
            end = at + sum(map(len, some))
            if end > len(array):
                grown = np.empty(max(end, 2 * len(array)), dtype=array.dtype)
                grown[:at] = array[:at]
                array = self._arrays[name] = grown
            np.concatenate(some, out=array[at:end])
            self._sizes[name] = end

    def last(self, name: str):
        return self._arrays[name][self._sizes[name] - 1]

    def view(self, *names: str) -> tuple[np.ndarray, ...]:
        return tuple(self._arrays[name][: self._sizes[name]] for name in names)


def _ragged(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ints as (pointers, values), list r being values[pointers[r]:pointers[r + 1]]."""
    pointers = _pointers(map(len, lists), len(lists))
    return pointers, np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(pointers[-1]))


def _pointers(lengths: Iterable[int], count: int) -> np.ndarray:
    """Where each of `count` runs of these lengths starts in their concatenation, and the total."""
    pointers = np.zeros(count + 1, dtype=np.int64)
    pointers[1:] = np.fromiter(lengths, dtype=np.int64, count=count)
    return np.cumsum(pointers, out=pointers)


def batchable(subscriber: Subscriber, similar: list[Pick] | None) -> bool:
    """Whether `select` would pick for this profile by keywords and trending alone: no followed
    authors, no similar picks given."""
    return subscriber.mode in ("keywords", "mixed", "trending") and not subscriber.authors and not similar


def table_of(index: PaperIndex) -> KeywordTable:
    """The index's table, made on first use."""
    if index._table is None:
        index._table = KeywordTable(index)
    return index._table


def prepare(index: PaperIndex, keywords: Iterable[str]) -> None:
    """Lay `keywords` out in the index's table and load the compiled loop (numba's import and its
    machine code, ~0.8-1.1 s here), so that worker processes forked afterwards share both instead of each
    doing it."""
    table = table_of(index)
    for raw in keywords:
        if raw not in table.number:
            table.learn(raw)
    select_batch(index, [], [])


def select_batch(index: PaperIndex, subscribers: list[Subscriber], sent: list[set[str]]) -> list[list[Pick]]:
    """`select` of each subscriber (`batchable` ones) with `sent[r]` already sent: the same picks.

    The batch goes to the kernel and back as whole columns (`map` over all profiles, not a loop of
    Python statements per profile): at ~12 picks a profile, the Python around the kernel costs
    more than the kernel itself."""
    from newsletter.keyword_kernel import select_batch as kernel

    table = table_of(index)
    count = len(subscribers)
    keywords = list(map(_KEYWORDS, subscribers))
    limits = np.fromiter(map(_LIMIT, subscribers), dtype=np.int64, count=count)
    modes = np.array(list(map(_MODE, subscribers)), dtype=object)
    shares = np.fromiter(map(_SHARE, subscribers), dtype=np.float64, count=count)
    mixed = limits - np.rint(limits * shares).astype(np.int64)  # round(), half to even as Python's
    wanted = np.where(modes == "keywords", limits, np.where(modes == "trending", 0, mixed))
    request_kw = table.numbers(chain.from_iterable(keywords))
    sent_docs = np.fromiter(map(index._position.get, chain.from_iterable(sent), repeat(-1)), dtype=np.int64)
    filters = table.filter_numbers(zip(map(_WINDOW, subscribers), map(_MIN_UPVOTES, subscribers)))
    picks_at = np.empty(count + 1, dtype=np.int64)
    total = int(limits.sum())
    out_docs, out_scores, out_reason = (np.empty(total, dtype=dtype) for dtype in (np.int64, np.float64, np.int64))
    several_ptr = np.empty(total + 1, dtype=np.int64)
    several_parts = np.empty(max(len(request_kw) * int(limits.max(initial=1)), 1), dtype=np.int64)
    several = kernel(
        *table.arrays(),
        _pointers(map(len, keywords), count), np.array(request_kw, dtype=np.int64),
        _pointers(map(len, sent), count), sent_docs,
        np.array(filters, dtype=np.int64), wanted, limits, modes != "keywords",
        *table.filter_arrays(), table.recency, len(PLACES), table.labels_at,
        picks_at, out_docs, out_scores, out_reason, several_ptr, several_parts,
    )
    reasons, end = table.reasons, int(picks_at[count])
    bounds = several_ptr[: several + 1].tolist()
    parts = list(map(reasons.__getitem__, several_parts[: bounds[-1]].tolist()))
    joined = ["".join(parts[start:stop]) for start, stop in pairwise(bounds)]
    why = [[reasons[reason]] if reason >= 0 else [joined[~reason]] for reason in out_reason[:end].tolist()]
    picks = list(map(Pick, map(index.papers.__getitem__, out_docs[:end].tolist()), out_scores[:end].tolist(), why))
    return [picks[start:stop] for start, stop in pairwise(picks_at.tolist())]


_KEYWORDS, _LIMIT, _MODE, _SHARE, _WINDOW, _MIN_UPVOTES = map(
    attrgetter, ("keywords", "max_items", "mode", "trending_share", "window_days", "min_upvotes")
)
