"""The scale-out fault table: what each fault costs at the default lease and visibility timeout.

The events of issue 22, with real parts on this machine: a private PostgreSQL
(durable) and Redis (no persistence), `newsletter worker` processes (two, with
`--concurrency 2`), and an aiosmtpd sink taking `--delay` seconds per message.
For each event: editions missing, duplicates (and the killed sender's editions in
flight), and the seconds from the fault (or the server's return) until every
edition was sent. Run from the repository root:

    python benchmarks/bench_cluster_faults.py [--subscribers 3000] [--delay 0.002] [--events kill-worker ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NEWSLETTER_SECRET", "benchmark-signing-key")

from newsletter.config import load_config, load_subscribers  # noqa: E402
from newsletter.message import make_message_id  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.workers import LOST_AFTER_SECONDS, enqueue, requeue_lost  # noqa: E402
from tests.conftest import DAY  # noqa: E402
from tests.pg_server import create_database, postgres_server  # noqa: E402
from tests.redis_server import RedisProcess  # noqa: E402
from tests.test_workers import kill_mid_chunk, wait_for_sending, wait_until  # noqa: E402
from tests.worker_cluster import CountingSink, start_workers, write_setup  # noqa: E402

EVENTS = ["kill-worker", "kill-pool-process", "redis-restart", "pg-mid-chunk", "pg-between-shards", "pg-idle"]


def run_event(event: str, pg, redis: RedisProcess, args) -> tuple[int, int, int, float]:
    """One event on a fresh database and queue: (missing, duplicates, in flight, seconds to recover)."""
    import redis as redis_client

    client = redis_client.Redis.from_url(redis.url)
    client.flushall()
    client.close()
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{event}-"))
    url = create_database(pg)
    count = args.subscribers
    with CountingSink(delay=args.delay) as sink:
        config_path = write_setup(folder, subscribers=count, day=DAY, store_url=url, broker_url=redis.url,
                                  smtp_port=sink.port, shard_size=None, lease_seconds=None, visibility_timeout=None)
        config = load_config(config_path)
        people = load_subscribers(config.subscribers_dir).subscribers
        workers = start_workers(config_path, folder, ["w1", "w2"], concurrency=2)
        in_flight = 0
        try:
            with Store(url) as store:
                sent = lambda: store.ledger_counts(DAY)["sent"]  # noqa: E731
                if event == "pg-idle":
                    enqueue(config, store, people[:100], day=DAY)
                    wait_until(lambda: sent() == 100, 120, "warm-up", workers)
                    pg.stop()
                    time.sleep(2)
                    pg.start()
                    started = time.monotonic()
                    enqueue(config, store, people, day=DAY)
                elif event == "pg-between-shards":
                    for worker in workers:
                        worker.pause()
                    enqueue(config, store, people, day=DAY)
                    pg.stop()
                    for worker in workers:
                        worker.resume()
                    time.sleep(5)
                    pg.start()
                    started = time.monotonic()
                else:
                    enqueue(config, store, people, day=DAY)
                    wait_until(lambda: sent() >= count // 3, 300, "a third sent", workers)
                    if event == "kill-worker":
                        killed = kill_mid_chunk(store, sink, workers[1], "w2@", workers[1].kill, workers)
                        in_flight = len(killed.in_flight)
                    elif event == "kill-pool-process":
                        holder = next(iter(wait_for_sending(store, "w1@", workers))).claimed_by

                        def kill_one() -> None:
                            os.kill(int(holder.rsplit("/", 1)[1]), signal.SIGKILL)
                            workers[0].resume()

                        in_flight = len(kill_mid_chunk(store, sink, workers[0], holder, kill_one, workers).in_flight)
                    elif event == "redis-restart":
                        lost_at = time.monotonic()
                        redis.stop()
                        redis.start()
                        time.sleep(LOST_AFTER_SECONDS)
                        requeue_lost(config, store)  # what `run` does every minute, or the next `send --workers celery`
                    elif event == "pg-mid-chunk":
                        pg.stop()
                        time.sleep(5)
                        pg.start()
                    started = lost_at if event == "redis-restart" else time.monotonic()
                wait_until(lambda: sent() == count, 600, f"{count} sent", workers)
                seconds = time.monotonic() - started
        finally:
            for worker in workers:
                worker.stop()
        expected = {make_message_id(f"reader{n}@example.org", DAY, "example.org") for n in range(count)}
        missing = len(expected - set(sink.received))
        duplicates = sum(n - 1 for n in sink.received.values())
    return missing, duplicates, in_flight, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--delay", type=float, default=0.002, help="seconds the sink takes per message")
    parser.add_argument("--events", nargs="+", choices=EVENTS, default=EVENTS)
    args = parser.parse_args()
    with postgres_server(durable=True) as pg, tempfile.TemporaryDirectory() as folder:
        redis = RedisProcess(Path(folder))
        redis.start()
        try:
            print(f"{args.subscribers} subscribers, 2 workers × 2, defaults (lease 30 s, visibility 60 s), "
                  f"sink {args.delay * 1000:g} ms/message")
            print("| event | missing | duplicates (in flight) | recovered in |")
            print("|---|---:|---:|---:|")
            for event in args.events:
                missing, duplicates, in_flight, seconds = run_event(event, pg, redis, args)
                flight = f" ({in_flight})" if in_flight else ""
                print(f"| {event} | {missing} | {duplicates}{flight} | {seconds:.0f} s |", flush=True)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
