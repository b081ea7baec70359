"""Peak memory of a whole `send` run: 100,000 and 1,000,000 generated subscribers.

Each size runs in its own process: the sample papers in a fresh SQLite store,
subscribers generated on the fly, every edition selected, rendered, recorded in
the ledger and handed to a backend that discards it. Prints editions/s and the
peak RSS of each run; streaming in chunks keeps the peaks about equal.

    python benchmarks/bench_send_memory.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_one(count: int) -> None:
    from datetime import date

    from newsletter.config import load_config
    from newsletter.delivery import Backend, SendResult
    from newsletter.models import Subscriber
    from newsletter.pipeline import run_edition
    from newsletter.sources import parse_file
    from newsletter.store import Store

    class DiscardBackend(Backend):
        name = "discard"

        def send_messages(self, messages):
            return [SendResult(m.message_id, ok=True, reply="250 discarded") for m in messages]

    def subscribers():
        for n in range(count):
            yield Subscriber(email=f"reader{n}@example.org", name=f"Reader {n}", max_items=10, max_age_days=3650)

    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.toml"
        config_path.write_text((REPO / "config.example.toml").read_text())
        config = load_config(config_path)
        with Store(config.store_url) as store:
            for page in sorted((REPO / "examples" / "papers").glob("*.txt")):
                store.add_papers(parse_file(page).papers)
            start = time.perf_counter()
            summary = run_edition(config, store, subscribers(), day=date(2026, 11, 25),
                                  backend=DiscardBackend(Backend.Settings(), base_dir=Path(tmp)))
            seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count:>9,} subscribers: {summary.sent:,} sent in {seconds:.0f} s "
          f"({summary.sent / seconds:,.0f} editions/s), peak RSS {peak_mb:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one)
        return
    for size in args.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(size)], check=True)


if __name__ == "__main__":
    main()
