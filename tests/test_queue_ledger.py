"""The ledger knows everything queued: `queued` rows with their shard, `status`, and lost shards found again.

Real Redis (tests/redis_server.py) and the example's SQLite store; the shards'
tasks run in this process (`send_shard.apply`, Celery's eager call of the very
task a worker runs), so each step can be looked at in between.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.config import load_config, load_subscribers
from newsletter.store import State, Store, deliveries_table
from tests.conftest import DAY, run_cli
from tests.redis_server import redis_server, redis_url  # noqa: F401 (fixtures)

workers = pytest.importorskip("newsletter.workers")
EMAILS = ["ada@example.org", "alan@example.org", "grace@example.org"]


@pytest.fixture
def setup(example_dir: Path, redis_url: str):
    """The example with a Celery executor on the test Redis, shards of 2, and one subscriber nothing matches."""
    path = example_dir / "config.toml"
    text = path.read_text().replace('backend = "file"', 'backend = "file"\nexecutor = "celery"')
    path.write_text(text + f'\n[celery]\nbroker_url = "{redis_url}"\nshard_size = 2\n')
    (example_dir / "examples" / "subscribers" / "nobody.toml").write_text(
        'email = "nobody@example.org"\nmode = "keywords"\nkeywords = ["xyzzy"]\nempty = "skip"\n')
    config = load_config(path)
    yield config
    for store in workers._stores.values():
        store.close()
    workers._stores.clear()


def broker_tasks(url: str) -> dict[str, list[str]]:
    """Task id -> the shard's emails, for every task waiting in the queue."""
    import base64

    import redis

    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange("newsletter", 0, -1)
    finally:
        client.close()
    tasks = {}
    for item in raw:
        envelope = json.loads(item)
        args, _, _ = json.loads(base64.b64decode(envelope["body"]))
        tasks[envelope["headers"]["id"]] = args[2]
    return tasks


