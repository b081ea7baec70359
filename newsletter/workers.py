"""Scaling out: a Celery app whose task sends one shard of subscribers.

`newsletter send --workers celery` (or `newsletter run` with `[delivery] executor
= "celery"`) decides who is due and enqueues one `send_shard` task per
`shard_size` subscribers; `newsletter worker` processes run them. A
worker sends a shard chunk by chunk through the ordinary pipeline, claiming each
chunk's ledger rows first (`Store.claim`), so two workers never send the same
edition and a dead worker's editions are taken over once their lease runs out.

Delivery settings, chosen deliberately (the README's "Scaling out" explains them):

- `task_acks_late`: a shard's message is acknowledged when the task ends, not
  when it starts, so a shard whose worker dies is delivered again.
- `task_reject_on_worker_lost`: when a pool process is killed (SIGKILL, out of
  memory) its shard goes back to the queue at once, instead of being acked.
- `worker_prefetch_multiplier = 1`: a worker reserves no more shards than it
  runs, so none wait unacknowledged behind a long one (or die with it).
- `visibility_timeout` (Redis): a shard unacknowledged for that long is given
  to another worker. It must exceed the longest shard, or a second worker
  starts a shard the first still runs; the claims keep that from sending
  anything twice, but it doubles the work. It is also how long a shard waits
  when its whole worker machine dies.
- `lease_seconds`: how long a claim holds without its worker's heartbeat (which
  renews it every quarter of it while the worker lives); after it, another
  worker takes the editions over.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from celery import Celery
from sqlalchemy.exc import OperationalError

from newsletter.config import Config, load_config, load_subscribers
from newsletter.models import Subscriber
from newsletter.pipeline import Claim, RunSummary, due_chunks, due_emails, run_edition
from newsletter.render import template_names
from newsletter.store import SETTLED, State, Store

BROKER_ENV = "NEWSLETTER_BROKER_URL"
QUEUE = "newsletter"

log = logging.getLogger(__name__)

app = Celery("newsletter")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)


def broker_url(config: Config) -> str:
    """The broker: $NEWSLETTER_BROKER_URL, else `[celery] broker_url`."""
    return os.environ.get(BROKER_ENV) or config.model.celery.broker_url


def configure(config: Config) -> Celery:
    """Point the app at the config's broker, with its visibility timeout."""
    settings = config.model.celery
    app.conf.update(
        broker_url=broker_url(config),
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # look for shards of dead workers every 1-10 s (a small Redis query), not every 100 s
            "unacked_restore_interval": min(10.0, max(1.0, settings.visibility_timeout / 30)),
            "unacked_restore_throttle": 1,
        },
    )
    return app


@dataclass
class Enqueued:
    """What `enqueue` queued; `summary` counts who was not due (inactive, unsubscribed, not today, sent)."""

    shards: int
    editions: int
    summary: RunSummary


def shard_size(config: Config, editions: int) -> int:
    """`[celery] shard_size`, or else about 32 shards of 25 to 1,000 editions: enough for every pool process of a
    few workers to have one, and small enough that a redelivered shard is little work."""
    return config.model.celery.shard_size or max(25, min(1000, math.ceil(editions / 32)))


def enqueue(config: Config, store: Store, subscribers: list[Subscriber], *, day: date | None = None, only: str | None = None) -> Enqueued:
    """Queue a `send_shard` task per `shard_size` due subscribers (those whose edition is settled left out)."""
    summary = RunSummary()
    configure(config)
    shards = editions = 0
    size = shard_size(config, len(subscribers))
    with app.producer_or_acquire() as producer:
        for edition_day, chunk in due_chunks(store, subscribers, summary, day=day, only=only, size=size):
            emails = [s.email for s in chunk]
            settled = {email for email, entry in store.ledger_entries(edition_day, emails).items() if entry.state in SETTLED}
            summary.already_sent += len(settled)
            shard = [email for email in emails if email not in settled]
            if shard:
                send_shard.apply_async((str(config.path), edition_day.isoformat(), shard), producer=producer)
                shards += 1
                editions += len(shard)
    log.info("enqueued %d editions in %d shards (%d already settled)", editions, shards, summary.already_sent)
    return Enqueued(shards, editions, summary)


