"""Scaling out with Celery: claims in the pipeline, enqueueing, and real workers on real servers.

The cluster tests run real `newsletter worker` processes against a private
PostgreSQL and Redis, sending into an aiosmtpd sink in this process; they are
skipped, with the reason, where PostgreSQL, Redis or their clients are absent.
"""

from __future__ import annotations

import base64
import email
import json
import os
import signal
import time
from dataclasses import dataclass
from email import policy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.config import ConfigError, load_config, load_subscribers
from newsletter.delivery.memory import MemoryBackend
from newsletter.message import make_message_id
from newsletter.models import Pick, Subscriber
from newsletter.pipeline import Claim, EditionBuilder, run_edition
from newsletter.scheduler import group_subscribers
from newsletter.store import EditionRecord, Outcome, State, Store, deliveries_table
from tests.conftest import DAY, run_cli
from tests.pg_server import pg_server, pg_url  # noqa: F401
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.worker_cluster import CountingSink, Worker, start_workers, write_setup



# -- the claim path of the pipeline (SQLite, memory backend) ---------------------------------



def readers(count: int) -> list[Subscriber]:
    return [Subscriber(email=f"reader{n}@example.org", name=f"Reader {n}", max_items=5) for n in range(count)]


def memory() -> MemoryBackend:
    MemoryBackend.outbox.clear()
    return MemoryBackend(MemoryBackend.Settings(), base_dir=Path("."))


def record_and_claim(config, store, people: list[Subscriber], worker: str) -> None:
    """What another worker does before it sends: record the editions, then claim them."""
    builder = EditionBuilder(config, store)
    store.record_pending([
        EditionRecord(p.email, DAY, make_message_id(p.email, DAY, config.newsletter.domain), builder.select(p, DAY), "subject")
        for p in people
    ])
    assert store.claim(DAY, [p.email for p in people], owner=worker, lease_seconds=60).emails == [p.email for p in people]


def test_a_worker_sends_only_what_it_claims_and_takes_over_expired_leases(config, store):
    people = readers(6)
    record_and_claim(config, store, people[:3], "other")  # still sending them

    backend = memory()
    summary = run_edition(config, store, people, day=DAY, backend=backend, claim=Claim("me", lease_seconds=60))
    assert (summary.sent, summary.claimed_elsewhere) == (3, 3)
    assert sorted(m.recipient for m in backend.outbox) == [p.email for p in people[3:]]
    rows = store.ledger_entries(DAY)
    assert [(rows[p.email].state, rows[p.email].claimed_by) for p in people] == [("sending", "other")] * 3 + [("sent", "me")] * 3

    # the other worker died: once its lease has run out, its editions are taken over, with the recorded picks
    with store._writes.begin() as conn:  # age the lease instead of sleeping through it
        expired = datetime.now(timezone.utc) - timedelta(seconds=1)
        conn.execute(deliveries_table.update().where(deliveries_table.c.claimed_by == "other").values(lease_until=expired))
    backend = memory()
    summary = run_edition(config, store, people, day=DAY, backend=backend, claim=Claim("me", lease_seconds=60))
    assert (summary.sent, summary.already_sent, summary.claimed_elsewhere) == (3, 3, 0)
    assert sorted(m.recipient for m in backend.outbox) == [p.email for p in people[:3]]
    after = store.ledger_entries(DAY)
    assert [(after[p.email].state, after[p.email].claimed_by) for p in people] == [("sent", "me")] * 6
    assert [after[p.email].paper_ids for p in people[:3]] == [rows[p.email].paper_ids for p in people[:3]]


def test_a_claimed_edition_carries_the_picks_the_ledger_recorded(config, store, monkeypatch):
    [reader] = readers(1)
    # a worker running the same shard at the same time recorded this edition first, with other picks
    recorded = store.papers()[:2]  # papers 1 and 2, the least upvoted: a fresh trending selection skips them
    store.record_pending([EditionRecord(reader.email, DAY, make_message_id(reader.email, DAY, config.newsletter.domain),
                                        [Pick(paper, 1.0, ["trending"]) for paper in recorded], "Recorded")])
    # ... after this worker had looked and found no row, so it selected afresh
    real, looks = store.ledger_entries, []

    def first_look_misses(day, emails=None):
        looks.append(emails)
        return {} if len(looks) == 1 else real(day, emails)

    monkeypatch.setattr(store, "ledger_entries", first_look_misses)
    backend = memory()
    summary = run_edition(config, store, [reader], day=DAY, backend=backend, claim=Claim("me", 60))
    assert summary.sent == 1
    [message] = backend.outbox
    text = email.message_from_bytes(message.data, policy=policy.default).get_body(("plain",)).get_content()
    assert all(paper.title in text for paper in recorded)
    assert "Paper 30 about diffusion" not in text


