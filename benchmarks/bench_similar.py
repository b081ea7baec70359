"""Speed of the similar ranking: embedding papers at ingest, and ranking many profiles over a day's papers.

Papers are made from the 368 bundled ones (tests/fixtures/relevance/papers.jsonl): each synthetic
abstract strings together random sentences of real abstracts under a real title, so the vocabulary and
lengths are those of real papers (~330 tokens). Profiles are libraries of 3-8 such papers (not candidates).

1. Embedding N papers (default 10,000): our pooling (each distinct word tokenized once, one sparse
   product) against wordllama's own `embed` (the naive way), then `embed_papers` into a SQLite store
   (read the papers without vectors, embed, write the BLOBs).
2. Ranking P profiles (default 100,000) over the N papers: `SimilarSpace.rank` (a block of profiles x
   candidates as one matrix product, the tf-idf side as one sparse product, top-k per row), against the
   naive way (one profile at a time, argsort of its scores) on a sample, extrapolated. Building the
   profiles (per library: embed + tf-idf of its entries) is timed separately.

    python benchmarks/bench_similar.py [--papers 10000] [--profiles 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.embeddings import load_embedder, paper_text  # noqa: E402
from newsletter.models import Paper  # noqa: E402
from newsletter.similarity import Example, SimilarSpace  # noqa: E402

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


def timed(function, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return times, result


def span(times: list[float]) -> str:
    return f"{min(times):.2f}-{max(times):.2f} s" if len(times) > 1 else f"{times[0]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=300)
    args = parser.parse_args()

    embedder = load_embedder()
    papers = synthetic_papers(args.papers)
    texts = [paper_text(p.title, p.abstract) for p in papers]
    print(f"{len(papers)} papers, mean {sum(len(t.split()) for t in texts) / len(texts):.0f} words")

    times, vectors = timed(lambda: embedder.embed(texts), args.repeat)
    print(f"embed {len(texts)} papers: {span(times)} ({len(texts) / min(times):,.0f} papers/s)")
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

    started = time.perf_counter()
    space = SimilarSpace(papers, vectors)
    print(f"\nSimilarSpace over {len(papers)} candidates (centre, tf-idf fit): {time.perf_counter() - started:.2f} s")
    rng = random.Random(2)
    pool = synthetic_papers(2000, seed=3)
    pool_vectors = embedder.embed([paper_text(p.title, p.abstract) for p in pool])
    pool_examples = [Example(p.title, paper_text(p.title, p.abstract), v) for p, v in zip(pool, pool_vectors)]
    libraries = 2000
    started = time.perf_counter()
    distinct = [space.profile(rng.sample(pool_examples, rng.randint(3, 8))) for _ in range(libraries)]
    per_profile = (time.perf_counter() - started) / libraries
    print(f"building a profile from its library's vectors: {per_profile * 1000:.2f} ms each ({libraries} distinct libraries)")
    profiles = [distinct[rng.randrange(libraries)] for _ in range(args.profiles)]
    blocked = [np.array(rng.sample(range(len(papers)), 10), dtype=np.int64) for _ in profiles]  # already sent

    times, ranked = timed(lambda: space.rank(profiles, blocked, 10), args.repeat)
    print(f"rank {len(profiles):,} profiles x {len(papers):,} candidates, top 10 each: {span(times)}"
          f" ({len(profiles) / min(times):,.0f} profiles/s)")

    def naive_rank(sample):
        out = []
        for profile, skip in sample:
            scores = space.scores([profile])[0]
            scores[skip] = -np.inf
            out.append(np.argsort(-scores)[:10])
        return out

    sample = list(zip(profiles[: args.naive_sample], blocked[: args.naive_sample]))
    started = time.perf_counter()
    naive_top = naive_rank(sample)
    naive = (time.perf_counter() - started) * len(profiles) / len(sample)
    print(f"  naive (one profile at a time, full argsort): {naive:.1f} s extrapolated from {len(sample)} -> {naive / min(times):.1f}x slower")
    agree = np.mean([set(a.tolist()) == {i for i, _ in b} for a, b in zip(naive_top, ranked[: len(sample)])])
    print(f"  same top 10 as the naive way: {agree:.0%} of the sample")


if __name__ == "__main__":
    main()
