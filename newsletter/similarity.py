"""Ranking by closeness to a subscriber's examples: library entries and "more like this" clicks.

What was measured (benchmarks/bench_relevance.py, six hand-judged topics over the
368 bundled papers, seed libraries that are not in the store) decided each part:

- A profile is the centroid of its examples, not the nearest example: mean beat max
  similarity for the embedding and the lexical side alike (nDCG@10 0.88 vs 0.81
  embedding, 0.90 vs 0.83 tf-idf).
- Embeddings are centred (the candidates' mean vector taken off) before cosine:
  static embeddings all point one way; centring lifted nDCG@10 from 0.85 to 0.88.
- Lexical tf-idf (sublinear tf, English stop words) wins some topics, the embedding
  others; their sum of z-scores (EMBEDDING_WEIGHT each side) beat either alone
  (0.92-0.94 against 0.88 and 0.90). The lexical side keeps the profile's
  LEXICAL_TERMS heaviest terms only, which scored as well as all of them and makes
  scoring cheap (a short sparse row per profile).
- "fewer like this" examples are subtracted from the centroid (Rocchio, NEGATIVE_WEIGHT).

Every profile is then one dense vector and one short sparse row, so ranking many
profiles is a matrix product over the day's candidates (`SimilarSpace.rank`):

- the z-scores fold into per-row scales: the embedding side's deviation comes from
  the candidates' covariance, the tf-idf side's from its product's nonzero values,
  so no pass over the dense scores normalises them;
- on days of more than MIN_COMMON candidates, profile terms found in more than
  MAX_TERM_SHARE of them are left out: they made the sparse product nearly dense
  (10,000 synthetic candidates: 9,700 of 10,000 columns per row, 3,700 without them)
  while, measured on the fixture among 10,000 off-topic distractors, P@10 stayed
  0.80 and nDCG@10 went from 0.845 to 0.837;
- the top-k per row is a threshold from interleaved group maxima, not a partition;
- projecting both sides onto a few dense directions (PCA / LSA, one smaller
  product) was measured and rejected: on the fixture alone it scored as well, but
  among 10,000 distractors P@10 fell from 0.80 to 0.42 (256 + 256 directions);
- so was a two-stage ranking (benchmarks/bench_similar.py's 100,000 x 10,000): a
  shortlist of 64 from the exact tf-idf side plus the embeddings' 32 leading
  principal directions (64 GFLOP instead of 512), then the other directions for the
  shortlist only. It kept 99.97% of the exact top 10 but saved no CPU: the sparse
  product (~5,000 postings per profile, ~75 us) is most of the cost, and the
  shortlist's gathers cost what the smaller product saved. A first stage with a
  cheaper tf-idf side (only the rarer terms exact, the frequent ones dropped or
  projected on 64 LSA directions) kept only 91-99% of the top 10 in 100-400.

Big batches (KERNEL_PROFILES and more, or every chunk of a `send` with that many similar readers in
a worker; a smaller send stays on numpy) are ranked by a compiled loop (similarity_kernel.py),
measured on bench_similar.py's 100,000 x 10,000:

- the tf-idf postings are added into the dense block and the best kept in one pass per row
  (~30 us a profile, against ~110 us for the numpy path's product made dense and its group-max top-k);
- the embedding side is then half the cost, so the dense product runs on the candidates' leading
  LEADING_DIRECTIONS principal directions (the embeddings are turned onto them once per day: the
  cosines are unchanged) and only each profile's best SHORTLIST get the other directions' share,
  exactly: the scores are the full ones. On 128 of 256 directions a shortlist of 32 kept the exact
  top 10 of 99.99% of 10,000 profiles (of 3,000: 16 kept it for 97.9%, 24 for 99.9%, 32 for all).
  Dropping the other directions instead (no shortlist) cost quality among the 10,000 distractors of
  bench_relevance.py: P@10 0.80 -> 0.75 and nDCG@10 0.837 -> 0.787 on 128 principal directions,
  0.767 / 0.812 on wordllama's own first 128 (Matryoshka) dimensions, 0.783 / 0.810 on 192 principal ones;
- 100,000 x 10,000: 75-80 us of CPU a profile; 3.9-5.0 s of wall time on 2 cores (4.0-4.3 s but for
  a process's first call, which imports numba), up to 7 s with others' work on the machine; numpy,
  same hour: ~190 us, 10.0-11.4 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from newsletter.embeddings import paper_text
from newsletter.models import Paper
from newsletter.tfidf import SparseRows, Tfidf

EMBEDDING_WEIGHT = 0.5
LEXICAL_TERMS = 32
NEGATIVE_WEIGHT = 0.5
MAX_TERM_SHARE = 0.1  # profile terms in more than this share of the candidates are left out of the ranking
MIN_COMMON = 500  # ... and in more than this many (small days keep every term: they are cheap)
BLOCK = 256  # profiles scored at once: BLOCK x candidates float32 scores (10 MB for 10,000), within L3
GROUP = 32  # candidates per group in the top-k threshold (see _top_block)
LEADING_DIRECTIONS = 128  # the compiled ranking's dense product: on this many principal directions, then
SHORTLIST = 32  # ... the other directions for the best this many of each profile only (see module doc)
KERNEL_PROFILES = 20_000  # from this many profiles a rank call uses the compiled loop (similarity_kernel):
# it is ~3x cheaper per profile than numpy's, but loading numba costs ~0.4-0.9 s (its import and first
# call), what numpy spends on 4,000-8,000 profiles; a send with fewer similar readers stays on numpy


@dataclass(slots=True)
class Example:
    """A paper a profile learns from, and how a reason names it."""

    title: str
    text: str
    vector: np.ndarray  # the embedder's unit vector (not centred)
    source: str = "library"  # "library", "more" or "fewer"

    @property
    def label(self) -> str:
        from newsletter.library import SHORT_TITLE

        title = self.title if len(self.title) <= SHORT_TITLE else self.title[:SHORT_TITLE].rsplit(" ", 1)[0].rstrip(",;:-") + "…"
        where = "from your library" if self.source == "library" else 'that you marked "more like this"'
        return f'close to "{title}" {where}'


@dataclass
class Profile:
    """One subscriber's similar ranking: a direction in the centred embedding space and a few weighted terms."""

    vector: np.ndarray
    terms: np.ndarray
    weights: np.ndarray
    examples: list[Example] = field(default_factory=list)  # the positive ones, for reasons
    example_vectors: np.ndarray | None = None  # centred, unit
    example_lexical: SparseRows | None = None
    query: np.ndarray | None = None  # the row against SimilarSpace.matrix (set by SimilarSpace.profile)
    labels: dict[int, str] = field(default_factory=dict)  # reasons found so far, by candidate position


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


