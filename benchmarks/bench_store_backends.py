"""The same store work on SQLite and on PostgreSQL (a private server, fsync on, started for the run).

For each engine: `add_papers` of N new papers in one call, the same N again (all
unchanged), `papers(limit=1000)`, and `claim` of a 10,000-row edition in batches
of 100. In the same run, the naive way on PostgreSQL: one INSERT and one commit
per paper (measured on a sample and extrapolated).

    python benchmarks/bench_store_backends.py [--papers 100000] [--naive-sample 2000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.models import Paper  # noqa: E402
from newsletter.store import EditionRecord, Store, _paper_row, engine_url, papers_table  # noqa: E402
from tests.pg_server import create_database, postgres_server  # noqa: E402

WORDS = "diffusion transformer language model agent reasoning video vision robot policy training data".split()


def make_papers(count: int) -> list[Paper]:
    rng = random.Random(7)
    return [
        Paper.create(
            " ".join(rng.choices(WORDS, k=8)) + f" {n}", arxiv_id=f"2501.{n:05d}",
            abstract=" ".join(rng.choices(WORDS, k=120)), authors=[f"Author {rng.randrange(5000)}" for _ in range(3)],
            author_count=3, published=date(2025, 1, 1 + n % 28), upvotes=rng.randrange(300), sources=["bench"],
        )
        for n in range(count)
    ]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run(name: str, url: str, count: int) -> dict[str, float]:
    first, again = make_papers(count), make_papers(count)
    with Store(url) as store:
        figures = {
            "ingest": timed(lambda: store.add_papers(first)),
            "re-ingest": timed(lambda: store.add_papers(again)),
            "papers(limit=1000)": timed(lambda: store.papers(limit=1000)),
        }
        assert store.count_papers() == count
        day = date(2026, 11, 25)
        emails = [f"r{n:05d}@example.org" for n in range(10_000)]
        store.record_pending([EditionRecord(email, day, f"<{email}>", [], "S") for email in emails])

        def claim_all() -> None:
            got = sum(len(store.claim(day, emails[n : n + 100], owner="w", lease_seconds=60).emails) for n in range(0, 10_000, 100))
            assert got == 10_000

        figures["claim 10k in 100s"] = timed(claim_all)
    print(f"{name:>10}: " + ", ".join(f"{key} {seconds:.2f} s" for key, seconds in figures.items()))
    print(f"{'':>10}  ingest {count / figures['ingest']:,.0f} papers/s, re-ingest {count / figures['re-ingest']:,.0f} papers/s")
    return figures


def naive_rate(url: str, sample: int) -> float:
    """Row by row on PostgreSQL, a commit each: the way not to do it."""
    import psycopg

    Store(url).close()  # create the schema
    rows = [_paper_row(p) for p in make_papers(sample)]
    columns = list(rows[0])
    sql = f"INSERT INTO {papers_table.name} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})"
    dsn = engine_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for row in rows:
            conn.execute(sql, list(row.values()))
            conn.commit()
        return sample / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, postgres_server(durable=True) as server:
        print(f"PostgreSQL test server started in {server.started_in:.2f} s")
        lite = run("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.papers)
        pg = run("postgresql", create_database(server), args.papers)
        naive = naive_rate(create_database(server), args.naive_sample)
    rate = args.papers / pg["ingest"]
    print(f"postgresql/sqlite time ratio: ingest {pg['ingest'] / lite['ingest']:.2f}x, "
          f"re-ingest {pg['re-ingest'] / lite['re-ingest']:.2f}x, claims {pg['claim 10k in 100s'] / lite['claim 10k in 100s']:.2f}x")
    print(f"naive row-by-row on postgresql: {naive:,.0f} papers/s (on {args.naive_sample:,}; "
          f"{args.papers / naive:.1f} s extrapolated) -> batched is {rate / naive:.1f}x faster")


if __name__ == "__main__":
    main()
