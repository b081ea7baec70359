"""Parse + ingest speed: the four sample pages, and a generated 100,000-paper JSON Lines file.

Prints papers/s for `Store.add_papers` (one transaction per file) and, in the same
run, for the naive way: inserting row by row with a commit each (measured on a
sample and extrapolated).

    python benchmarks/bench_ingest.py [--papers 100000] [--naive-sample 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.sources import parse_file  # noqa: E402
from newsletter.store import Store, _paper_row  # noqa: E402

PAGES = sorted((Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf-pages").glob("*.txt"))
WORDS = "diffusion transformer language model agent reasoning video vision robot policy training data".split()


def generate_jsonl(path: Path, count: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as handle:
        for n in range(count):
            title = " ".join(rng.choices(WORDS, k=8)) + f" {n}"
            record = {
                "id": f"2501.{n:05d}", "title": title, "abstract": " ".join(rng.choices(WORDS, k=120)),
                "authors": [f"Author {rng.randrange(5000)}" for _ in range(3)], "author_count": 3,
                "organization": None, "published": f"2025-01-{1 + n % 28:02d}", "upvotes": rng.randrange(300),
                "url": None, "sources": ["jsonl"],
            }
            handle.write(json.dumps(record) + "\n")


def naive_rate(papers, db_path: Path) -> float:
    """Row by row, a commit each: the way not to do it."""
    conn = sqlite3.connect(db_path)
    Store(f"sqlite:///{db_path}").close()  # create the schema
    rows = [_paper_row(p) for p in papers]
    columns = list(rows[0])
    sql = f"INSERT OR REPLACE INTO papers ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    start = time.perf_counter()
    for row in rows:
        conn.execute(sql, [str(v) if v is not None and not isinstance(v, (int, str)) else v for v in row.values()])
        conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        with Store(f"sqlite:///{tmp / 'pages.db'}") as store:
            total = sum(store.add_papers(parse_file(page).papers).parsed for page in PAGES)
            distinct = store.count_papers()
        pages_seconds = time.perf_counter() - start
        print(f"four sample pages: {total} entries, {distinct} distinct papers, {pages_seconds:.3f} s "
              f"({total / pages_seconds:,.0f} papers/s; aim < 0.2 s)")

        jsonl = tmp / "papers.jsonl"
        generate_jsonl(jsonl, args.papers)
        start = time.perf_counter()
        parsed = parse_file(jsonl)
        parse_seconds = time.perf_counter() - start
        with Store(f"sqlite:///{tmp / 'big.db'}") as store:
            start = time.perf_counter()
            stats = store.add_papers(parsed.papers)
            store_seconds = time.perf_counter() - start
        total_seconds = parse_seconds + store_seconds
        rate = args.papers / total_seconds
        print(f"{args.papers:,} JSON Lines papers: parse {parse_seconds:.2f} s + store {store_seconds:.2f} s = "
              f"{total_seconds:.2f} s ({rate:,.0f} papers/s; {stats.new:,} new; aim < 3 s)")

        sample = parsed.papers[: args.naive_sample]
        naive = naive_rate(sample, tmp / "naive.db")
        print(f"naive row-by-row with a commit each: {naive:,.0f} papers/s (on {len(sample):,}; "
              f"{args.papers / naive:.1f} s extrapolated) -> batched is {rate / naive:.1f}x faster")


if __name__ == "__main__":
    main()
