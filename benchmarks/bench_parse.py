"""Parsing speed: the four Hugging Face page dumps and a generated 100,000-line JSON Lines file.

Run from the repository root: `python benchmarks/bench_parse.py [--lines N]`.
Prints papers per second for each, and for JSON Lines the ratio against the naive
way (json.loads + Paper.create per line, garbage collector running).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.models import Paper  # noqa: E402
from newsletter.sources import parse_file  # noqa: E402

PAGES = sorted((Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf-pages").glob("*.txt"))


def best_of(runs: int, work) -> tuple[float, object]:
    """The fastest of `runs` timings, and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_pages() -> None:
    seconds, results = best_of(20, lambda: [parse_file(p, page_date=date(2025, 12, 8)) for p in PAGES])
    count = sum(len(r.papers) for r in results)
    print(f"hf-page  {len(PAGES)} pages, {count} papers: {seconds * 1000:.1f} ms, {count / seconds:,.0f} papers/s")


def write_jsonl(path: Path, lines: int) -> None:
    """`lines` records shaped like `newsletter papers --json`, with the real titles and abstracts of the pages."""
    sample = [p for page in PAGES for p in parse_file(page, page_date=date(2025, 12, 8)).papers]
    with path.open("w", encoding="utf-8") as out:
        for n in range(lines):
            paper = sample[n % len(sample)]
            arxiv_id = f"25{n % 12 + 1:02d}.{n % 100000:05d}"
            out.write(json.dumps({
                "id": arxiv_id, "title": paper.title, "abstract": paper.abstract,
                "authors": ["Ada Lovelace", "Alan Turing"], "author_count": paper.author_count,
                "organization": paper.organization,
                "published": paper.published.isoformat() if paper.published else None,
                "upvotes": paper.upvotes, "url": f"https://arxiv.org/abs/{arxiv_id}", "sources": ["hf-page"],
                "arxiv_id": arxiv_id,
            }) + "\n")


def naive_jsonl(path: Path) -> list[Paper]:
    """The obvious way: one json.loads and one Paper.create per line."""
    papers = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        published = record.get("published")
        papers.append(Paper.create(
            record["title"], arxiv_id=record.get("arxiv_id"), abstract=record.get("abstract") or "",
            authors=record.get("authors") or [], author_count=record.get("author_count"),
            organization=record.get("organization"), upvotes=record.get("upvotes"), url=record.get("url"),
            published=date.fromisoformat(published) if published else None, sources=record.get("sources") or [],
        ))
    return papers


def bench_jsonl(lines: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "papers.jsonl"
        write_jsonl(path, lines)
        size = path.stat().st_size / 1e6
        fast, result = best_of(3, lambda: parse_file(path))
        naive, papers = best_of(3, lambda: naive_jsonl(path))
    assert len(result.papers) == len(papers) == lines and not result.warnings
    print(f"jsonl    {lines:,} lines ({size:.0f} MB): {fast:.2f} s, {lines / fast:,.0f} papers/s")
    print(f"jsonl    naive json.loads + Paper.create: {naive:.2f} s, {lines / naive:,.0f} papers/s; "
          f"parse_file is {naive / fast:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="JSON Lines records to generate")
    args = parser.parse_args()
    bench_pages()
    bench_jsonl(args.lines)


if __name__ == "__main__":
    main()
