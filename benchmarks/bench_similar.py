"""Speed of the similar ranking: embedding papers at ingest, and ranking many profiles over a day's papers.

Papers are made from the 368 bundled ones (tests/fixtures/relevance/papers.jsonl): each synthetic
abstract strings together random sentences of real abstracts under a real title, so the vocabulary and
lengths are those of real papers (~330 tokens). Profiles are libraries of 3-8 such papers (not candidates).

1. Embedding N papers (default 10,000): our pooling (each distinct word tokenized once, one sparse
   product) against wordllama's own `embed` (the naive way), then `embed_papers` into a SQLite store
   (read the papers without vectors, embed, write the BLOBs).
2. Ranking P distinct profiles (default 100,000) over the N papers: `SimilarSpace.rank` (blocks of
   profiles x candidates, a thread per core; from KERNEL_PROFILES on, the compiled loop: the dense
   product on the leading principal directions, the tf-idf postings and the top-k in one pass per row,
   the other directions for a shortlist), against the naive way (one profile at a time, every direction
   and term, argsort of its scores) and the hybrid as it was (every term, z-scores computed over the
   scores) on a sample, extrapolated, and against the numpy path (every direction for every candidate)
   on more profiles. Building one profile (embed + tf-idf of a library's entries) is timed separately.
   The GFLOP/s of one thread's product says what bounds the ranking on the machine at hand.

    python benchmarks/bench_similar.py [--papers 10000] [--profiles 100000] [--repeat 3] [--check 10000]
"""

from __future__ import annotations

import argparse
import os
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI: the ranking runs one thread per core itself
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.embeddings import load_embedder, paper_text  # noqa: E402
from newsletter.models import Paper  # noqa: E402
from newsletter import similarity  # noqa: E402
from newsletter.similarity import LEXICAL_TERMS, Example, Profile, SimilarSpace  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "relevance" / "papers.jsonl"


def synthetic_papers(count: int, seed: int = 1) -> list[Paper]:
    rng = random.Random(seed)
    real = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    sentences = [s for paper in real for s in re.split(r"(?<=[.!?])\s+", paper["abstract"]) if len(s) > 20]
    papers = []
    for n in range(count):
        title = rng.choice(real)["title"]
        abstract = " ".join(rng.choice(sentences) for _ in range(rng.randint(5, 10)))
        papers.append(Paper.create(f"{title} ({n})", arxiv_id=f"2612.{n:05d}", abstract=abstract))
    return papers


