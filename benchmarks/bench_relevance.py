"""Relevance on the hand-judged fixture: precision@10 and nDCG@10 per topic, for keywords vs similar vs mixed,
and the similar ranking's tf-idf-only and embedding-only variants; then the second edition with and without
"more / fewer like this" clicks on the first.

The fixture (tests/fixtures/relevance/): the 368 bundled papers judged by hand against six topics
(judgments.toml: grade 2 on topic, 1 partly, every other paper off topic), and for each topic a seed
library of five well-known papers that are *not* in the store (BibTeX, RIS or CSL-JSON) plus five keywords.
Every variant runs through the real code: a SQLite store, `Relevance.similar_picks`, `selection.select`.

    python benchmarks/bench_relevance.py [--store PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.relevance_eval import VARIANTS, open_fixture_store, run_variant, topics  # noqa: E402


def row(label: str, results: dict[str, tuple[float, float]]) -> str:
    cells = " ".join(f"{p:4.1f} {n:4.2f}" for p, n in results.values())
    mean_p = sum(p for p, _ in results.values()) / len(results)
    mean_n = sum(n for _, n in results.values()) / len(results)
    return f"{label:<38} {cells}   {mean_p:5.3f} {mean_n:5.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="SQLite file to (re)use; default a temporary one")
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


if __name__ == "__main__":
    main()
