"""Scale-out speed: editions per second with 1, 2 and 4 Celery workers, against one process calling run_edition.

Everything is real and local: a private PostgreSQL (the store), a private Redis
(the broker), an aiosmtpd sink in its own process, and `newsletter worker`
processes (prefork, concurrency 1 each). Each run gets a fresh database and
sends one edition to every subscriber; the time runs from enqueueing to the last
`sent` row. The CPU seconds each part used during a run (from /proc) show where
the time goes: workers (select, render, SMTP client), sink, PostgreSQL, Redis,
and whatever else the machine ran meanwhile.
Run from the repository root (needs Debian's postgresql and redis-server):

    python benchmarks/bench_workers.py [--subscribers 3000] [--workers 1 2 4] [--shard-size 250] [--smtp-concurrency 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NEWSLETTER_SECRET", "benchmark-signing-key")

from newsletter.config import load_config, load_subscribers  # noqa: E402
from newsletter.pipeline import run_edition  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.workers import enqueue  # noqa: E402
from tests.pg_server import create_database, postgres_server  # noqa: E402
from tests.redis_server import run_redis  # noqa: E402
from tests.smtp_fixtures import free_port  # noqa: E402
from tests.worker_cluster import CountingSink, start_workers, write_setup  # noqa: E402

DAY = date(2026, 11, 25)
TICKS = os.sysconf("SC_CLK_TCK")


def run_sink(port: int, ready, stop) -> None:
    with CountingSink(port=port):
        ready.set()
        stop.wait()


def cpu_by_role(roles: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds used so far by the processes of each role: given process groups, or `comm` names."""
    found = dict.fromkeys(roles, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # own time plus that of exited children (PostgreSQL backends of closed connections, pool processes)
        pgid, cpu = int(fields[2]), sum(int(value) for value in fields[11:15]) / TICKS
        for role, members in roles.items():
            if pgid in members or comm in members or int(entry.name) in members:
                found[role] += cpu
    return found


def busy_cpu() -> float:
    """CPU seconds the whole machine has been busy (not idle) since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS  # minus idle and iowait


def wait_all_sent(url: str, count: int, timeout: float = 600) -> None:
    with Store(url) as store:
        deadline = time.monotonic() + timeout
        while store.ledger_counts(DAY)["sent"] < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {store.ledger_counts(DAY)}")
            time.sleep(0.05)


def one_run(pg, broker: str, sink_port: int, sink_pid: int, args, workers: int) -> tuple[float, dict[str, float]]:
    """Send one edition to every subscriber with `workers` Celery workers (0: run_edition in this process)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    url = create_database(pg)
    config_path = write_setup(folder, subscribers=args.subscribers, day=DAY, store_url=url, broker_url=broker,
                              smtp_port=sink_port, shard_size=args.shard_size, smtp_concurrency=args.smtp_concurrency)
    config = load_config(config_path)
    subscribers = load_subscribers(config.subscribers_dir).subscribers
    started = start_workers(config_path, folder, [f"w{n}" for n in range(workers)], concurrency=1) if workers else []
    roles = {
        "workers" if workers else "this process": {w.process.pid for w in started} or {os.getpid()},
        "sink": {sink_pid},
        "postgres": {"postgres"},
        "redis": {"redis-server"},
    }
    try:
        before, machine = cpu_by_role(roles), busy_cpu()
        start = time.perf_counter()
        with Store(url) as store:
            if workers:
                enqueue(config, store, subscribers, day=DAY)
            else:
                run_edition(config, store, subscribers, day=DAY)
        wait_all_sent(url, args.subscribers)
        elapsed = time.perf_counter() - start
        after, machine = cpu_by_role(roles), busy_cpu() - machine
    finally:
        for worker in started:
            worker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    used = {role: max(0.0, after[role] - before[role]) for role in roles}
    used["other programs"] = max(0.0, machine - sum(used.values()))
    return elapsed, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--smtp-concurrency", type=int, default=4, help="SMTP connections per sending process")
    args = parser.parse_args()

    print(f"{args.subscribers} subscribers, shards of {args.shard_size}, {args.smtp_concurrency} SMTP connections "
          f"per sending process, {os.cpu_count()} CPUs; "
          "CPU seconds per part during the run")
    with postgres_server() as pg, run_redis() as broker:
        port = free_port()
        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        sink = multiprocessing.Process(target=run_sink, args=(port, ready, stop), daemon=True)
        sink.start()
        ready.wait(30)
        try:
            results = {}
            for workers in [0, *args.workers]:
                elapsed, cpu = one_run(pg, broker, port, sink.pid, args, workers)
                results[workers] = rate = args.subscribers / elapsed
                label = "run_edition, 1 process" if workers == 0 else f"{workers} worker{'s' * (workers > 1)}"
                parts = ", ".join(f"{role} {seconds:.1f}" for role, seconds in cpu.items())
                busy = sum(cpu.values()) / (elapsed * os.cpu_count())
                print(f"{label:>24}: {rate:7.0f} editions/s ({elapsed:5.1f} s; CPU {busy:4.0%} busy: {parts})")
        finally:
            stop.set()
            sink.join(10)
    base = results[0]
    print("vs one process: " + ", ".join(f"{w} worker(s) x{results[w] / base:.2f}" for w in args.workers))


if __name__ == "__main__":
    main()
