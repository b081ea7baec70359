"""`send` throughput with similar profiles against keyword profiles, same run, same papers.

A store with the 368 bundled papers (tests/fixtures/relevance/papers.jsonl), N subscribers of each kind
(keyword profiles from the fixture's topic keywords; similar profiles pointing at one of the six seed
libraries), then one dry-run edition each (select + render + MIME, no delivery), timed end to end. Each repeat runs
both kinds back to back, so their ratio is taken under the same load.

    python benchmarks/bench_send_similar.py [--subscribers 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.config import load_config  # noqa: E402
from newsletter.models import Subscriber  # noqa: E402
from newsletter.pipeline import run_edition  # noqa: E402
from tests.relevance_eval import open_fixture_store, topics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "config.toml").write_text(
        '[newsletter]\nfrom = "a@example.org"\nbase_url = "http://x"\n[store]\npath = "s.db"\n[delivery]\nbackend = "memory"\n',
        encoding="utf-8")
    config = load_config(folder / "config.toml")
    store = open_fixture_store(config.store_url)
    judged = topics()
    common = {"max_items": 10, "max_age_days": 100000}
    kinds = {
        "keywords": [Subscriber(email=f"k{n}@example.org", mode="keywords", keywords=judged[n % 6].keywords, **common)
                     for n in range(args.subscribers)],
        "similar": [Subscriber(email=f"s{n}@example.org", mode="similar", library=judged[n % 6].library, **common)
                    for n in range(args.subscribers)],
    }
    day = date(2026, 12, 1)
    rates: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.repeat):
        for name, subscribers in kinds.items():
            started = time.perf_counter()
            summary = run_edition(config, store, subscribers, day=day, dry_run=True)
            elapsed = time.perf_counter() - started
            assert summary.rendered == len(subscribers), summary
            rates[name].append(len(subscribers) / elapsed)
    for name, values in rates.items():
        print(f"{name:>8}: {min(values):,.0f}-{max(values):,.0f} editions/s (select + render + MIME, {args.subscribers} subscribers)")
    paired = sorted(similar / keywords for similar, keywords in zip(rates["similar"], rates["keywords"]))
    print(f"similar / keywords, each repeat (the two kinds run back to back): {', '.join(f'{r:.2f}' for r in paired)};"
          f" median {paired[len(paired) // 2]:.2f} (the first similar run loads the embedding model)")
    store.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
