"""Relevance on the hand-judged fixture: precision@10 and nDCG@10 per topic, for keywords vs similar vs mixed,
and the similar ranking's tf-idf-only and embedding-only variants; then the second edition with and without
"more / fewer like this" clicks on the first.

The fixture (tests/fixtures/relevance/): the 368 bundled papers judged by hand against six topics
(judgments.toml: grade 2 on topic, 1 partly, every other paper off topic), and for each topic a seed
library of five well-known papers that are *not* in the store (BibTeX, RIS or CSL-JSON) plus five keywords.
Every variant runs through the real code: a SQLite store, `Relevance.similar_picks`, `selection.select`.

Then the similar ranking at a real day's size: the 368 papers among N distractors (default 10,000) made
of sentences of the papers judged off topic for every topic, ranked by `SimilarSpace.rank` as is
(common terms left out), by its compiled loop (what a batch of KERNEL_PROFILES and more gets: a
shortlist on the leading principal directions), and with every profile term kept.

    python benchmarks/bench_relevance.py [--store PATH] [--distractors 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.relevance_eval import (  # noqa: E402
    VARIANTS,
    fixture_papers,
    ndcg_at,
    open_fixture_store,
    precision_at,
    run_variant,
    topics,
)


def row(label: str, results: dict[str, tuple[float, float]]) -> str:
    cells = " ".join(f"{p:4.1f} {n:4.2f}" for p, n in results.values())
    mean_p = sum(p for p, _ in results.values()) / len(results)
    mean_n = sum(n for _, n in results.values()) / len(results)
    return f"{label:<38} {cells}   {mean_p:5.3f} {mean_n:5.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="SQLite file to (re)use; default a temporary one")
    parser.add_argument("--distractors", type=int, default=10_000, help="off-topic papers added for the last table (0: skip)")
    args = parser.parse_args()
    path = args.store or Path(tempfile.mkdtemp()) / "relevance.db"
    started = time.perf_counter()
    store = open_fixture_store(f"sqlite:///{path}")
    names = [topic.name for topic in topics()]
    print(f"{len(store.papers())} papers, {len(names)} topics; ingest + embed {time.perf_counter() - started:.1f} s")
    header = " ".join(f"{name[:9]:>9}" for name in names)
    print(f"{'variant (P@10 nDCG@10 per topic)':<38} {header}   mean P@10 nDCG@10")
    for name in VARIANTS:
        print(row(name, run_variant(store, name)))
    print("\nsecond edition (the first one's picks sent), without and with clicks on the first:")
    for name in ("similar (hybrid)", "keywords", "mixed (keywords + similar)"):
        print(row(f"{name}, no clicks", run_variant(store, name, editions=2)))
        print(row(f"{name}, clicks", run_variant(store, name, editions=2, clicks=True)))
    store.close()
    if args.distractors:
        among_distractors(args.distractors)


def among_distractors(count: int) -> None:
    import random
    import re

    import numpy as np

    from newsletter import similarity
    from newsletter.embeddings import load_embedder, paper_text
    from newsletter.library import read_library
    from newsletter.models import Paper

    embedder, judged, real = load_embedder(), topics(), fixture_papers()
    relevant = set().union(*(topic.relevant for topic in judged))
    off = [paper for paper in real if paper.id not in relevant]
    sentences = [s for paper in off for s in re.split(r"(?<=[.!?])\s+", paper.abstract or "") if len(s) > 20]
    rng = random.Random(5)
    papers = real + [
        Paper.create(f"{rng.choice(off).title} ({n})", arxiv_id=f"2699.{n:05d}",
                     abstract=" ".join(rng.choice(sentences) for _ in range(rng.randint(5, 10))))
        for n in range(count)
    ]
    vectors = embedder.embed([paper_text(paper.title, paper.abstract) for paper in papers])
    libraries = []
    for topic in judged:
        items = read_library(topic.library).items
        libraries.append([similarity.Example(item.title, item.text, vector)
                          for item, vector in zip(items, embedder.embed([item.text for item in items]))])
    print(f"\nsimilar (hybrid) among {count:,} off-topic distractors ({len(papers):,} candidates):")
    default = similarity.MIN_COMMON
    for label, common, compiled in (("as ranked (common terms left out)", default, None),
                                    ("compiled loop (a big batch's ranking)", default, True),
                                    ("every profile term kept", 10**12, None)):
        similarity.MIN_COMMON = common
        space = similarity.SimilarSpace(papers, vectors)
        similarity.MIN_COMMON = default
        results = {}
        for topic, examples in zip(judged, libraries):
            positions, _ = space.rank([space.profile(examples)], [np.zeros(0, dtype=np.int64)], 10, compiled=compiled)
            ids = [papers[i].id for i in positions[0] if i >= 0]
            results[topic.name] = (precision_at(ids, topic.relevant), ndcg_at(ids, topic.relevant))
        print(row(label, results))


if __name__ == "__main__":
    main()
