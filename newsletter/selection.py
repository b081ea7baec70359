"""Selection: which papers each subscriber gets, and why (README: "Choosing papers").

`PaperIndex` is built once per edition date from the candidate papers; `select`
scores one subscriber's profile against it.  Selection is pure: papers in,
picks out.  Speed comes from the index: it tokenises every paper once, keeps
postings per word, ranks trending papers once, and keeps the score array of
every keyword it has seen, so each profile only adds up the arrays of its few
keywords (numpy) instead of looping over the papers. `select_many` selects a
batch; for a big run it hands the keyword and trending profiles to one compiled
loop (keyword_batch, keyword_kernel), which makes the very same picks.

Age: a paper's date is `published`, else `first_seen.date()`; its age is
`today - date` in days (never below 0).  A paper with neither date passes
every `max_age_days` filter (the store handed it in as a candidate), is the
oldest for recency tie-breaks, and decays as if `UNKNOWN_AGE_DAYS` old.

Trending: score = upvotes / (age_days + 2) ** 1.5, so 100 upvotes today (35.4)
beat 120 a week ago (4.4).  Papers without an upvote count come after all those
with one (score 0.0); ties go to the more recent paper.  `min_upvotes` drops
papers whose count is unknown.

Keywords (BM25 over title and abstract): a keyword scores
idf * (2.5 * sat_title + sat_abstract) on a paper where it occurs, with
sat = tf * (k1 + 1) / (tf + k1 * norm), k1 = 1.2; the abstract is length
normalised (b = 0.75, length ratio capped at 4), the title is not, so for one
keyword a title match always outranks an abstract-only one.  A phrase whose
words are not adjacent but near (each within 8 words of the first, in the title
or in the abstract) scores 0.25 * idf ("with words apart"), below any real
occurrence.  Scores are multiplied by the keyword's weight and summed; a paper
that matches an exclusion is dropped (in every mode); a paper with no positive
keyword is never a keyword pick.

Variants: words are case-folded and lightly stemmed (`keywords.stem`); a
compound matches its hyphenated and spaced forms (`pretraining`,
`pre-training`, `pre training`) in both directions: a keyword word also
matches two adjacent text words that join to it, and two adjacent keyword
words also match one text word that is their join.

Mixed: round(max_items * trending_share) slots (Python's round, half to even)
are trending, the rest keyword picks; no paper twice, and a list that runs
short is refilled from the other.
Picks come keyword picks first, then trending picks.  Papers in
`already_sent` are never picked.

Followed authors (`authors` in a profile): every candidate paper with an author
who can be a followed person (`same_person`: accents and case ignored, initials
match their names, "Family, Given" and either order) is pinned on top, newest
first, whatever its score or upvotes, in every mode, with the reason
"by <name>, whom you follow"; the rest of the slots are chosen as usual.  An
exclusion keyword still drops such a paper.

Weekly editions use an index built with `decay=False` (trending by upvotes
alone) over the seven days ending on the edition date (`Subscriber.window_days`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import itemgetter
from types import MappingProxyType

import numpy as np

from newsletter.keywords import Keyword, parse_keyword, words
from newsletter.models import Paper, Pick, Subscriber
from newsletter.display import listed
from newsletter.names import name_tokens, same_person
from newsletter.parallel_find import find_aside

DECAY_OFFSET = 2.0
DECAY_POWER = 1.5
UNKNOWN_AGE_DAYS = 7
K1 = 1.2
B = 0.75
MAX_LENGTH_RATIO = 4.0
TITLE_WEIGHT = 2.5
APART_SHARE = 0.25
APART_WINDOW = 8
POSITION_BITS = 20
MAX_VARIANTS = 32
PLACES = ("", "in title", "in abstract", "in title and abstract", "with words apart")
APART = 4
BATCH_PROFILES = 20_000  # keyword readers in a run (a worker's share) from which select_many's compiled loop pays its load


@dataclass(slots=True)
class _Matches:
    """Where one keyword (its stemmed terms) occurs in the index, and what it scores there."""

    docs: np.ndarray  # papers it scores on (occurrences and words apart), ascending
    scores: np.ndarray  # unweighted score on each of `docs`
    hits: np.ndarray  # papers where it really occurs (an exclusion drops these), ascending
    where: bytes  # per paper: 0 no match, else an index into PLACES
    prefixes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def upto(self, cut: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`docs`, `scores` and `hits` cut to the papers before `cut` (the ones an age limit keeps)."""
        found = self.prefixes.get(cut)
        if found is None:
            end, hits_end = self.docs.searchsorted(cut), self.hits.searchsorted(cut)
            found = self.prefixes[cut] = (self.docs[:end], self.scores[:end], self.hits[:hits_end])
        return found


