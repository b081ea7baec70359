"""A cluster meets its faults: kill -9 of workers, PostgreSQL and Redis restarted mid-run.

Real `newsletter worker` processes, a PostgreSQL and a Redis of this module's own
(the tests stop and start them), and a slow aiosmtpd sink (a few ms per message,
so a fault lands mid-shard). The kill tests run at the DEFAULT lease and
visibility timeout: what an operator who changed nothing gets.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from newsletter.config import load_config, load_subscribers
from newsletter.message import make_message_id
from newsletter.store import Store
from tests.conftest import DAY, run_cli
from tests.pg_server import create_database, postgres_server
from tests.redis_server import RedisProcess
from tests.test_workers import check_after_kill, kill_mid_chunk, wait_for_sending, wait_until
from tests.worker_cluster import CountingSink, start_workers, write_setup

pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'psycopg[binary]'")
pytest.importorskip("redis", reason="the redis client is not installed: pip install redis")
workers_module = pytest.importorskip("newsletter.workers")
SECRET = {"NEWSLETTER_SECRET": "test-signing-key"}


@pytest.fixture(scope="module")
def own_pg():
    """Durable (fsync, synchronous_commit): `stop` is a crash, and a crash must not lose what a commit confirmed."""
    try:
        with postgres_server(durable=True) as server:
            yield server
    except LookupError as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    try:
        server = RedisProcess(tmp_path_factory.mktemp("redis"))
    except LookupError as missing:
        pytest.skip(str(missing))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, own_pg, own_redis):
    """(setup, sink, store URL): `setup(n, **options)` writes a config sending into a slow sink."""
    import redis

    if own_redis.process is None:
        own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    client.flushall()
    client.close()
    url = create_database(own_pg)
    with CountingSink(delay=0.01) as sink:
        def setup(subscribers: int, **options) -> Path:
            options = {"lease_seconds": None, "visibility_timeout": None, **options}  # the defaults
            return write_setup(tmp_path, subscribers=subscribers, day=DAY, store_url=url, broker_url=own_redis.url,
                               smtp_port=sink.port, **options)

        yield setup, sink, url


def enqueue(config_path: Path, people: slice = slice(None)):
    config = load_config(config_path)
    with Store(config.store_url) as store:
        return workers_module.enqueue(config, store, load_subscribers(config.subscribers_dir).subscribers[people], day=DAY)


def exact(sink: CountingSink, count: int) -> None:
    """Every edition arrived, none twice."""
    expected = {make_message_id(f"reader{n}@example.org", DAY, "example.org") for n in range(count)}
    assert set(sink.received) == expected
    assert set(sink.received.values()) == {1}, [mid for mid, n in sink.received.items() if n > 1]


def stop_all(workers) -> None:
    for worker in workers:
        worker.stop()


def test_a_killed_worker_costs_at_most_its_in_flight_and_two_minutes_at_the_defaults(cluster, tmp_path: Path):
    setup, sink, url = cluster
    config_path = setup(400, shard_size=50, chunk_size=25)
    config = load_config(config_path)
    assert (config.model.celery.lease_seconds, config.model.celery.visibility_timeout) == (30, 60)
    workers = start_workers(config_path, tmp_path, ["w1", "victim"], concurrency=2)
    try:
        with Store(url) as store:
            enqueue(config_path)
            killed = kill_mid_chunk(store, sink, workers[1], "victim@", workers[1].kill, workers)
            died = time.monotonic()
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 400, 150, "400 sent editions", workers[:1])
            recovered = time.monotonic() - died
            check_after_kill(sink, store, 400, killed, "victim@")
    finally:
        stop_all(workers)
    assert recovered < 120, f"recovered after {recovered:.0f} s"
    print(f"\nkill -9 worker: in flight {len(killed.in_flight)}, duplicates "
          f"{sum(n - 1 for n in sink.received.values())}, recovered in {recovered:.0f} s")


def test_a_killed_pool_process_costs_at_most_its_in_flight_at_the_defaults(cluster, tmp_path: Path):
    setup, sink, url = cluster
    config_path = setup(300, shard_size=50, chunk_size=25)
    workers = start_workers(config_path, tmp_path, ["w1", "w2"], concurrency=2)
    try:
        with Store(url) as store:
            enqueue(config_path)
            holder = next(iter(wait_for_sending(store, "w1@", workers))).claimed_by  # one pool process of w1

            def kill_pool_process() -> None:
                os.kill(int(holder.rsplit("/", 1)[1]), signal.SIGKILL)
                workers[0].resume()

            killed = kill_mid_chunk(store, sink, workers[0], holder, kill_pool_process, workers)
            died = time.monotonic()
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 300, 150, "300 sent editions", workers)
            recovered = time.monotonic() - died
            check_after_kill(sink, store, 300, killed, holder)
    finally:
        stop_all(workers)
    assert recovered < 120, f"recovered after {recovered:.0f} s"
    print(f"\nkill -9 pool process: in flight {len(killed.in_flight)}, duplicates "
          f"{sum(n - 1 for n in sink.received.values())}, recovered in {recovered:.0f} s")


def test_postgresql_restarted_mid_chunk_loses_nothing_and_sends_nothing_twice(cluster, tmp_path: Path, own_pg):
    setup, sink, url = cluster
    sink.delay = 0.02
    config_path = setup(200, shard_size=100, chunk_size=50)
    workers = start_workers(config_path, tmp_path, ["w1"], concurrency=2)
    try:
        with Store(url) as store:
            enqueue(config_path)
            # SMTP has accepted messages whose outcome the ledger does not have yet: the database goes now
            wait_until(lambda: store.ledger_counts(DAY)["sent"] >= 20 and store.ledger_counts(DAY)["sending"] >= 20,
                       60, "a chunk part-way", workers)
            own_pg.stop()
            time.sleep(3)
            during = sink.total()
            own_pg.start()
            back = time.monotonic()
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 200, 60, "200 sent editions", workers)
            recovered = time.monotonic() - back
    finally:
        stop_all(workers)
    exact(sink, 200)
    assert during < 200  # the database was away mid-run
    assert "retrying in" in workers[0].output()  # the outcomes waited for the database, they were not dropped
    assert recovered < 60
    print(f"\nPostgreSQL restarted mid-chunk: recovered {recovered:.1f} s after it came back")


def test_postgresql_restarted_while_idle_and_between_shards(cluster, tmp_path: Path, own_pg):
    setup, sink, url = cluster
    config_path = setup(300, shard_size=50, chunk_size=25)
    workers = start_workers(config_path, tmp_path, ["w1"], concurrency=2)
    times = {}
    try:
        with Store(url) as store:
            enqueue(config_path, slice(0, 100))  # every pool process now has pooled connections
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 100, 60, "100 sent editions", workers)

            own_pg.stop()  # while idle: the pooled connections go stale
            time.sleep(2)
            own_pg.start()
            back = time.monotonic()
            enqueue(config_path, slice(100, 200))
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 200, 60, "200 sent editions", workers)
            times["idle"] = time.monotonic() - back

            workers[0].pause()  # between shards: the next shards start while the database is away
            enqueue(config_path, slice(200, 300))
            own_pg.stop()
            workers[0].resume()
            time.sleep(4)
            own_pg.start()
            back = time.monotonic()
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 300, 60, "300 sent editions", workers)
            times["between shards"] = time.monotonic() - back
    finally:
        stop_all(workers)
    exact(sink, 300)
    assert "database unreachable" in workers[0].output()  # the shards failed before sending, and were retried
    assert all(seconds < 60 for seconds in times.values()), times
    print(f"\nPostgreSQL restarted: recovered {times} s after it came back")


def test_a_queue_lost_with_redis_is_found_in_the_ledger_and_sent(cluster, tmp_path: Path, own_redis):
    setup, sink, url = cluster
    config_path = setup(300, shard_size=25, chunk_size=25)
    workers = start_workers(config_path, tmp_path, ["w1"], concurrency=2)
    try:
        with Store(url) as store:
            queued = enqueue(config_path)
            assert queued.shards == 12
            wait_until(lambda: store.ledger_counts(DAY)["sent"] >= 40, 60, "40 sent editions", workers)
            own_redis.stop()  # no appendonly, no save: the queue is gone
            own_redis.start()
            lost_at = time.monotonic()
            status = run_cli("status", "--json", "--date", DAY.isoformat(), cwd=config_path.parent, env=SECRET)
            [day] = json.loads(status.stdout)["queued"]
            assert day["waiting"] > 0  # the ledger still has them: status shows them queued
            time.sleep(max(0.0, workers_module.LOST_AFTER_SECONDS - (time.monotonic() - lost_at)))
            again = run_cli("send", "--workers", "celery", "--date", DAY.isoformat(), cwd=config_path.parent, env=SECRET)
            assert again.returncode == 0, again.stderr
            assert "from shards the broker lost" in again.stdout, again.stdout
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 300, 90, "300 sent editions", workers)
            recovered = time.monotonic() - lost_at
            assert store.ledger_counts(DAY)["queued"] == 0
    finally:
        stop_all(workers)
    exact(sink, 300)
    print(f"\nRedis restarted without persistence: {day['waiting']} queued editions waiting, "
          f"all sent {recovered:.0f} s after")