def timed(function, repeat: int, cpu: list[float] | None = None) -> tuple[list[float], object]:
    """Wall times of `repeat` calls (and their CPU times, every thread's, into `cpu`) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        result = function()
        times.append(time.perf_counter() - started)
        if cpu is not None:
            cpu.append(time.process_time() - used)
    return times, result


def span(times: list[float]) -> str:
    return f"{min(times):.2f}-{max(times):.2f} s" if len(times) > 1 else f"{times[0]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument("--check", type=int, default=10_000, help="profiles checked against the numpy path (0: none)")
    parser.add_argument("--ranking-only", action="store_true", help="skip the embedding benchmarks (part 1)")
    args = parser.parse_args()

    embedder = load_embedder()
    papers = synthetic_papers(args.papers)
    texts = [paper_text(p.title, p.abstract) for p in papers]
    print(f"{len(papers)} papers, mean {sum(len(t.split()) for t in texts) / len(texts):.0f} words")

    times, vectors = timed(lambda: embedder.embed(texts), 1 if args.ranking_only else args.repeat)
    print(f"embed {len(texts)} papers: {span(times)} ({len(texts) / min(times):,.0f} papers/s)")
    if not args.ranking_only:
        embedding_baselines(embedder, papers, texts, times)
    rank_benchmark(args, embedder, papers, vectors)


def embedding_baselines(embedder, papers, texts, times) -> None:
    import wordllama
    from wordllama import WordLlama

    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    sample = texts[: max(len(texts) // 10, 1)]
    naive_times, _ = timed(lambda: model.embed(sample, norm=True), 1)
    naive = naive_times[0] * len(texts) / len(sample)
    print(f"  naive (wordllama's own embed, padded batches): {naive:.2f} s extrapolated from {len(sample)} -> {naive / min(times):.1f}x slower")

    from newsletter.app import embed_papers
    from newsletter.config import load_config
    from newsletter.store import Store

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "config.toml"
        config_path.write_text('[newsletter]\nfrom = "a@example.org"\nbase_url = "http://x"\n', encoding="utf-8")
        config = load_config(config_path)
        with Store(f"sqlite:///{Path(folder) / 'bench.db'}") as store:
            store.add_papers(papers)
            started = time.perf_counter()
            embedded = embed_papers(config, store)
            print(f"embed_papers into SQLite (read, embed, write {embedded} BLOBs): {time.perf_counter() - started:.2f} s")


def rank_benchmark(args, embedder, papers, vectors) -> None:

    started = time.perf_counter()
    space = SimilarSpace(papers, vectors)
    print(f"\nSimilarSpace over {len(papers)} candidates (centre, tf-idf fit, covariance): {time.perf_counter() - started:.2f} s"
          f" -> ranking matrix {space.matrix.shape[0]:,} x {space.matrix.shape[1]}")
    rng = random.Random(2)
    pool = synthetic_papers(2000, seed=3)
    pool_vectors = embedder.embed([paper_text(p.title, p.abstract) for p in pool])
    pool_examples = [Example(p.title, paper_text(p.title, p.abstract), v) for p, v in zip(pool, pool_vectors)]
    libraries = 1000
    started = time.perf_counter()
    for _ in range(libraries):
        space.profile(rng.sample(pool_examples, rng.randint(3, 8)))
    per_profile = (time.perf_counter() - started) / libraries
    print(f"building a profile from its library's vectors: {per_profile * 1000:.2f} ms each ({libraries} distinct libraries)")

    started = time.perf_counter()
    profiles = distinct_profiles(space, pool_examples, args.profiles, rng)
    print(f"{len(profiles):,} distinct profiles (3-8 library papers each) made in {time.perf_counter() - started:.1f} s (not timed below)")
    blocked = [np.array(rng.sample(range(len(papers)), 10), dtype=np.int64) for _ in profiles]  # already sent

    cpu: list[float] = []
    times, (top, top_scores) = timed(lambda: space.rank(profiles, blocked, 10), args.repeat, cpu)
    compiled = len(profiles) >= similarity.KERNEL_PROFILES
    directions = min(similarity.LEADING_DIRECTIONS, space.matrix.shape[1]) if compiled else space.matrix.shape[1]
    flops = 2 * len(profiles) * len(papers) * directions
    how = (f"the compiled loop; the dense product on {directions} of {space.matrix.shape[1]} directions"
           f" ({similarity.SHORTLIST} per profile get the others)" if compiled else "numpy; the dense product")
    print(f"rank {len(profiles):,} profiles x {len(papers):,} candidates, top 10 each ({os.cpu_count()} cores): {span(times)}"
          f" ({len(profiles) / min(times):,.0f} profiles/s; {how}: {flops / 1e9:,.0f} GFLOP,"
          f" {flops / min(times) / 1e9:,.0f} GFLOP/s overall; load average {os.getloadavg()[0]:.1f})")
    print(f"  CPU {span(cpu)} ({min(cpu) / len(profiles) * 1e6:.0f} us per profile): the wall time on"
          f" {os.cpu_count()} idle cores would be about {min(cpu) / (os.cpu_count() or 1):.1f} s")
    print(f"  each repeat: {', '.join(f'{t:.2f}' for t in times)} s wall"
          + (" (the first one imports numba and loads the compiled loop)" if compiled else ""))
    product = time_product(space, profiles, directions)
    print(f"  the matrix product alone, one thread, 256 profiles: {product:.1f} GFLOP/s -> {flops / product / 1e9:.2f} s"
          f" for all on one core")
    if compiled and args.check:
        check = min(args.check, len(profiles))
        started = time.perf_counter()
        exact, _ = space.rank(profiles[:check], blocked[:check], 10, compiled=False)
        numpy_time = (time.perf_counter() - started) * len(profiles) / check
        same = np.mean([set(a) == set(b) for a, b in zip(exact.tolist(), top[:check].tolist())])
        print(f"  the numpy path (every direction for every candidate): {numpy_time:.1f} s extrapolated from {check:,}"
              f" -> {numpy_time / min(times):.1f}x slower; same top 10 for {same:.2%} of them")

    sample = list(zip(profiles[: args.naive_sample], blocked[: args.naive_sample]))
    started = time.perf_counter()
    naive_top = []
    for profile, skip in sample:  # the naive way: one profile at a time, argsort of its scores
        scores = space.scores([profile])[0]
        scores[skip] = -np.inf
        naive_top.append(np.argsort(-scores, kind="stable")[:10])
    naive = (time.perf_counter() - started) * len(profiles) / len(sample)
    print(f"  naive (one profile at a time, full argsort): {naive:.1f} s extrapolated from {len(sample)}"
          f" -> {naive / min(times):.1f}x slower")
    agree = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(naive_top, top[: len(sample)])])
    print(f"  same top 10 as the naive way: {agree:.0%} of the sample")

    started = time.perf_counter()
    exact_top = [exact_hybrid_top(space, profile, skip) for profile, skip in sample]
    exact = (time.perf_counter() - started) * len(profiles) / len(sample)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact_top, top[: len(sample)])])
    print(f"  the hybrid as it was (every profile term kept, z-scores over every candidate's score),"
          f" one profile at a time: {exact:.1f} s extrapolated -> {exact / min(times):.1f}x slower;"
          f" {recall:.0%} of its top 10 in ours (the difference: common terms left out)")


def distinct_profiles(space: SimilarSpace, pool: list[Example], count: int, rng: random.Random) -> list[Profile]:
    """`count` profiles, each the centroid of its own 3-8 pool papers, as SimilarSpace.profile makes them
    (the pool's tf-idf rows computed once, not per library file as a real run does)."""
    centred = np.stack([e.vector for e in pool]) - space.mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    lexical = scipy_rows(space._lexical([e.text for e in pool]))
    sizes = [rng.randint(3, 8) for _ in range(count)]
    members = np.concatenate([rng.sample(range(len(pool)), size) for size in sizes])
    mixing = csr_matrix((np.repeat([1 / size for size in sizes], sizes), members, np.concatenate([[0], np.cumsum(sizes)])),
                        shape=(count, len(pool)), dtype=np.float32)
    directions = mixing @ centred
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    terms = (mixing @ lexical).tocsr()
    profiles = []
    for n in range(count):
        columns, weights = terms.indices[terms.indptr[n] : terms.indptr[n + 1]], terms.data[terms.indptr[n] : terms.indptr[n + 1]]
        if len(columns) > LEXICAL_TERMS:
            keep = np.argpartition(weights, -LEXICAL_TERMS)[-LEXICAL_TERMS:]
            columns, weights = columns[keep], weights[keep]
        order = np.argsort(columns)
        profile = Profile(vector=directions[n], terms=columns[order].astype(np.int64), weights=weights[order])
        profile.query = space.query(profile)
        profiles.append(profile)
    return profiles


def scipy_rows(rows) -> csr_matrix:
    """A SparseRows (newsletter/tfidf.py) as scipy's CSR matrix, for the products this benchmark makes."""
    return csr_matrix((rows.data, rows.indices, rows.indptr), shape=rows.shape)


def time_product(space: SimilarSpace, profiles: list[Profile], directions: int) -> float:
    """GFLOP/s of one thread's block product on the leading `directions` (what bounds the ranking)."""
    from threadpoolctl import threadpool_limits

    queries = np.stack([p.query[:directions] for p in profiles[:256]])
    matrix = np.ascontiguousarray(space.matrix[:, :directions].T)  # as _kernel_block has it (the numpy path: .T of it)
    out = np.empty((len(queries), len(space)), dtype=np.float32)
    with threadpool_limits(1):
        started = time.perf_counter()
        for _ in range(10):
            np.matmul(queries, matrix, out=out)
        elapsed = time.perf_counter() - started
    return 10 * 2 * out.size * directions / elapsed / 1e9


def exact_hybrid_top(space: SimilarSpace, profile: Profile, skip: np.ndarray) -> np.ndarray:
    """The hybrid as it was: z-scored embedding cosine + z-scored tf-idf overlap of every profile term."""
    def z(x):
        spread = x.std()
        return (x - x.mean()) / spread if spread > 0 else x * 0

    embedding = space.vectors @ profile.vector
    lexical = scipy_rows(space.lexical)[:, profile.terms] @ profile.weights
    scores = space.embedding_weight * z(embedding) + (1 - space.embedding_weight) * z(np.asarray(lexical).ravel())
    scores[skip] = -np.inf
    return np.argsort(-scores, kind="stable")[:10]

if __name__ == "__main__":
    main()
