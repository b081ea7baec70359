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
from functools import partial
from itertools import chain, repeat

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
        self.parts: list[str] = []  # label * len(PLACES) + place -> '"text" in title'
        # reason strings: each paper's trending reason, then (from labels_at) 'matched "text" in title' by part
        self.reasons: list[str] = list(index._trend_reasons)
        self.labels_at = len(self.reasons)
        self._new: list = []  # matches given a row, not yet in the arrays
        self._keywords: list[tuple[int, int, float, bool]] = []  # numbered, not yet in the arrays
        self._columns = Columns(ptr=np.int64, hit_ptr=np.int64, docs=np.int64, scores=np.float64,
                                places=np.uint8, hits=np.int64, row=np.int64, label=np.int64,
                                weight=np.float64, exclude=np.bool_)
        self._columns.append(ptr=[0], hit_ptr=[0])
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
            self.parts += parts
            self.reasons += [f"matched {part}" for part in parts]
        self._keywords.append((row, label, keyword.weight, keyword.exclude))
        number = self.number[raw] = len(self.number)
        return number

    def filter(self, max_age_days: int, min_upvotes: int | None) -> int:
        number = self.filters.get((max_age_days, min_upvotes))
        if number is None:
            number = self.filters[(max_age_days, min_upvotes)] = len(self.filters)
            self._filter_arrays = ()
        return number

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The postings table with every learned keyword in it, and the keywords' columns."""
        columns = self._columns
        if self._new:
            new, self._new = self._new, []
            columns.append(
                ptr=columns.last("ptr") + np.cumsum([len(m.docs) for m in new]),
                hit_ptr=columns.last("hit_ptr") + np.cumsum([len(m.hits) for m in new]),
                docs=np.concatenate([m.docs for m in new]),
                scores=np.concatenate([m.scores for m in new]),
                places=np.concatenate([np.frombuffer(m.where, dtype=np.uint8)[m.docs] for m in new]),
                hits=np.concatenate([m.hits for m in new]),
            )
        if self._keywords:
            row, label, weight, exclude = zip(*self._keywords)
            self._keywords = []
            columns.append(row=row, label=label, weight=weight, exclude=exclude)
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

    def append(self, **values) -> None:
        for name, some in values.items():
            array, at = self._arrays[name], self._sizes[name]
            some = np.asarray(some, dtype=array.dtype)
            end = at + len(some)
            if end > len(array):
                grown = np.empty(max(end, 2 * len(array)), dtype=array.dtype)
                grown[:at] = array[:at]
                array = self._arrays[name] = grown
            array[at:end] = some
            self._sizes[name] = end

    def last(self, name: str):
        return self._arrays[name][self._sizes[name] - 1]

    def view(self, *names: str) -> tuple[np.ndarray, ...]:
        return tuple(self._arrays[name][: self._sizes[name]] for name in names)


def _ragged(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ints as (pointers, values), list r being values[pointers[r]:pointers[r + 1]]."""
    pointers = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(values) for values in lists], out=pointers[1:])
    return pointers, np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(pointers[-1]))


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
    """`select` of each subscriber (`batchable` ones) with `sent[r]` already sent: the same picks."""
    from newsletter.keyword_kernel import select_batch as kernel

    table = table_of(index)
    number, learn, filter_number, position = table.number, table.learn, table.filter, index._position.get
    request_ptr, request_kw, sent_ptr, sent_docs = [0], [], [0], []
    filters, wanted, limits, fill = [], [], [], []
    for subscriber, already in zip(subscribers, sent):
        try:
            request_kw += [number[raw] for raw in subscriber.keywords]
        except KeyError:
            request_kw += [number[raw] if raw in number else learn(raw) for raw in subscriber.keywords]
        request_ptr.append(len(request_kw))
        sent_docs += map(position, already, repeat(-1))
        sent_ptr.append(len(sent_docs))
        filters.append(filter_number(subscriber.window_days, subscriber.min_upvotes))
        limit = subscriber.max_items
        limits.append(limit)
        mode = subscriber.mode
        if mode == "keywords":
            wanted.append(limit)
            fill.append(False)
        else:
            wanted.append(0 if mode == "trending" else limit - round(limit * subscriber.trending_share))
            fill.append(True)
    count = len(subscribers)
    width = max(limits, default=1)
    out_docs = np.empty((count, width), dtype=np.int64)
    out_scores = np.empty((count, width))
    out_reason = np.empty((count, width), dtype=np.int64)
    several_ptr = np.empty(count * width + 1, dtype=np.int64)
    several_parts = np.empty(max(len(request_kw) * width, 1), dtype=np.int64)
    counts = np.empty(count, dtype=np.int64)
    ints = partial(np.array, dtype=np.int64)
    several = kernel(
        *table.arrays(),
        ints(request_ptr), ints(request_kw), ints(sent_ptr), ints(sent_docs),
        ints(filters), ints(wanted), ints(limits), np.array(fill, dtype=np.bool_),
        *table.filter_arrays(), table.recency, len(PLACES), table.labels_at,
        out_docs, out_scores, out_reason, several_ptr, several_parts, counts,
    )
    parts, reasons, papers = table.parts, table.reasons, index.papers
    bounds = several_ptr[: several + 1].tolist()
    flat = several_parts[: bounds[-1]].tolist()
    several = ["matched " + "; ".join([parts[part] for part in flat[start:end]]) for start, end in zip(bounds, bounds[1:])]
    return [
        [
            Pick(papers[i], score, [reasons[reason] if reason >= 0 else several[~reason]])
            for i, score, reason in zip(docs[:n], scores, why)
        ]
        for docs, scores, why, n in zip(out_docs.tolist(), out_scores.tolist(), out_reason.tolist(), counts.tolist())
    ]