def flush(url: str) -> None:
    """What a Redis restart without persistence does to the queue."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def age_rows(store: Store, seconds: float) -> None:
    """Make the ledger rows look `seconds` older instead of waiting."""
    with store._writes.begin() as conn:
        conn.execute(deliveries_table.update().values(updated_at=datetime.now(timezone.utc) - timedelta(seconds=seconds)))


def run_shard(config, task_id: str, emails: list[str]) -> dict:
    """What a worker does with one queued task."""
    return workers.send_shard.apply((str(config.path), DAY.isoformat(), emails), task_id=task_id).get()


def outbox(example_dir: Path) -> list[Path]:
    return sorted((example_dir / "outbox").rglob("*.eml"))


def status_json(example_dir: Path) -> dict:
    result = run_cli("status", "--json", "--date", DAY.isoformat(), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_queued_rows_are_in_the_ledger_before_their_task_reaches_the_broker(setup, redis_url, monkeypatch):
    config = setup
    seen = []
    publish = workers.send_shard.apply_async

    def looking(args, task_id, **options):
        with Store(config.store_url) as store:
            rows = store.ledger_entries(DAY, args[2])
        seen.append((task_id, args[2], {email: (row.state, row.shard) for email, row in rows.items()}))
        return publish(args, task_id=task_id, **options)

    monkeypatch.setattr(workers.send_shard, "apply_async", looking)
    with Store(config.store_url) as store:
        queued = workers.enqueue(config, store, load_subscribers(config.subscribers_dir).subscribers, day=DAY)
    assert (queued.shards, queued.editions) == (2, 4)
    assert sorted(email for _, emails, _ in seen for email in emails) == sorted([*EMAILS, "nobody@example.org"])
    for task_id, emails, rows in seen:
        assert rows == {email: (State.QUEUED, task_id) for email in emails}
    assert set(broker_tasks(redis_url)) == {task_id for task_id, _, _ in seen}


def test_a_shard_the_broker_lost_is_found_by_the_next_send_and_sent_once(setup, example_dir, redis_url):
    config = setup
    result = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "Enqueued 4 editions in 2 shards" in result.stdout
    first = broker_tasks(redis_url)
    assert len(first) == 2

    # a second send while the shards wait: nothing enqueued twice
    result = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir)
    assert "Enqueued 0 editions in 0 shards" in result.stdout and "4 already queued" in result.stdout
    assert broker_tasks(redis_url) == first

    flush(redis_url)  # Redis restarted without persistence: the queue is gone, the ledger still has it
    with Store(config.store_url) as store:
        age_rows(store, 200)  # longer ago than the visibility timeout
    status = status_json(example_dir)
    assert status["counts"]["queued"] == 4
    [day] = status["queued"]
    assert (day["queued"], day["waiting"], day["overdue"], day["shards"]) == (4, 4, 4, 2)
    text = run_cli("status", "--date", DAY.isoformat(), cwd=example_dir).stdout
    assert f"queued: 4 editions of {DAY} in 2 shards: 4 waiting for a worker" in text
    assert f"overdue: 4 queued editions of {DAY} were not picked up" in text

    result = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "Enqueued 4 editions in 2 shards" in result.stdout and "4 of them from shards the broker lost" in result.stdout
    again = broker_tasks(redis_url)
    assert len(again) == 2 and not set(again) & set(first)
    with Store(config.store_url) as store:
        assert {row.shard for row in store.ledger_rows(edition_date=DAY)} == set(again)

    for task_id, emails in again.items():
        run_shard(config, task_id, emails)
    # the lost shards turn up after all (a worker had them prefetched): nothing is sent twice
    for task_id, emails in first.items():
        assert run_shard(config, task_id, emails)["sent"] == 0
    assert len(outbox(example_dir)) == 3
    with Store(config.store_url) as store:
        rows = store.ledger_entries(DAY)
    assert {email: row.state for email, row in rows.items()} == dict.fromkeys(EMAILS, State.SENT)  # nobody's: no edition
    assert status_json(example_dir)["queued"] == []


def test_a_local_send_takes_queued_editions_that_no_worker_runs(setup, example_dir, redis_url):
    config = setup
    assert run_cli("send", "--date", DAY.isoformat(), cwd=example_dir).returncode == 0
    tasks = broker_tasks(redis_url)
    result = run_cli("send", "--workers", "local", "--date", DAY.isoformat(), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert len(outbox(example_dir)) == 3
    for task_id, emails in tasks.items():  # the workers come later: everything is done
        summary = run_shard(config, task_id, emails)
        assert summary["sent"] == 0
    assert len(outbox(example_dir)) == 3
    with Store(config.store_url) as store:
        assert store.ledger_counts(DAY)["sent"] == 3 and store.ledger_counts(DAY)["queued"] == 0


def test_the_sweep_leaves_shards_a_live_worker_runs_and_takes_those_of_dead_ones(setup, redis_url):
    from newsletter.app import make_service, requeue_lost_shards

    config = setup
    with Store(config.store_url) as store:
        workers.enqueue(config, store, load_subscribers(config.subscribers_dir).subscribers, day=DAY)
        tasks = broker_tasks(redis_url)
        alive, dead = sorted(tasks)
        store.pick_up(DAY, alive, "w1@host/1", lease_seconds=60)
        store.pick_up(DAY, dead, "w2@host/2", lease_seconds=60)
        with store._writes.begin() as conn:  # w2 died: its lease ran out
            conn.execute(deliveries_table.update().where(deliveries_table.c.claimed_by == "w2@host/2")
                         .values(lease_until=datetime.now(timezone.utc) - timedelta(seconds=1)))
        flush(redis_url)
        age_rows(store, 30)
        assert "requeue" in {job["job"] for job in make_service(config, store).next_runs()}
        stats = requeue_lost_shards(config, store)  # `run`'s job, every minute
        assert stats.sent == len(tasks[dead])
        [(task_id, emails)] = broker_tasks(redis_url).items()
        assert sorted(emails) == sorted(tasks[dead])
        rows = store.ledger_entries(DAY)
        assert {rows[e].shard for e in tasks[alive]} == {alive} and {rows[e].claimed_by for e in tasks[alive]} == {"w1@host/1"}
        assert {rows[e].shard for e in emails} == {task_id} and {rows[e].claimed_by for e in emails} == {None}
        assert requeue_lost_shards(config, store).sent == 0  # the new shard is in the broker: found, left alone


def test_a_due_edition_a_shard_could_not_claim_stays_queued_and_is_sent_on_the_retry(setup, example_dir, redis_url, monkeypatch):
    """A queued row another process holds at claim time is skipped (SKIP LOCKED): the shard's end must not forget it."""
    config = setup
    assert run_cli("send", "--date", DAY.isoformat(), cwd=example_dir).returncode == 0  # ingests, then enqueues
    tasks = broker_tasks(redis_url)
    real_claim = Store._claim_queued
    skipped = []

    def skipping_once(self, conn, records, *args):
        if not skipped and records:
            skipped.append(records[0].email)  # that row was locked by another process just then
            records = records[1:]
        return real_claim(self, conn, records, *args)

    monkeypatch.setattr(Store, "_claim_queued", skipping_once)
    for task_id, emails in tasks.items():
        try:
            run_shard(config, task_id, emails)
        except Exception:  # noqa: BLE001 - an eager retry re-runs the shard at once, then reports the retry
            pass
    assert skipped and skipped[0] in EMAILS
    assert len(outbox(example_dir)) == 3  # the skipped one too, once
    with Store(config.store_url) as store:
        assert store.ledger_counts(DAY)["sent"] == 3 and store.ledger_counts(DAY)["queued"] == 0