# -- configuration and the command line --------------------------------------------------------


def test_visibility_timeout_must_outlast_the_lease(example_dir: Path):
    path = example_dir / "config.toml"
    path.write_text(path.read_text() + "\n[celery]\nlease_seconds = 600\nvisibility_timeout = 300\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    [problem] = error.value.problems
    assert problem.endswith("config.toml: celery: visibility_timeout (300 s) must be longer than lease_seconds (600 s): "
                            "a shard takes longer than one of its chunks")


def test_send_with_celery_refuses_options_that_only_work_locally(example_dir: Path):
    result = run_cli("send", "--workers", "celery", "--dry-run", cwd=example_dir)
    assert result.returncode == 2
    assert "--dry-run: not with --workers celery" in result.stderr
    result = run_cli("send", "--workers", "threads", cwd=example_dir)
    assert result.returncode == 2 and "--workers: expected local or celery" in result.stderr


def test_worker_refuses_to_start_without_what_its_tasks_need(example_dir: Path):
    result = run_cli("worker", "--db", "other.db", cwd=example_dir)
    assert result.returncode == 2 and "--db: not with worker" in result.stderr
    path = example_dir / "config.toml"
    path.write_text(path.read_text().replace('backend = "file"', 'backend = "smtp"'))
    result = run_cli("worker", cwd=example_dir, env={"NEWSLETTER_SECRET": ""})
    assert result.returncode == 2 and "NEWSLETTER_SECRET is not set" in result.stderr


def test_send_with_celery_reports_an_unreachable_broker(example_dir: Path):
    from tests.smtp_fixtures import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli("send", "--workers", "celery", cwd=example_dir, env={"NEWSLETTER_BROKER_URL": url}, timeout=60)
    assert result.returncode == 1
    assert f"{url}: cannot reach the broker" in result.stderr
    assert "Traceback" not in result.stderr


# -- enqueueing, on a real Redis ------------------------------------------------------------------


def queued_shards(url: str) -> list[tuple[str, str, list[str]]]:
    """The send_shard arguments waiting in the `newsletter` queue, oldest first."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange("newsletter", 0, -1)
    finally:
        client.close()
    shards = []
    for item in reversed(raw):  # kombu pushes on the left
        envelope = json.loads(item)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        shards.append(tuple(args))
    return shards


def queued_task_ids(url: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [json.loads(item)["headers"]["id"] for item in client.lrange("newsletter", 0, -1)]
    finally:
        client.close()


def test_send_enqueues_one_shard_per_shard_size_and_skips_settled_editions(example_dir: Path, redis_url: str):
    subscribers = example_dir / "examples" / "subscribers"
    for n in range(7):
        (subscribers / f"extra{n}.toml").write_text(f'email = "extra{n}@example.org"\nmax_items = 3\nmax_age_days = 3650\n')
    (subscribers / "off.toml").write_text('email = "off@example.org"\nactive = false\n')
    path = example_dir / "config.toml"
    path.write_text(path.read_text() + f'\n[celery]\nbroker_url = "{redis_url}"\nshard_size = 4\n')
    config = load_config(path)
    with Store(config.store_url) as store:
        store.suppress("extra6@example.org")
        store.record_pending([EditionRecord("extra5@example.org", DAY, "<x@example.org>", [], "s")])
        store.claim(DAY, ["extra5@example.org"], owner="w", lease_seconds=60)
        store.record_outcomes(DAY, [Outcome("extra5@example.org", State.SENT)])

    result = run_cli("send", "--workers", "celery", "--date", DAY.isoformat(), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "Enqueued 8 editions in 3 shards" in result.stdout and "1 already settled" in result.stdout
    shards = queued_shards(redis_url)
    assert [len(emails) for _, _, emails in shards] == [4, 3, 1]  # extra5's is sent
    assert {(path_, day) for path_, day, _ in shards} == {(str(path.resolve()), DAY.isoformat())}
    queued = sorted(email for _, _, emails in shards for email in emails)
    expected = {"ada@example.org", "alan@example.org", "grace@example.org", *(f"extra{n}@example.org" for n in range(5))}
    assert queued == sorted(expected)
    with Store(config.store_url) as store:
        assert store.ledger_counts(DAY) == {"pending": 0, "sending": 0, "sent": 1, "failed": 0, "uncertain": 0, "review": 0,
                                            "queued": 8}
        rows = store.ledger_rows(edition_date=DAY, state=State.QUEUED)
    assert {row.email for row in rows} == expected  # the ledger knows every queued edition, and its shard (the task id)
    assert len({row.shard for row in rows}) == 3 and {row.shard for row in rows} == set(queued_task_ids(redis_url))


def test_the_scheduler_enqueues_its_group_when_the_executor_is_celery(example_dir: Path, redis_url: str):
    from newsletter.app import make_service

    path = example_dir / "config.toml"
    text = path.read_text().replace('backend = "file"', 'backend = "file"\nexecutor = "celery"')
    path.write_text(text + f'\n[celery]\nbroker_url = "{redis_url}"\n')
    config = load_config(path)
    [group] = [g for g in group_subscribers(load_subscribers(config.subscribers_dir).subscribers) if "ada@example.org" in g.emails]
    with Store(config.store_url) as store:
        stats = make_service(config, store)._send_group(group, DAY)
        assert store.ledger_counts(DAY)["sent"] == 0  # nothing sent from the scheduler's process
    assert stats.sent == 0
    assert queued_shards(redis_url) == [(str(path.resolve()), DAY.isoformat(), ["ada@example.org"])]


# -- real workers -----------------------------------------------------------------------------------


@pytest.fixture
def cluster_setup(tmp_path: Path, pg_url: str, redis_url: str):
    """A sink and a function writing a scaled-out setup that sends into it."""
    with CountingSink() as sink:
        def setup(subscribers: int, **options) -> Path:
            return write_setup(tmp_path, subscribers=subscribers, day=DAY, store_url=pg_url, broker_url=redis_url,
                               smtp_port=sink.port, **options)

        yield setup, sink


def enqueue_all(config_path: Path):
    from newsletter.workers import enqueue

    config = load_config(config_path)
    with Store(config.store_url) as store:
        return enqueue(config, store, load_subscribers(config.subscribers_dir).subscribers, day=DAY)


def wait_until(check, timeout: float, what: str, workers) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in workers)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")
        time.sleep(0.05)


def test_three_workers_send_five_thousand_editions_exactly_once(cluster_setup, tmp_path: Path, pg_url: str):
    setup, sink = cluster_setup
    config_path = setup(5000, shard_size=500, lease_seconds=10, visibility_timeout=30)
    workers = start_workers(config_path, tmp_path, ["w1", "w2", "w3"], concurrency=2)
    try:
        queued = enqueue_all(config_path)
        assert (queued.shards, queued.editions) == (10, 5000)
        with Store(pg_url) as store:
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 5000, 60, "5,000 sent editions", workers)
            rows = store.ledger_rows(edition_date=DAY)
    finally:
        for worker in workers:
            worker.stop()
    expected = {make_message_id(f"reader{n}@example.org", DAY, "example.org") for n in range(5000)}
    assert set(sink.received) == expected
    assert set(sink.received.values()) == {1}
    assert {row.state for row in rows} == {"sent"}
    assert {row.claimed_by.split("@")[0] for row in rows} == {"w1", "w2", "w3"}


@dataclass
class Kill:
    """What a killed sender had when it died: rows it held `sending` (and which of those the sink has), rows it sent."""

    in_flight: set[str]
    delivered: set[str]
    sent: set[str]


def kill_mid_chunk(store: Store, sink: CountingSink, worker: Worker, holder: str, kill, workers) -> Kill:
    """Freeze `worker` once the rows claimed by `holder` (a claimed_by prefix) are part-way through a chunk; run `kill`."""

    def rows(state: str) -> set[str]:
        return {row.email for row in store.ledger_rows(edition_date=DAY, state=state) if (row.claimed_by or "").startswith(holder)}

    def delivered(emails: set[str]) -> set[str]:
        return {e for e in emails if sink.received[make_message_id(e, DAY, "example.org")]}

    def caught() -> bool:
        worker.pause()
        if rows("sent") and delivered(rows("sending")):
            return True
        worker.resume()
        time.sleep(0.02)
        return False

    wait_until(caught, 30, f"{holder} part-way through a chunk", workers)
    found = Kill(in_flight=rows("sending"), delivered=set(), sent=rows("sent"))
    found.delivered = delivered(found.in_flight)
    kill()
    return found


def check_after_kill(sink: CountingSink, store: Store, count: int, killed: Kill, holder: str) -> None:
    """Nothing lost; duplicates only among the killed sender's in-flight editions, at least those it had delivered."""
    ids = {make_message_id(f"reader{n}@example.org", DAY, "example.org"): f"reader{n}@example.org" for n in range(count)}
    assert set(sink.received) == set(ids)
    duplicated = {ids[message_id] for message_id, n in sink.received.items() if n > 1}
    # (an in-flight edition still in the killed sender's socket when it froze may arrive too)
    assert killed.delivered <= duplicated <= killed.in_flight
    assert killed.delivered and killed.sent
    rows = {row.email: row for row in store.ledger_rows(edition_date=DAY)}
    assert {row.state for row in rows.values()} == {"sent"}
    assert not any(rows[email].claimed_by.startswith(holder) for email in killed.in_flight)  # taken over
    assert all(rows[email].claimed_by.startswith(holder) for email in killed.sent)


def test_a_killed_workers_shards_are_finished_by_the_others(cluster_setup, tmp_path: Path, pg_url: str):
    setup, sink = cluster_setup
    config_path = setup(3000, shard_size=250, chunk_size=50, lease_seconds=5, visibility_timeout=20)
    workers = start_workers(config_path, tmp_path, ["w1", "w2", "victim"], concurrency=2)
    victim = workers[2]
    try:
        with Store(pg_url) as store:
            enqueue_all(config_path)
            # SIGKILL to the whole worker, pool included: its unacknowledged shards come back after
            # the visibility timeout, and the rows it held can be claimed after the lease
            killed = kill_mid_chunk(store, sink, victim, "victim@", victim.kill, workers)
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 3000, 75, "3,000 sent editions", workers[:2])
            check_after_kill(sink, store, 3000, killed, "victim@")
    finally:
        for worker in workers:
            worker.stop()


