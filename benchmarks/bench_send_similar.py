"""`send` throughput with similar profiles against keyword profiles, same run, same papers.

A store with the 368 bundled papers (tests/fixtures/relevance/papers.jsonl) and their vectors (as `ingest`
leaves it), N subscribers of each kind (keyword profiles from the fixture's topic keywords; similar profiles
pointing at one of the six seed libraries), then one dry-run edition each (select + render + MIME, no delivery),
timed end to end, wall clock and CPU. Each repeat runs both kinds back to back, so their ratio is taken under
the same load. The store is first left as `newsletter ingest` leaves it, in another process: the papers'
vectors and those of the libraries' entries (stored by text), so no `send` loads the model. The first
repeat is still this process's first similar send (it parses the libraries, builds the day's space).

    python benchmarks/bench_send_similar.py [--subscribers 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI sets it (newsletter/cli): the ranking runs a thread per core itself
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.config import load_config  # noqa: E402
from newsletter.models import Subscriber  # noqa: E402
from newsletter.pipeline import run_edition  # noqa: E402
from tests.relevance_eval import open_fixture_store, topics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ingest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest:
        ingest(args.ingest)
        return
    folder = Path(tempfile.mkdtemp())
    (folder / "config.toml").write_text(
        '[newsletter]\nfrom = "a@example.org"\nbase_url = "http://x"\n[store]\npath = "s.db"\n[delivery]\nbackend = "memory"\n',
        encoding="utf-8")
    config = load_config(folder / "config.toml")
    store = open_fixture_store(config.store_url)
    # what ingest does, in another process: this one starts as a `send` does, without the model
    subprocess.run([sys.executable, __file__, "--ingest", str(folder / "config.toml")], check=True)
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
    cpu: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.repeat):
        for name, subscribers in kinds.items():
            started, used = time.perf_counter(), time.process_time()
            summary = run_edition(config, store, subscribers, day=day, dry_run=True)
            elapsed, used = time.perf_counter() - started, time.process_time() - used
            assert summary.rendered == len(subscribers), summary
            rates[name].append(len(subscribers) / elapsed)
            cpu[name].append(used)
    for name, values in rates.items():
        print(f"{name:>8}: {min(values):,.0f}-{max(values):,.0f} editions/s (select + render + MIME, {args.subscribers} subscribers);"
              f" CPU {min(cpu[name]):.2f}-{max(cpu[name]):.2f} s")
    wall = [similar / keywords for similar, keywords in zip(rates["similar"], rates["keywords"])]
    work = [keywords / similar for similar, keywords in zip(cpu["similar"], cpu["keywords"])]
    print(f"similar / keywords throughput, first repeat (every vector stored by ingest; this process's first"
          f" similar send): wall {wall[0]:.2f}, CPU {work[0]:.2f}")
    if len(wall) > 1:
        print(f"  later repeats: wall {min(wall[1:]):.2f}-{max(wall[1:]):.2f} (median {sorted(wall[1:])[len(wall[1:]) // 2]:.2f}),"
              f" CPU {min(work[1:]):.2f}-{max(work[1:]):.2f} (median {sorted(work[1:])[len(work[1:]) // 2]:.2f})")
    store.close()
    shutil.rmtree(folder)


def ingest(config_path: Path) -> None:
    """What `newsletter ingest` leaves in the store: every paper's vector (`embed_papers`), and every
    subscriber library's entries' (`embed_libraries`: here the six seed libraries the similar readers use)."""
    from newsletter.app import embed_papers
    from newsletter.relevance import Relevance
    from newsletter.store import Store

    config = load_config(config_path)
    with Store(config.store_url) as store:
        embed_papers(config, store)
        readers = [Subscriber(email=f"s{n}@example.org", mode="similar", library=t.library) for n, t in enumerate(topics())]
        Relevance(store, config.model.selection.embedder).embed_libraries(readers)


if __name__ == "__main__":
    main()