class SimilarSpace:
    """The day's candidates as centred embeddings and tf-idf rows; built once per edition index."""

    def __init__(self, papers: list[Paper], vectors: np.ndarray, *, embedding_weight: float = EMBEDDING_WEIGHT):
        self.papers = papers
        self.embedding_weight = embedding_weight  # 1.0: embedding only, 0.0: tf-idf only (benchmark variants)
        vectors = np.asarray(vectors, dtype=np.float32)
        self.mean = vectors.mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1], dtype=np.float32)
        self.vectors = _unit(vectors - self.mean)
        texts = [paper_text(paper.title, paper.abstract) for paper in papers]
        try:
            self.vectorizer: Tfidf | None = Tfidf(texts)
            self.lexical = self.vectorizer.rows
        except ValueError:  # no words at all (empty day, or only stop words)
            self.vectorizer = None
            self.lexical = SparseRows.empty(len(papers), 1)
        self._project()

    def _project(self) -> None:
        """What ranking needs: the centred embeddings' columns centred (so a product is the cosine's
        deviation from its row mean) and turned onto their principal directions (the compiled ranking
        shortlists on the leading ones), their covariance (which gives a profile's deviation), the tf-idf
        rows by term, its columns' means, and which terms are too common to rank by (see module doc)."""
        count = len(self.papers)
        centred = self.vectors - self.vectors.mean(axis=0) if count else self.vectors
        spreads, directions = np.linalg.eigh(centred.T.astype(np.float64) @ centred / max(count, 1))
        self._rotation = np.ascontiguousarray(directions[:, ::-1], dtype=np.float32)  # principal directions, largest first
        self.matrix = np.ascontiguousarray(centred @ self._rotation)  # the same cosines, on those directions
        self._spreads = np.maximum(spreads[::-1], 0.0)  # the covariance on them: diagonal
        self._parts: tuple[np.ndarray, np.ndarray] | None = None  # matrix's leading and other directions
        self.by_term = self.lexical.by_column()
        self._term_means = self.lexical.column_means()
        self._common = np.diff(self.by_term.indptr) > max(MAX_TERM_SHARE * count, MIN_COMMON)

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """`matrix`'s LEADING_DIRECTIONS first columns, transposed (a product against it runs 6-10% faster
        than against the columns in place), and its other columns (for _kernel_block)."""
        lead = min(LEADING_DIRECTIONS, self.matrix.shape[1])
        if self._parts is None or self._parts[0].shape[0] != lead:
            self._parts = np.ascontiguousarray(self.matrix[:, :lead].T), np.ascontiguousarray(self.matrix[:, lead:])
        return self._parts

    def __len__(self) -> int:
        return len(self.papers)

    def _lexical(self, texts: list[str]) -> SparseRows:
        if self.vectorizer is None or not texts:
            return SparseRows.empty(len(texts), self.lexical.shape[1])
        return self.vectorizer.transform(texts)

    def profile(self, positives: list[Example], negatives: list[Example] = ()) -> Profile | None:
        """The profile of these examples; None when there is no positive one."""
        if not positives:
            return None
        centred = _unit(np.stack([example.vector for example in positives]) - self.mean)
        direction = centred.mean(axis=0)
        lexical = self._lexical([example.text for example in positives])
        terms = lexical.column_means()
        if negatives:
            against = _unit(np.stack([example.vector for example in negatives]) - self.mean)
            direction = direction - NEGATIVE_WEIGHT * against.mean(axis=0)
            terms = terms - NEGATIVE_WEIGHT * self._lexical([e.text for e in negatives]).column_means()
        top = np.flatnonzero(terms > 0)
        if len(top) > LEXICAL_TERMS:
            top = top[np.argpartition(terms[top], -LEXICAL_TERMS)[-LEXICAL_TERMS:]]
        top = np.sort(top)
        profile = Profile(
            vector=_unit(direction),
            terms=top,
            weights=terms[top].astype(np.float32),
            examples=list(positives),
            example_vectors=centred,
            example_lexical=lexical,
        )
        profile.query = self.query(profile)
        return profile

    def query(self, profile: Profile) -> np.ndarray:
        """The profile's embedding side as one row against `matrix` (on the principal directions): its
        weight over the row's deviation folded in, so the products are the weighted z-scored embedding cosines."""
        vector = profile.vector @ self._rotation
        spread = float(np.sqrt(max(np.square(vector, dtype=np.float64) @ self._spreads, 0.0)))
        if spread <= 1e-12:
            return np.zeros_like(vector)
        return (vector * (self.embedding_weight / spread)).astype(np.float32)

    def _lexical_query(self, profiles: list[Profile]) -> tuple[np.ndarray, np.ndarray]:
        """The profiles' tf-idf overlaps with every candidate (dense, one row each; `_common` terms left
        out), each row already scaled to its z-score weight, and each row's offset (its mean, scaled alike).
        The deviation comes from the row's squares and the columns' means: no pass to centre the row."""
        kept = [~self._common[p.terms] for p in profiles]
        indptr = np.zeros(len(profiles) + 1, dtype=np.int64)
        np.cumsum([np.count_nonzero(k) for k in kept], out=indptr[1:])
        query = SparseRows(
            np.concatenate([p.weights[k] for p, k in zip(profiles, kept)]).astype(np.float32, copy=False),
            np.concatenate([p.terms[k] for p, k in zip(profiles, kept)]).astype(np.int32), indptr, self.lexical.shape[1],
        )
        products = query.dense_product(self.by_term)
        means = np.zeros(len(profiles), dtype=np.float32)  # summed in row order, as `products`
        np.add.at(means, query.owners(), query.data * self._term_means[query.indices])
        squares = np.einsum("ij,ij->i", products, products, dtype=np.float64)
        spread = np.sqrt(np.maximum(squares / max(len(self), 1) - means**2, 0.0))
        scale = np.divide(1 - self.embedding_weight, spread, out=np.zeros_like(spread), where=spread > 1e-12)
        products *= scale.astype(np.float32)[:, None]
        return products, (-means * scale).astype(np.float32)

    def scores(self, profiles: list[Profile]) -> np.ndarray:
        """(profiles x candidates) hybrid scores: z-scored embedding cosine plus z-scored tf-idf overlap."""
        block = np.stack([profile.query for profile in profiles]) @ self.matrix.T
        products, offset = self._lexical_query(profiles)
        block += products + offset[:, None]
        return block

    def rank(
        self, profiles: list[Profile], blocked: list[np.ndarray], limit: int, cuts: list[int] | None = None,
        *, compiled: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best `limit` candidates of each profile, best first (ties to the lower position), as
        (positions, scores) arrays of shape (profiles, limit); -1 / -inf where a profile has fewer.

        A profile never gets its `blocked` positions nor any position from its `cut` on (an age limit keeps
        a prefix of the candidates). Blocks of profiles are scored in threads, one per core: the matrix
        product and the reductions release the GIL. `compiled`: whether to use the compiled loop (default:
        for KERNEL_PROFILES profiles or more; a run that ranks that many in chunks says True for each).
        """
        count, total = len(self), len(profiles)
        limit = min(limit, count)
        positions = np.full((total, limit), -1, dtype=np.int64)
        scores = np.full((total, limit), -np.inf, dtype=np.float32)
        if not total or not limit:
            return positions, scores
        cuts = np.full(total, count, dtype=np.int64) if cuts is None else np.minimum(np.asarray(cuts, dtype=np.int64), count)
        order = np.argsort(-cuts, kind="stable")  # similar cuts share a block: each block's product stops at its cut
        starts = range(0, total, BLOCK)
        top = _top_block
        if total >= KERNEL_PROFILES if compiled is None else compiled:
            from newsletter.similarity_kernel import top_rows

            self._split()  # made here, once: the threads below only read it
            top = partial(_kernel_block, top_rows)

        def one(start: int) -> None:
            rows = order[start : start + BLOCK]
            found, values = top(self, [profiles[i] for i in rows], [blocked[i] for i in rows], cuts[rows], limit)
            positions[rows], scores[rows] = found, values

        workers = min(len(starts), len(os.sched_getaffinity(0)))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import threadpool_limits

            with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, starts))
        else:
            for start in starts:
                one(start)
        return positions, scores

    def reasons(self, profile: Profile, candidates: list[int]) -> list[str]:
        """Why each candidate was picked: the example it is closest to (embedding and words alike).

        Kept on the profile: readers who share a library share its profile, and mostly its picks."""
        labels = profile.labels
        missing = [i for i in dict.fromkeys(candidates) if i not in labels]
        if missing:
            closeness = profile.example_vectors @ self.vectors[missing].T
            if profile.example_lexical is not None and profile.example_lexical.shape[0]:
                closeness = closeness + profile.example_lexical.dense_product(self.lexical.select(missing).by_column())
            for i, best in zip(missing, np.argmax(closeness, axis=0).tolist()):
                labels[i] = profile.examples[best].label
        return [labels[i] for i in candidates]


def _top_block(
    space: SimilarSpace, profiles: list[Profile], blocked: list[np.ndarray], cuts: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top `limit` hybrid scores of each profile, without a sort or partition per row.

    The scores (one dense product for the embedding side, one sparse one for the tf-idf side, up to the
    block's largest cut) are seen as `groups` interleaved groups of columns; the limit-th largest group
    maximum is a score that at least `limit` candidates reach, so only the few groups whose maximum
    reaches it are looked into.
    """
    rows, span = len(profiles), int(cuts.max())
    if not span:
        return np.full((rows, limit), -1, dtype=np.int64), np.full((rows, limit), -np.inf, dtype=np.float32)
    groups = max(min(span, -(-span // GROUP)), limit)
    depth = -(-span // groups)
    block = np.empty((rows, depth * groups), dtype=np.float32)
    np.matmul(np.stack([p.query for p in profiles]), space.matrix[:span].T, out=block[:, :span])
    products, offset = space._lexical_query(profiles)
    block[:, :span] += products[:, :span]
    block[:, span:] = -np.inf
    for row in np.flatnonzero(cuts < span):
        block[row, cuts[row] : span] = -np.inf
    sizes = [len(skip) for skip in blocked]
    if sum(sizes):
        skip = np.concatenate(blocked).astype(np.int64)
        owner = np.repeat(np.arange(rows), sizes)
        inside = skip < span
        block[owner[inside], skip[inside]] = -np.inf
    layers = block.reshape(rows, depth, groups)
    maxima = layers.max(axis=1)
    floor = np.partition(maxima, groups - limit, axis=1)[:, groups - limit]
    row, group = np.nonzero(maxima >= floor[:, None])
    values = layers[row, :, group]  # (pairs, depth)
    columns = group[:, None] + groups * np.arange(depth)
    keep = (values >= floor[row, None]) & (values > -np.inf)
    row = np.broadcast_to(row[:, None], keep.shape)[keep]
    columns, values = columns[keep], values[keep]
    order = np.lexsort((columns, -values, row))
    row, columns, values = row[order], columns[order], values[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    wanted = rank < limit
    positions = np.full((rows, limit), -1, dtype=np.int64)
    scores = np.full((rows, limit), -np.inf, dtype=np.float32)
    positions[row[wanted], rank[wanted]] = columns[wanted]
    scores[row[wanted], rank[wanted]] = values[wanted] + offset[row[wanted]]
    return positions, scores


def _kernel_block(
    top_rows, space: SimilarSpace, profiles: list[Profile], blocked: list[np.ndarray], cuts: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """What _top_block gives (up to a shortlist's misses, see module doc), by the compiled `top_rows`:
    the dense product on the LEADING_DIRECTIONS only, the other directions for a SHORTLIST per profile."""
    rows, span = len(profiles), int(cuts.max())
    positions = np.full((rows, limit), -1, dtype=np.int64)
    scores = np.full((rows, limit), -np.inf, dtype=np.float32)
    if not span:
        return positions, scores
    lead, rest = space._split()
    queries = np.array([p.query for p in profiles])  # (np.stack: 4x slower for short rows)
    block = queries[:, : len(lead)] @ lead[:, :span]
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum([len(p.terms) for p in profiles], out=indptr[1:])
    terms = np.concatenate([p.terms for p in profiles])
    weights = np.concatenate([p.weights for p in profiles])
    skip_indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum([len(skip) for skip in blocked], out=skip_indptr[1:])
    skip = np.concatenate(blocked).astype(np.int64) if skip_indptr[-1] else np.zeros(0, dtype=np.int64)
    by_term = space.by_term
    top_rows(block, cuts, indptr, terms, weights, by_term.indptr, by_term.indices, by_term.data, space._term_means,
             space._common, len(space), 1 - space.embedding_weight, skip_indptr, skip,
             np.ascontiguousarray(queries[:, len(lead) :]), rest, SHORTLIST, positions, scores)
    return positions, scores
