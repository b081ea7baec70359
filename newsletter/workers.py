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

The ledger knows everything queued: `enqueue` writes each shard's editions as
`queued` rows naming the shard (the task id) before the task is published, and
a worker marks them as it starts the shard. `requeue_lost` (run by every
`send --workers celery` and every minute by `newsletter run`) re-enqueues the
unsettled editions of shards that the broker no longer has and no live worker
runs, e.g. after Redis restarted without persistence. The claims make a shard
enqueued twice harmless, so a false alarm costs work, never a second email.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from celery import Celery
from sqlalchemy.exc import OperationalError

from newsletter.config import Config, load_config, load_subscribers
from newsletter.models import Subscriber
from newsletter.message import make_message_id
from newsletter.pipeline import Claim, RunSummary, due_chunks, due_emails, run_edition
from newsletter.render import template_names
from newsletter.store import SETTLED, LedgerEntry, State, Store

BROKER_ENV = "NEWSLETTER_BROKER_URL"
QUEUE = "newsletter"
# a queued shard is judged lost only once its rows are this old: the rows are written just before the task is published
LOST_AFTER_SECONDS = 5.0

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
    url = broker_url(config)
    if app.conf.broker_url and app.conf.broker_url != url:
        # another broker than before in this process: drop the pooled connections to the old one (as after a fork)
        app._after_fork()
    app.conf.update(
        broker_url=url,
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
    already_queued: int = 0  # in a shard the broker still has (or a live worker runs): left alone
    requeued: int = 0  # of `editions`, those taken from lost shards
    dates: set[date] = field(default_factory=set)


def shard_size(config: Config, editions: int) -> int:
    """`[celery] shard_size`, or else about 32 shards of 25 to 1,000 editions: enough for every pool process of a
    few workers to have one, and small enough that a redelivered shard is little work."""
    return config.model.celery.shard_size or max(25, min(1000, math.ceil(editions / 32)))


def present_shards() -> set[str] | None:
    """The task ids the broker has (waiting, or delivered and not acknowledged); None when it cannot say (not Redis)."""
    with app.connection_for_write() as connection:
        if connection.transport.driver_type != "redis":
            return None
        channel = connection.default_channel
        client = channel.client
        found: set[str] = set()
        for priority in channel.priority_steps:
            for raw in client.lrange(channel._q_for_pri(QUEUE, priority), 0, -1):
                found.add(json.loads(raw)["headers"]["id"])
        for raw in client.hvals(channel.unacked_key):
            found.add(json.loads(raw)[0]["headers"]["id"])
        return found


def _lost(entry: LedgerEntry, present: set[str] | None, now: datetime, visibility_timeout: float) -> bool:
    """Whether an unsettled row's shard is gone: the broker does not have it, and no live worker has the row.

    When the broker cannot be asked, a shard not started within `visibility_timeout` counts as lost.
    """
    if entry.shard is None or entry.picked_up(now) or (entry.state == State.SENDING and not entry.lease_expired(now)):
        return False
    if now - entry.updated_at < timedelta(seconds=LOST_AFTER_SECONDS):
        return False
    if present is None:
        return now - entry.updated_at > timedelta(seconds=visibility_timeout)
    return entry.shard not in present


def _publish(config: Config, store: Store, producer, day: date, new: list[str], replacing: dict[str, str | None]) -> list[str]:
    """Record one shard's editions as queued, then publish its task; the editions it got."""
    shard = str(uuid.uuid4())
    domain = config.newsletter.domain
    got = store.queue(day, shard, [(email, make_message_id(email, day, domain)) for email in new], replacing)
    if got:
        send_shard.apply_async((str(config.path), day.isoformat(), got), task_id=shard, producer=producer)
    return got


def enqueue(config: Config, store: Store, subscribers: list[Subscriber], *, day: date | None = None, only: str | None = None) -> Enqueued:
    """Queue a `send_shard` task per `shard_size` due subscribers.

    Left out: editions settled, held by a live sender, or in a shard the broker
    still has. Editions of lost shards are queued again (see `requeue_lost`).
    """
    summary = RunSummary()
    configure(config)
    queued = Enqueued(0, 0, summary)
    size = shard_size(config, len(subscribers))
    visibility = config.model.celery.visibility_timeout
    present = present_shards()
    with app.producer_or_acquire() as producer:
        for edition_day, chunk in due_chunks(store, subscribers, summary, day=day, only=only, size=size):
            entries = store.ledger_entries(edition_day, [s.email for s in chunk])
            now = datetime.now(timezone.utc)
            new: list[str] = []
            replacing: dict[str, str | None] = {}
            for subscriber in chunk:
                entry = entries.get(subscriber.email)
                if entry is None:
                    new.append(subscriber.email)
                elif entry.state in SETTLED:
                    summary.already_sent += 1
                elif entry.state == State.SENDING and not entry.lease_expired(now) and entry.shard is None:
                    summary.claimed_elsewhere += 1  # a local run is sending it
                elif entry.shard is not None and not _lost(entry, present, now, visibility):
                    queued.already_queued += 1
                else:
                    replacing[subscriber.email] = entry.shard
            got = _publish(config, store, producer, edition_day, new, replacing) if new or replacing else []
            if got:
                queued.shards += 1
                queued.editions += len(got)
                queued.requeued += len(set(got) & set(replacing))
                queued.dates.add(edition_day)
    log.info("enqueued %d editions in %d shards (%d already settled, %d already queued)",
             queued.editions, queued.shards, summary.already_sent, queued.already_queued)
    return queued


def requeue_lost(config: Config, store: Store, *, not_dates: Iterable[date] = ()) -> Enqueued:
    """Queue again the unsettled editions of every lost shard (any date but `not_dates`): the broker lost them
    (e.g. Redis restarted without persistence) and no live worker has them."""
    configure(config)
    skip = set(not_dates)
    now = datetime.now(timezone.utc)
    present = present_shards()
    visibility = config.model.celery.visibility_timeout
    lost = [e for e in store.in_shards() if e.edition_date not in skip and _lost(e, present, now, visibility)]
    queued = Enqueued(0, 0, RunSummary())
    size = shard_size(config, len(lost))
    with app.producer_or_acquire() as producer:
        for day in sorted({entry.edition_date for entry in lost}):
            of_day = [entry for entry in lost if entry.edition_date == day]
            for start in range(0, len(of_day), size):
                got = _publish(config, store, producer, day, [], {e.email: e.shard for e in of_day[start:start + size]})
                if got:
                    queued.shards += 1
                    queued.editions += len(got)
                    queued.dates.add(day)
    queued.requeued = queued.editions
    if queued.editions:
        log.warning("re-enqueued %d editions of lost shards in %d shards (%s)", queued.editions, queued.shards,
                    ", ".join(sorted(str(d) for d in queued.dates)))
    return queued


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
    shard = self.request.id
    try:
        store = _store(config)  # a pool process's first shard opens the store: the database may be away right then
        store.pick_up(day, shard, claim.owner, claim.lease_seconds)  # `status` shows the shard as this worker's
        summary = run_edition(config, store, subscribers, day=day, skip_empty=config.model.schedule.skip_empty, claim=claim)
        due = due_emails(store, subscribers, day)
        if summary.stopped:
            store.put_down(day, shard, claim.owner)
        else:  # queued for someone no longer due (unsubscribed, file removed, suppressed): never to be sent
            store.drop_queued(day, wanted - set(due), shard=shard)
        # a due edition still queued was skipped while another process held its row: look again, as for held ones
        held = [email for email, entry in store.ledger_entries(day, due).items()
                if entry.state in (State.PENDING, State.SENDING, State.QUEUED)]
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
