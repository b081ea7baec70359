"""Similar picks for subscribers: their library and feedback turned into profiles, ranked over a day's papers.

One `Relevance` lives as long as an `EditionBuilder`. It keeps the parsed
libraries (by file), their vectors (by file content and model), and one
`SimilarSpace` per edition index, so a chunk of subscribers is ranked with one
matrix product and a library shared by many readers is parsed and embedded once.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from newsletter.embeddings import Embedder, load_embedder, model_name, paper_text
from newsletter.library import Library, LibraryCache, LibraryError
from newsletter.models import Pick, Subscriber, normalise_title
from newsletter.selection import PaperIndex
from newsletter.similarity import EMBEDDING_WEIGHT, KERNEL_PROFILES, Example, SimilarSpace
from newsletter.store import Feedback, Store

log = logging.getLogger("newsletter.relevance")


@dataclass
class Examples:
    """What one subscriber's similar ranking learns from, and the papers it must never pick."""

    positives: list[Example] = field(default_factory=list)
    negatives: list[Example] = field(default_factory=list)
    blocked_ids: set[str] = field(default_factory=set)
    blocked_titles: set[str] = field(default_factory=set)
    key: tuple = ()  # (library digest, clicks): equal keys, equal profiles


def text_key(text: str) -> str:
    """Where a library entry's vector is stored (paper_vectors, beside the papers' ids): by its text."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def wants_similar(subscriber: Subscriber, feedback: list[Feedback]) -> bool:
    """Whether a subscriber gets similar picks: a library in similar/mixed mode, or "more like this" clicks."""
    return subscriber.likes_library or any(item.kind == "more" for item in feedback)


class Relevance:
    """Builds profiles from libraries and feedback, and ranks them over an index (see module doc)."""

    def __init__(self, store: Store, embedder: str | Embedder = "wordllama", *, embedding_weight: float = EMBEDDING_WEIGHT):
        self.store = store
        self.embedding_weight = embedding_weight
        self._spec = embedder
        self._embedder: Embedder | None = None if isinstance(embedder, str) else embedder
        self.libraries = LibraryCache(store)
        self._library_examples_by: dict[tuple[str, str], list[Example]] = {}
        self._spaces: weakref.WeakKeyDictionary[PaperIndex, tuple[SimilarSpace, dict[str, int]]] = weakref.WeakKeyDictionary()
        self._reported: set[str] = set()
        self.entries_embedded = 0  # library entries this Relevance embedded (their vectors were not stored)
        self.run_size = 0  # similar readers the run ranks (in chunks): from KERNEL_PROFILES on, by the compiled loop
        # profiles by (space, library content, clicks): subscribers sharing a library and clicks share one
        self._profiles: weakref.WeakKeyDictionary[SimilarSpace, dict[tuple, object]] = weakref.WeakKeyDictionary()

    @property
    def embedder(self) -> Embedder:
        """The model, loaded on first use: only when a vector is missing from the store."""
        if self._embedder is None:
            self._embedder = load_embedder(self._spec)
        return self._embedder

    @property
    def model(self) -> str:
        """The name the vectors are stored under."""
        return self._embedder.name if self._embedder is not None else model_name(self._spec)

    # -- vectors ------------------------------------------------------------------

    def embed_libraries(self, subscribers: Iterable[Subscriber]) -> int:
        """Store the vectors of every entry of these subscribers' libraries that has none yet (as `ingest`
        does, so that `send` loads no model); how many. A library that cannot be read is skipped here:
        `send` reports it for its reader."""
        before = self.entries_embedded
        for path in dict.fromkeys(s.library for s in subscribers if s.likes_library):
            try:
                self._library_examples(self.libraries.get(path))
            except LibraryError:
                continue
        return self.entries_embedded - before

    def paper_vectors(self, papers) -> np.ndarray:
        """The stored vectors of `papers`, computing (and storing) the ones that are missing."""
        if not papers:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        found = self.store.load_vectors(self.model, [paper.id for paper in papers])
        missing = [paper for paper in papers if paper.id not in found]
        if missing:
            vectors = self.embedder.embed([paper_text(paper.title, paper.abstract) for paper in missing])
            self.store.save_vectors(self.model, [paper.id for paper in missing], vectors)
            found.update(zip((paper.id for paper in missing), vectors))
        return np.stack([found[paper.id] for paper in papers])

    def space(self, index: PaperIndex) -> tuple[SimilarSpace, dict[str, int]]:
        """The index's candidates as a SimilarSpace, and their positions by normalised title."""
        found = self._spaces.get(index)
        if found is None:
            space = SimilarSpace(index.papers, self.paper_vectors(index.papers), embedding_weight=self.embedding_weight)
            titles = {normalise_title(paper.title): i for i, paper in enumerate(index.papers)}
            found = self._spaces[index] = (space, titles)
        return found

    def _library_examples(self, library: Library) -> list[Example]:
        """The library's entries as examples, once per file content (readers of one file share them).

        Their vectors are stored by text (`text_key`) beside the papers', so a later run, or another file
        with the same entries, embeds nothing and never loads the model."""
        key = (library.digest, self.model)
        examples = self._library_examples_by.get(key)
        if examples is None:
            keys = [text_key(item.text) for item in library.items]
            found = self.store.load_vectors(self.model, set(keys))
            missing = {k: item.text for k, item in zip(keys, library.items) if k not in found}
            if missing:
                vectors = self.embedder.embed(list(missing.values()))
                self.store.save_vectors(self.model, list(missing), vectors)
                found.update(zip(missing, vectors))
                self.entries_embedded += len(missing)
            examples = self._library_examples_by[key] = [
                Example(item.title, item.text, found[k]) for item, k in zip(library.items, keys)
            ]
        return examples

    # -- examples -----------------------------------------------------------------

    def library(self, subscriber: Subscriber) -> Library | None:
        """The subscriber's parsed library (problems logged once per file), or None."""
        if subscriber.library is None:
            return None
        try:
            library = self.libraries.get(subscriber.library)
        except LibraryError as error:
            self._report(str(error))
            return None
        for problem in library.problems:
            self._report(problem)
        return library

    def _report(self, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning(problem)

    def examples(self, subscribers: list[Subscriber], feedback: dict[str, list[Feedback]]) -> dict[str, Examples]:
        """Each subscriber's examples: library entries, then "more like this" papers; "fewer" ones against."""
        clicked = {item.paper_id for items in feedback.values() for item in items}
        papers = self.store.get_papers(clicked) if clicked else {}
        ordered = list(papers.values())
        vectors = dict(zip((paper.id for paper in ordered), self.paper_vectors(ordered))) if ordered else {}
        found: dict[str, Examples] = {}
        for subscriber in subscribers:
            examples = Examples()
            library = self.library(subscriber) if subscriber.mode in ("similar", "mixed") else None
            if library is not None and library.items:
                examples.positives.extend(self._library_examples(library))
                examples.blocked_ids |= library.paper_ids()
                examples.blocked_titles |= library.title_keys()
            clicks = feedback.get(subscriber.email, ())
            examples.key = (library.digest if library is not None and library.items else None,
                            tuple((item.paper_id, item.kind) for item in clicks))
            for item in clicks:
                paper = papers.get(item.paper_id)
                examples.blocked_ids.add(item.paper_id)
                if paper is None:
                    continue
                example = Example(paper.title, paper_text(paper.title, paper.abstract), vectors[paper.id], item.kind)
                (examples.positives if item.kind == "more" else examples.negatives).append(example)
            found[subscriber.email] = examples
        return found

    # -- ranking ------------------------------------------------------------------

    def similar_picks(
        self,
        subscribers: list[Subscriber],
        index: PaperIndex,
        sent: dict[str, set[str]],
        feedback: dict[str, list[Feedback]],
    ) -> dict[str, list[Pick]]:
        """Each subscriber's similar ranking over `index` (at most max_items), with reasons.

        Subscribers without a positive example are absent. Papers already sent, in the
        library, clicked on, too old, under `min_upvotes` or matching an exclusion never appear.
        """
        wanted = [s for s in subscribers if wants_similar(s, feedback.get(s.email, []))]
        if not wanted or not len(index):
            return {}
        examples = self.examples(wanted, feedback)
        space, titles = self.space(index)
        profiles, blocked, cuts, owners = [], [], [], []
        profiles_here = self._profiles.setdefault(space, {})
        for subscriber in wanted:
            mine = examples[subscriber.email]
            key = mine.key
            if key not in profiles_here:
                profiles_here[key] = space.profile(mine.positives, mine.negatives)
            profile = profiles_here[key]
            if profile is None:
                continue
            profiles.append(profile)
            cut, skip = self._blocked(subscriber, index, titles, mine, sent.get(subscriber.email, set()))
            cuts.append(cut)
            blocked.append(skip)
            owners.append(subscriber)
        if not profiles:
            return {}
        limit = max(subscriber.max_items for subscriber in owners)
        big_run = self.run_size >= KERNEL_PROFILES  # numba's ~0.9 s load pays off over the run's chunks
        positions, scores = space.rank(profiles, blocked, limit, cuts, compiled=True if big_run else None)
        found = {}
        for subscriber, profile, mine, values in zip(owners, profiles, positions.tolist(), scores.tolist()):
            pairs = [(i, score) for i, score in zip(mine[: subscriber.max_items], values) if i >= 0]
            reasons = space.reasons(profile, [i for i, _ in pairs])
            found[subscriber.email] = [Pick(index.papers[i], score, [why]) for (i, score), why in zip(pairs, reasons)]
        return found

    def _blocked(
        self, subscriber: Subscriber, index: PaperIndex, titles: dict[str, int], mine: Examples, sent: Iterable[str]
    ) -> tuple[int, np.ndarray]:
        """What this subscriber must not get from the similar ranking: the candidates from the age cut on,
        and these positions before it."""
        flt = index._filter(subscriber.max_age_days, subscriber.min_upvotes)
        parts = [np.zeros(0, dtype=np.int64)]
        if flt.keep is not None:
            parts.append(np.flatnonzero(flt.keep == 0))
        positions = index._positions(set(sent) | mine.blocked_ids)
        positions |= {titles[key] for key in mine.blocked_titles if key in titles}
        if positions:
            parts.append(np.fromiter(positions, dtype=np.int64))
        for raw in subscriber.keywords:
            keyword, matches = index._keywords.get(raw) or index._keyword(raw)
            if keyword.exclude:
                parts.append(np.asarray(matches.hits, dtype=np.int64))
        found = np.unique(np.concatenate(parts))
        return flt.cut, found[found < flt.cut]