def test_a_killed_pool_process_leaves_its_chunk_to_be_taken_over_after_the_lease(cluster_setup, tmp_path: Path, pg_url: str):
    setup, sink = cluster_setup
    # a long lease: the shard comes back at once (task_reject_on_worker_lost), well before the lease has run out
    config_path = setup(1000, shard_size=250, chunk_size=50, lease_seconds=6, visibility_timeout=60)
    workers = start_workers(config_path, tmp_path, ["w1", "w2"], concurrency=2)
    try:
        with Store(pg_url) as store:
            enqueue_all(config_path)
            sending = next(iter(wait_for_sending(store, "w1@", workers)))
            holder = sending.claimed_by  # w1@host/pid: one pool process

            def kill_pool_process() -> None:
                os.kill(int(holder.rsplit("/", 1)[1]), signal.SIGKILL)
                workers[0].resume()

            killed = kill_mid_chunk(store, sink, workers[0], holder, kill_pool_process, workers)
            wait_until(lambda: store.ledger_counts(DAY)["sent"] == 1000, 60, "1,000 sent editions", workers)
            check_after_kill(sink, store, 1000, killed, holder)
    finally:
        for worker in workers:
            worker.stop()
    assert "WorkerLostError" in workers[0].output()
    assert "held by other workers; checking again in 6 s" in workers[0].output() + workers[1].output()


def wait_for_sending(store: Store, prefix: str, workers) -> list:
    found: list = []

    def check() -> bool:
        found[:] = [r for r in store.ledger_rows(edition_date=DAY, state="sending") if (r.claimed_by or "").startswith(prefix)]
        return bool(found)

    wait_until(check, 30, f"rows claimed by {prefix}", workers)
    return found