# -- in the worker processes ---------------------------------------------------------

_stores: dict[str, Store] = {}
_subscribers: dict[Path, tuple[tuple, list[Subscriber]]] = {}


def _store(config: Config) -> Store:
    """One store (one connection pool) per worker process and store URL."""
    if config.store_url not in _stores:
        _stores[config.store_url] = Store(config.store_url)
    return _stores[config.store_url]


def _current_subscribers(config: Config) -> list[Subscriber]:
    """The subscriber files, re-read only when a file was added, removed or changed."""
    directory = config.subscribers_dir
    with os.scandir(directory) as entries:
        stamp = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries if e.name.endswith(".toml")))
    cached = _subscribers.get(directory)
    if cached is None or cached[0] != stamp:
        loaded = load_subscribers(directory, templates=template_names(config.templates_dir))
        for problem in loaded.problems:
            log.warning(problem)
        cached = _subscribers[directory] = (stamp, loaded.subscribers)
    return cached[1]


@app.task(name="newsletter.send_shard", bind=True, max_retries=20)
def send_shard(self, config_path: str, edition_date: str, emails: list[str]) -> dict[str, int]:
    """Send the editions of `emails` for `edition_date` that this worker claims; returns the counts."""
    config = load_config(config_path)
    wanted = set(emails)
    subscribers = [s for s in _current_subscribers(config) if s.email in wanted]
    claim = Claim(owner=f"{self.request.hostname}/{os.getpid()}", lease_seconds=config.model.celery.lease_seconds)
    day = date.fromisoformat(edition_date)
    store = _store(config)
    try:
        summary = run_edition(config, store, subscribers, day=day, skip_empty=config.model.schedule.skip_empty, claim=claim)
        due = due_emails(store, subscribers, day)
        held = [email for email, entry in store.ledger_entries(day, due).items() if entry.state in (State.PENDING, State.SENDING)]
    except OperationalError as error:
        # the database is away: try again in 1, 2, 4 … 30 s (what was sent is recorded by the recorder's own retries)
        delay = min(30.0, 2.0 ** self.request.retries)
        log.warning("%s: database unreachable (%s); retrying the shard in %g s", edition_date, error.orig, delay)
        raise self.retry(exc=error, countdown=delay) from error
    if summary.stopped:
        # nothing else can get through (e.g. authentication refused): the rest stays pending, for an operator
        log.error("%s: sending stopped: %s", edition_date, summary.stopped)
        held = []
    if held:
        # claimed by another worker, which may have died (this shard may be its, redelivered):
        # look again when their lease has run out; by then they are sent, or ours to take
        log.info("%s: %d editions held by other workers; checking again in %g s", edition_date, len(held), claim.lease_seconds)
        raise self.retry(args=(config_path, edition_date, held), countdown=claim.lease_seconds)
    return {
        "sent": summary.sent,
        "failed": summary.failed,
        "already_sent": summary.already_sent,
        "claimed_elsewhere": summary.claimed_elsewhere,
        "empty": len(summary.empty),
    }


def run_worker(config: Config, *, concurrency: int | None = None, name: str | None = None, loglevel: str = "INFO") -> None:
    """Run a Celery worker for the config's broker in this process (prefork pool) until it is stopped."""
    configure(config)
    _current_subscribers(config)  # read once here; the pool processes inherit it
    # no mingle/gossip: workers need not know each other, the ledger claims coordinate them
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={QUEUE}", "--pool=prefork", "--without-mingle", "--without-gossip"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if name:
        argv.append(f"--hostname={name}")
    app.worker_main(argv)