@dataclass(slots=True)
class _Filter:
    """The papers one (max_age_days, min_upvotes) pair keeps."""

    cut: int  # the age limit keeps papers [0, cut)
    keep: np.ndarray | None  # then 1.0 / 0.0 per paper for min_upvotes; None when it keeps them all
    trending: list[int]  # kept papers in trending order


def paper_age(paper: Paper, today: date) -> int | None:
    """Age in whole days on `today` (`published`, else `first_seen`), None when the paper has no date."""
    day = paper.published or paper.first_seen
    if isinstance(day, datetime):
        day = day.date()
    return None if day is None else max((today - day).days, 0)


def _age_key(age: int | None) -> int:
    return -1 if age is None else age


class PaperIndex:
    """Built once per edition date from the candidate papers; scored against by every profile.

    Papers repeating an earlier paper's id are ignored.
    """

    def __init__(self, papers: list[Paper], today: date, *, decay: bool = True):
        self.today = today
        self.period = "today" if decay else "this week"
        unique: dict[str, Paper] = {}
        for paper in papers:
            unique.setdefault(paper.id, paper)
        ages = {paper.id: paper_age(paper, today) for paper in unique.values()}
        # Oldest last, undated first: the papers a max_age_days filter keeps are a prefix.
        self.papers = sorted(unique.values(), key=lambda paper: (_age_key(ages[paper.id]), paper.id))
        self._position = {paper.id: i for i, paper in enumerate(self.papers)}
        self._age_keys = [_age_key(ages[paper.id]) for paper in self.papers]
        self._upvotes = [paper.upvotes for paper in self.papers]
        count = len(self.papers)
        undated = self._undated = self._age_keys.count(-1)
        self._recency = [i - undated if i >= undated else count - undated + i for i in range(count)]

        self._trend_score = [
            0.0 if up is None
            else up / ((UNKNOWN_AGE_DAYS if age < 0 else age) + DECAY_OFFSET) ** DECAY_POWER if decay
            else float(up)
            for up, age in zip(self._upvotes, self._age_keys)
        ]
        recency = self._recency
        self._trending = sorted(
            range(count), key=lambda i: (self._upvotes[i] is None, -self._trend_score[i], recency[i])
        )
        self._trend_rank = [0] * count
        for rank, i in enumerate(self._trending, 1):
            self._trend_rank[i] = rank
        self._trend_reasons = [self._trending_reason(i) for i in range(count)]

        # Postings: every word gets a number; each field's positions sorted by word, a slice per word.
        self._vocabulary: dict[str, int] = defaultdict(lambda: len(self._vocabulary))
        self._postings = [self._field_postings([paper.title for paper in self.papers])]
        self._postings.append(self._field_postings([paper.abstract or "" for paper in self.papers]))
        lengths = self._postings[1][2]
        average = lengths.sum() / count if count and lengths.sum() else 1.0
        self._abstract_ratio = np.minimum(lengths.astype(float) / average, MAX_LENGTH_RATIO)
        self._vocabulary = dict(self._vocabulary)

        self._keywords: dict[str, tuple[Keyword, _Matches]] = {}
        self._places: dict[str, tuple[str, ...]] = {}
        self._matches: dict[tuple[str, ...], _Matches] = {}
        self._filters: dict[tuple[int, int | None], _Filter] = {}
        self._by_surname: dict[str, list[tuple[int, tuple[str, ...]]]] | None = None
        self._table = None  # keyword_batch.KeywordTable, once a big run selects in batches

    def __len__(self) -> int:
        return len(self.papers)

    def candidates(self, max_age_days: int, already_sent: set[str]) -> int:
        """How many papers an edition with this age limit could still pick (not yet sent): 0 means nothing new."""
        cut = self._filter(max_age_days, None).cut
        return cut - sum(1 for i in self._positions(already_sent) if i < cut)

    # -- followed authors -------------------------------------------------------

    def _author_index(self) -> dict[str, list[tuple[int, tuple[str, ...]]]]:
        """Every full name word of every author -> (paper, that author's name words); built on first use."""
        if self._by_surname is None:
            found: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
            for i, paper in enumerate(self.papers):
                for author in paper.authors:
                    tokens = name_tokens(author)
                    for token in set(tokens):
                        if len(token) > 1:
                            found[token].append((i, tokens))
            self._by_surname = found
        return self._by_surname

    def _followed_picks(
        self, followed: list[str], cut: int, skip: set[int], excluded: list[_Matches], limit: int
    ) -> list[Pick]:
        """Papers by followed authors (newest first, at most `limit`), each saying whom it is by."""
        index = self._author_index()
        by: dict[int, list[str]] = {}
        for name in followed:
            wanted = name_tokens(name)
            full = [token for token in wanted if len(token) > 1]
            if not full:
                continue
            for i, tokens in index.get(full[-1], ()):
                if i < cut and i not in skip and same_person(wanted, tokens) and name not in by.get(i, ()):
                    by.setdefault(i, []).append(name)
        ordered = sorted(
            (i for i in by if not any(0 < matches.where[i] < APART for matches in excluded)),
            key=lambda i: (self._recency[i], -self._trend_score[i]),
        )
        return [
            Pick(self.papers[i], self._trend_score[i], [f"by {listed(by[i])}, whom you follow"]) for i in ordered[:limit]
        ]

    # -- filters and trending -------------------------------------------------

    def _filter(self, max_age_days: int, min_upvotes: int | None) -> _Filter:
        key = (max_age_days, min_upvotes)
        found = self._filters.get(key)
        if found is None:
            cut = bisect_right(self._age_keys, max_age_days)
            ok = [min_upvotes is None or (up is not None and up >= min_upvotes) for up in self._upvotes[:cut]]
            keep = None if all(ok) else np.array(ok, dtype=float)
            found = self._filters[key] = _Filter(cut, keep, [i for i in self._trending if i < cut and ok[i]])
        return found

    def _positions(self, ids: Iterable[str]) -> set[int]:
        found = set(map(self._position.get, ids))
        found.discard(None)
        return found

    def _trending_reason(self, i: int) -> str:
        up = self._upvotes[i]
        rank = self._trend_rank[i]
        if up is None:
            return f"trending #{rank} {self.period} (no upvote count yet)"
        return f"trending #{rank} {self.period}, {up} upvote{'' if up == 1 else 's'}"

    # -- keywords ---------------------------------------------------------------

    def _field_postings(self, texts: list[str]) -> tuple[np.ndarray, list[int], np.ndarray]:
        """The positions (paper << POSITION_BITS | word number) of every word in one field, grouped by word
        number and ascending within, where each word's group starts (and ends), and each text's length.
        Built with numpy rather than one Python int per occurrence, which is slow to turn into arrays."""
        number = self._vocabulary.__getitem__
        ids: list[int] = []
        lengths = []
        for text in texts:
            tokens = words(text)
            ids += map(number, tokens)
            lengths.append(len(tokens))
        ids = np.array(ids, dtype=np.int64)
        lengths = np.array(lengths, dtype=np.int64)
        papers = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        positions = (papers << POSITION_BITS) + np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        order = np.argsort(ids, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=len(self._vocabulary)))]).tolist()
        return positions[order], bounds, lengths

    def _positions_of(self, field: int, term: str) -> np.ndarray:
        """Sorted positions (paper << POSITION_BITS | word number) of `term` in field 0 (title) or 1 (abstract)."""
        positions, bounds, _ = self._postings[field]
        word = self._vocabulary.get(term)
        if word is None or word + 1 >= len(bounds):
            return positions[:0]
        return positions[bounds[word]:bounds[word + 1]]

    def _near(self, terms: tuple[str, ...]) -> np.ndarray:
        """Papers where every word of `terms` is within APART_WINDOW words of the first, in one field."""
        found = []
        for part in (0, 1):
            anchors = self._positions_of(part, terms[0])
            for term in terms[1:]:
                others = self._positions_of(part, term)
                if not len(anchors) or not len(others):
                    anchors = anchors[:0]
                    break
                nearest = others[np.minimum(others.searchsorted(anchors - APART_WINDOW), len(others) - 1)]
                anchors = anchors[(nearest >= anchors - APART_WINDOW) & (nearest <= anchors + APART_WINDOW)]
            found.append(anchors >> POSITION_BITS)
        return np.flatnonzero(np.bincount(np.concatenate(found)))  # np.unique, without its hashing and sort

    def _known(self, term: str) -> bool:
        return term in self._vocabulary

    def _variants(self, terms: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The word sequences a keyword matches: as written, a word split in two
        (`pretraining` -> `pre training`), two adjacent words joined (`pre training` -> `pretraining`)."""
        if not terms:
            return [()]
        head, rest = terms[0], terms[1:]
        starts = [(head,)] + [
            (head[:cut], head[cut:])
            for cut in range(2, len(head) - 1)
            if self._known(head[:cut]) and self._known(head[cut:])
        ]
        found = [start + tail for tail in self._variants(rest) for start in starts]
        if rest and self._known(head + rest[0]):
            found += [(head + rest[0],) + tail for tail in self._variants(rest[1:])]
        return found[:MAX_VARIANTS]

    def _occurrences(self, field: int, sequence: tuple[str, ...]) -> np.ndarray:
        """Positions where `sequence` starts in a field (its words adjacent, in order)."""
        found = self._positions_of(field, sequence[0])
        for offset, term in enumerate(sequence[1:], 1):
            if not len(found):
                break
            found = _common(found, self._positions_of(field, term) - offset)
        return found

    def resolve(self, keywords: Iterable[str], *, compiled: bool = False, processes: int = 1) -> None:
        """Find every distinct keyword once, up front: worker processes forked afterwards share the results
        instead of each finding them again. Raises `ValueError` for a keyword with bad syntax.
        `compiled`: also lay them out for `select_many(..., compiled=True)` and load its compiled loop.

        The keywords of one word that no split turns into two (most of them) are scored all at once,
        the others (phrases, words that split: ~0.5 ms each) one by one. With `processes` > 1 and many
        keywords, that many - 1 forked children find them while this process loads the compiled loop."""
        keywords = set(keywords)
        raws = [raw for raw in keywords if raw not in self._keywords]
        single, others = self._unfound(raws)
        aside = find_aside(self, single, others, processes - 1)
        if compiled:
            from newsletter.keyword_batch import prepare, select_batch

            select_batch(self, [], [])  # numba's load, while the children work
        self._matches.update(self._words_found(single) if aside is None else aside())
        for raw in raws:
            self._keyword(raw)
        if compiled:
            prepare(self, keywords)

    def _unfound(self, raws: list[str]) -> tuple[list[tuple[str]], list[tuple[str, ...]]]:
        """The terms of these keyword strings not found yet: the words no split turns into two, and the others."""
        unknown = {parse_keyword(raw).terms for raw in raws}.difference(self._matches)
        single = sorted(terms for terms in unknown if len(terms) == 1 and len(self._variants(terms)) == 1)
        return single, sorted(unknown.difference(single))

    def _words_found(self, single: list[tuple[str]]) -> dict[tuple[str], _Matches]:
        """The matches of these words (`_unfound`'s first list), scored at once when there are several."""
        return self._find_words(single) if len(single) > 1 and self.papers else {}

    def _keyword(self, raw: str) -> tuple[Keyword, _Matches]:
        """A keyword string parsed, with its matches (both kept for the next profile that has it)."""
        found = self._keywords.get(raw)
        if found is None:
            keyword = parse_keyword(raw)
            found = self._keywords[raw] = (keyword, self._match(keyword.terms))
            if keyword.text not in self._places:  # its reasons, by place (PLACES)
                self._places[keyword.text] = ("",) + tuple(f'"{keyword.text}" {place}' for place in PLACES[1:])
        return found

    def _match(self, terms: tuple[str, ...]) -> _Matches:
        found = self._matches.get(terms)
        if found is None:
            found = self._matches[terms] = self._find(terms)
        return found

    def _find(self, terms: tuple[str, ...]) -> _Matches:
        count = len(self.papers)
        variants = self._variants(terms)
        title, abstract = (
            np.bincount(
                np.concatenate([self._occurrences(field, variant) for variant in variants]) >> POSITION_BITS,
                minlength=count,
            )
            for field in (0, 1)
        )
        docs = np.flatnonzero(title + abstract)
        apart = np.zeros(0, dtype=np.int64)
        if len(terms) > 1:
            apart = np.setdiff1d(self._near(terms), docs, assume_unique=True)
        return self._score(docs, title[docs], abstract[docs], apart)

    def _find_words(self, single: list[tuple[str]]) -> dict[tuple[str], _Matches]:
        """`_find` of many one-word keywords (none with variants), the same arrays: one pass over all
        their postings instead of a dozen small array operations each."""
        count = len(self.papers)
        fields = []
        for part in (0, 1):
            postings = [self._positions_of(part, terms[0]) >> POSITION_BITS for terms in single]
            offsets = np.repeat(np.arange(len(single), dtype=np.int64) * count, [len(docs) for docs in postings])
            keys = np.concatenate(postings) + offsets
            starts = np.flatnonzero(np.diff(keys, prepend=-1))  # keys ascend: each (word, paper) is one run
            fields.append((keys[starts], np.diff(starts, append=len(keys))))
        (title_keys, title_tf), (abstract_keys, abstract_tf) = fields
        keys = np.sort(np.concatenate([title_keys, abstract_keys]), kind="stable")  # a merge of two sorted runs
        keys = keys[np.diff(keys, prepend=-1) != 0]
        title = np.zeros(len(keys))
        title[keys.searchsorted(title_keys)] = title_tf
        abstract = np.zeros(len(keys))
        abstract[keys.searchsorted(abstract_keys)] = abstract_tf
        docs = keys % count
        sizes = np.bincount(keys // count, minlength=len(single))
        idf = [math.log(1 + (count - size + 0.5) / (size + 0.5)) for size in sizes.tolist()]
        sat_title = title * (K1 + 1) / (title + K1)
        sat_abstract = abstract * (K1 + 1) / (abstract + K1 * (1 - B + B * self._abstract_ratio[docs]))
        scores = np.repeat(idf, sizes) * (TITLE_WEIGHT * sat_title + sat_abstract)
        places = ((title > 0) + 2 * (abstract > 0)).astype(np.uint8)
        found = {}
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        for terms, begin, end in zip(single, bounds, bounds[1:]):
            where = np.zeros(count, dtype=np.uint8)
            some = docs[begin:end]
            where[some] = places[begin:end]
            found[terms] = _Matches(docs=some, scores=scores[begin:end], hits=some, where=where.tobytes())
        return found

    def _score(self, docs: np.ndarray, title: np.ndarray, abstract: np.ndarray, apart: np.ndarray) -> _Matches:
        count = len(self.papers)
        idf = math.log(1 + (count - len(docs) + 0.5) / (len(docs) + 0.5))
        title = title.astype(float)
        abstract = abstract.astype(float)
        sat_title = title * (K1 + 1) / (title + K1)
        sat_abstract = abstract * (K1 + 1) / (abstract + K1 * (1 - B + B * self._abstract_ratio[docs]))
        where = np.zeros(count, dtype=np.uint8)
        where[docs] = (title > 0) + 2 * (abstract > 0)
        where[apart] = APART
        scored = np.concatenate([docs, apart])
        order = np.argsort(scored)
        scores = np.concatenate(
            [idf * (TITLE_WEIGHT * sat_title + sat_abstract), np.full(len(apart), APART_SHARE * idf)]
        )
        return _Matches(
            docs=scored[order],
            scores=scores[order],
            hits=docs,
            where=where.tobytes(),
        )

    def _keyword_ranking(
        self,
        positives: list[tuple[Keyword, _Matches]],
        excluded: list[_Matches],
        flt: _Filter,
        sent: set[int],
        limit: int,
    ) -> list[tuple[int, float]]:
        """The best `limit` (paper, score) pairs, best first, ties to the more recent paper.

        Scores add up in one `bincount` over the keywords' postings, in the profile's keyword order;
        papers already sent are only skipped among the best `limit + len(sent)`, which must hold
        the best `limit` of the rest, instead of being cleared from the dense array first.
        """
        cut = flt.cut
        if len(positives) == 1:
            keyword, matches = positives[0]
            docs, scores, _ = matches.prefixes.get(cut) or matches.upto(cut)
            if keyword.weight != 1.0:
                scores = keyword.weight * scores
        else:
            docs, scores = [], []
            for keyword, matches in positives:
                some_docs, some_scores, _ = matches.prefixes.get(cut) or matches.upto(cut)
                docs.append(some_docs)
                scores.append(some_scores if keyword.weight == 1.0 else keyword.weight * some_scores)
            docs = np.concatenate(docs)
            scores = np.concatenate(scores)
        if not len(docs):
            return []
        total = np.bincount(docs, scores, minlength=cut)
        for matches in excluded:
            total[(matches.prefixes.get(cut) or matches.upto(cut))[2]] = 0.0
        if flt.keep is not None:
            total *= flt.keep
        docs = (total > 0).nonzero()[0]
        wanted = limit + len(sent)
        if len(docs) > wanted:
            top = total[docs]
            at = len(docs) - wanted
            docs = docs[top >= np.partition(top, at)[at]]
        pairs = zip(docs.tolist(), total[docs].tolist())
        if sent:
            pairs = [pair for pair in pairs if pair[0] not in sent]
        if self._undated:
            recency = self._recency
            return sorted(pairs, key=lambda pair: (-pair[1], recency[pair[0]]))[:limit]
        return sorted(pairs, key=itemgetter(1), reverse=True)[:limit]  # stable: ties stay newest first

    def _keyword_picks(
        self, ranked: list[tuple[int, float]], positives: list[tuple[Keyword, _Matches]]
    ) -> list[Pick]:
        labels = [(self._places[keyword.text], matches.where) for keyword, matches in positives]
        papers = self.papers
        picks = []
        for i, score in ranked:
            found = []
            for places, where in labels:
                place = where[i]
                if place:
                    found.append(places[place])
            picks.append(Pick(papers[i], score, ["matched " + "; ".join(found)]))
        return picks

    def _trending_picks(self, flt: _Filter, skip: set[int], excluded: list[_Matches], limit: int) -> list[Pick]:
        chosen: list[int] = []
        if limit <= 0:
            return []
        wheres = [matches.where for matches in excluded]
        for i in flt.trending:
            if i in skip:
                continue
            for where in wheres:
                if 0 < where[i] < APART:
                    break
            else:
                chosen.append(i)
                if len(chosen) == limit:
                    break
        reasons, papers, scores = self._trend_reasons, self.papers, self._trend_score
        return [Pick(papers[i], scores[i], [reasons[i]]) for i in chosen]


def _common(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The values in both sorted arrays of unique values."""
    if len(first) > len(second):
        first, second = second, first
    if not len(first):
        return first
    at = np.minimum(np.searchsorted(second, first), len(second) - 1)
    return first[second[at] == first]


def select(
    subscriber: Subscriber,
    index: PaperIndex,
    *,
    already_sent: set[str] = frozenset(),
    similar: list[Pick] | None = None,
    has_positives: bool = False,
) -> list[Pick]:
    """Pick at most `max_items` papers for `subscriber` from `index`, each with its reasons.

    `similar` is the subscriber's similar ranking (`relevance.Relevance.similar_picks`, already
    filtered like every other list), used for the similar share of the slots (`Subscriber.shares`).
    Raises `ValueError` for a keyword with bad syntax (see `keywords.parse_keyword`).
    """
    limit = subscriber.max_items
    window = subscriber.window_days
    flt = index._filter(window, subscriber.min_upvotes)
    sent = index._positions(already_sent)
    known = index._keywords
    keywords = [known.get(raw) or index._keyword(raw) for raw in subscriber.keywords]
    excluded = [matches for keyword, matches in keywords if keyword.exclude]
    pinned: list[Pick] = []
    if subscriber.authors:
        cut = index._filter(window, None).cut  # a followed author's paper needs no upvotes
        pinned = index._followed_picks(list(subscriber.authors), cut, sent, excluded, limit)
        if pinned:
            sent = sent | index._positions({pick.paper.id for pick in pinned})
            limit -= len(pinned)
            if not limit:
                return pinned
    similar_share, trending_share = subscriber.shares(has_positives)
    if similar and round(limit * similar_share):
        pinned_ids = {pick.paper.id for pick in pinned}
        similar = [pick for pick in similar if pick.paper.id not in pinned_ids]
        return pinned + _with_similar(
            subscriber, index, flt, sent, keywords, excluded, similar, similar_share, trending_share, limit
        )
    if subscriber.mode == "similar":
        return pinned
    if subscriber.mode == "trending":
        return pinned + index._trending_picks(flt, sent, excluded, limit)

    positives = [(keyword, matches) for keyword, matches in keywords if not keyword.exclude]
    wanted = limit if subscriber.mode == "keywords" else limit - round(limit * trending_share)
    ranked = index._keyword_ranking(positives, excluded, flt, sent, wanted) if wanted and positives else []
    picks = index._keyword_picks(ranked, positives)
    if subscriber.mode == "mixed":
        picks += index._trending_picks(flt, sent.union(i for i, _ in ranked), excluded, limit - len(picks))
    return pinned + picks


def select_many(
    index: PaperIndex,
    subscribers: list[Subscriber],
    already_sent: Mapping[str, set[str]] = MappingProxyType({}),
    similar: Mapping[str, list[Pick]] = MappingProxyType({}),
    has_positives: Container[str] = frozenset(),
    *,
    compiled: bool = False,
) -> list[list[Pick]]:
    """`select` for each of `subscribers` (by email: papers already sent, similar ranking, whether they
    have "more like this" feedback). `compiled`: the keyword and trending profiles among them are
    selected together in one compiled loop (keyword_batch; worth numba's load only for a big run),
    with the very picks `select` makes."""
    def one(s: Subscriber) -> list[Pick]:
        return select(s, index, already_sent=already_sent.get(s.email, frozenset()), similar=similar.get(s.email),
                      has_positives=s.email in has_positives)

    if not compiled:
        return [one(s) for s in subscribers]
    from newsletter.keyword_batch import batchable, select_batch

    together = [batchable(s, similar.get(s.email)) for s in subscribers]
    batch = [s for s, ok in zip(subscribers, together) if ok]
    picked = iter(select_batch(index, batch, [already_sent.get(s.email, frozenset()) for s in batch]))
    return [next(picked) if ok else one(s) for s, ok in zip(subscribers, together)]


def _with_similar(
    subscriber: Subscriber,
    index: PaperIndex,
    flt: _Filter,
    sent: set[int],
    keywords: list[tuple[Keyword, _Matches]],
    excluded: list[_Matches],
    similar: list[Pick],
    similar_share: float,
    trending_share: float,
    limit: int,
) -> list[Pick]:
    """`limit` slots shared between keyword, similar and trending picks, in that order, no paper twice;
    a list that runs short leaves its slots to the others."""
    slots_similar = round(limit * similar_share)
    slots_trending = min(round(limit * trending_share), limit - slots_similar)
    positives = [(keyword, matches) for keyword, matches in keywords if not keyword.exclude]
    lists: list[tuple[list[Pick], int]] = []
    if positives and subscriber.mode != "trending":
        ranked = index._keyword_ranking(positives, excluded, flt, sent, limit)
        lists.append((index._keyword_picks(ranked, positives), limit - slots_similar - slots_trending))
    lists.append((similar, slots_similar))
    if slots_trending or subscriber.mode != "similar":
        lists.append((index._trending_picks(flt, sent, excluded, limit), slots_trending))
    chosen: dict[str, tuple[int, int, Pick]] = {}  # paper id -> (list it came from, order taken, pick)
    for fill in (False, True):
        for rank, (picks, quota) in enumerate(lists):
            taken = 0
            for pick in picks:
                if len(chosen) == limit or (not fill and taken == quota):
                    break
                if pick.paper.id not in chosen:
                    chosen[pick.paper.id] = (rank, len(chosen), pick)
                    taken += 1
    return [pick for _, _, pick in sorted(chosen.values(), key=lambda item: item[:2])]
