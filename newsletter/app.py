"""The application layer: composition of the stages, with no command-line concerns.

The CLI and the scheduler call these to open the store, ingest files, fetch the
configured sources, read bounces and build the scheduler service wired to a config.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from newsletter.config import Config, display_path, load_subscribers
from newsletter.models import Subscriber
from newsletter.render import template_names
from newsletter.sources import ParseResult, parse_file
from newsletter.store import IngestStats, Store


def base_url_warning(config: Config) -> str | None:
    """A warning when real mail would carry unsubscribe links readers cannot reach (not https, or a local host)."""
    from urllib.parse import urlsplit

    from newsletter.delivery import get_backend_class
    from newsletter.delivery.smtp import is_loopback

    if not get_backend_class(config.delivery.backend).real_mail:
        return None
    url = config.newsletter.base_url
    parts = urlsplit(url)
    if parts.scheme == "https" and not is_loopback(parts.hostname or "") and parts.hostname != "0.0.0.0":
        return None
    return (f"{display_path(config.path)}: newsletter.base_url: {url!r} is not a public https URL: the unsubscribe "
            f"links in real mail will not work for readers (put `newsletter serve` behind https and set base_url to it)")


def ingest_paths(
    store: Store, paths: list[Path], *, format: str, page_date: date | None, on_warning: Callable[[str], None]
) -> list[tuple[ParseResult, IngestStats]]:
    """Parse and store each file in its own transaction; each warning goes to `on_warning`.

    A folder stands for the files in it (not hidden ones, not sub-folders), in name order.
    """
    results = []
    files = []
    for path in paths:
        if Path(path).is_dir():
            files.extend(sorted(p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    for path in files:
        parsed = parse_file(Path(display_path(path)), format, page_date=page_date)
        for warning in parsed.warnings:
            on_warning(warning)
        stats = store.add_papers(parsed.papers) if parsed.papers else IngestStats()
        results.append((parsed, stats))
    return results


def embed_papers(config: Config, store: Store, *, on_warning: Callable[[str], None] | None = None) -> int:
    """Compute the vectors of every stored paper that has none yet (batched); returns how many.

    A model that cannot be loaded is reported and skipped: selection embeds what it needs later.
    """
    from newsletter.embeddings import BATCH, EmbedderError, load_embedder, model_name, paper_text

    try:
        if not store.papers_without_vectors(model_name(config.model.selection.embedder), limit=1):
            return 0  # nothing to embed: the model is not even loaded
        embedder = load_embedder(config.model.selection.embedder)
    except EmbedderError as error:
        (on_warning or logging.getLogger("newsletter.embeddings").warning)(f"selection.embedder: {error}; papers not embedded")
        return 0
    done = 0
    while batch := store.papers_without_vectors(embedder.name, limit=BATCH):
        vectors = embedder.embed([paper_text(title, abstract) for _, title, abstract in batch])
        store.save_vectors(embedder.name, [paper_id for paper_id, _, _ in batch], vectors)
        done += len(batch)
    return done


def embed_libraries(config: Config, store: Store, *, on_warning: Callable[[str], None] | None = None) -> int:
    """Compute the vectors of the subscribers' library entries that have none yet; returns how many.

    `ingest` does it after the papers, so that `send` finds every vector stored and never loads the
    model (a library changed since the last ingest is embedded by the next `send`, once).
    """
    from newsletter.embeddings import EmbedderError
    from newsletter.relevance import Relevance

    directory = config.subscribers_dir
    if not directory.is_dir():
        return 0
    readers = [s for s in load_subscribers(directory, cache=store).subscribers if s.active and s.library is not None]
    if not readers:
        return 0
    try:
        return Relevance(store, config.model.selection.embedder).embed_libraries(readers)
    except EmbedderError as error:
        (on_warning or logging.getLogger("newsletter.embeddings").warning)(f"selection.embedder: {error}; libraries not embedded")
        return 0


def fetch_sources(config: Config, store: Store):
    """Ingest `[sources] inputs`, then download every `[sources] fetch` entry and store it.

    The fetch job of `newsletter run` (on [schedule] fetch and at start); returns
    JobStats (sent = papers stored, failed = sources or files that gave nothing).
    """
    from datetime import datetime, timezone

    from newsletter.scheduler import JobStats
    from newsletter.sources.fetch import FetchError, fetch_arxiv_listing, fetch_hf_daily

    stats = JobStats()
    paths = config.input_paths()
    if paths:
        results = ingest_paths(store, paths, format="auto", page_date=config.model.sources.page_date,
                               on_warning=logging.getLogger("newsletter.ingest").warning)
        stats.sent += sum(result.parsed for _, result in results)
        stats.failed += sum(1 for parsed, _ in results if not parsed.papers)
    for source in config.model.sources.fetch:
        try:
            if source == "hf":
                parsed = fetch_hf_daily(datetime.now(timezone.utc).date())
            else:
                parsed = fetch_arxiv_listing(source.removeprefix("arxiv:"))
        except (FetchError, ValueError) as error:
            logging.getLogger("newsletter.fetch").error("%s: %s", source, error)
            store.record_fetch(source, error=str(error))
            stats.failed += 1
            continue
        store.record_fetch(source)
        for warning in parsed.warnings:
            logging.getLogger("newsletter.fetch").warning(warning)
        stats.sent += store.add_papers(parsed.papers).parsed if parsed.papers else 0
        stats.skipped += parsed.warning_count
    embed_papers(config, store)
    embed_libraries(config, store)
    return stats


def read_bounces(config: Config, store: Store):
    """The `[bounces] poll` job: one pass over the bounce mailbox; JobStats sent = addresses suppressed."""
    from newsletter.bounces import read_configured
    from newsletter.scheduler import JobStats

    run = read_configured(config, store)
    return JobStats(sent=len(run.suppressed), skipped=len(run.hard) + len(run.soft) - len(run.suppressed))


def make_service(config: Config, store: Store):
    """The scheduler service wired to this config: fetch, per-group sends, the ledger check."""
    from newsletter.pipeline import Claim, is_done, new_owner, run_edition
    from newsletter.scheduler import JobStats, ScheduleSettings, Service

    schedule = config.model.schedule
    log = logging.getLogger("newsletter.subscribers")

    latest: dict[str, Subscriber] = {}  # the subscribers as last loaded; the service reloads before every job

    def current_subscribers():
        loaded = load_subscribers(config.subscribers_dir, templates=template_names(config.templates_dir))
        for problem in loaded.problems:
            log.warning(problem)
        latest.clear()
        latest.update((s.email, s) for s in loaded.subscribers)
        return loaded.subscribers

    def members(group):
        if not latest:
            current_subscribers()
        return [latest[email] for email in group.emails if email in latest]

    def send_group(group, day):
        if config.delivery.executor == "celery":
            from newsletter.workers import enqueue

            queued = enqueue(config, store, members(group), day=day)
            return JobStats(skipped=queued.summary.already_sent)
        summary = run_edition(config, store, members(group), day=day, skip_empty=schedule.skip_empty,
                              claim=Claim(new_owner("run"), config.delivery.lease_seconds))
        if summary.stopped:
            logging.getLogger("newsletter.scheduler").error("%s %s: sending stopped: %s", group.job_id, day, summary.stopped)
        noted = set(summary.notes)  # a note was sent to those
        skipped = [email for email in summary.empty if email not in noted]
        log_empty(members(group), skipped, day)
        return JobStats(sent=summary.sent, failed=summary.failed, skipped=len(skipped) + summary.already_sent)

    def log_empty(group_members: list[Subscriber], empty: list[str], day: date) -> None:
        if not empty:
            return
        by_reason: dict[str, list[str]] = {}
        chosen = [s for s in group_members if s.email in set(empty)]
        for email, reason in why_no_papers(config, store, chosen, day).items():
            by_reason.setdefault(reason, []).append(email)
        for reason, emails in by_reason.items():
            shown = ", ".join(emails[:3]) + (f" and {len(emails) - 3} more" if len(emails) > 3 else "")
            logging.getLogger("newsletter.send").info("no email for %s on %s: %s", shown, day, reason)

    settings = ScheduleSettings(
        fetch_cron=schedule.fetch,
        catch_up=timedelta(hours=schedule.catch_up_hours),
        misfire_grace_time=schedule.misfire_grace_time,
        skip_empty=schedule.skip_empty,
        shutdown_timeout=schedule.shutdown_timeout,
        reload_interval=timedelta(minutes=schedule.reload_minutes),
        fetch_at_start=True,
    )
    cron_jobs = {}
    bounces = config.model.bounces
    if bounces is not None and bounces.poll:
        cron_jobs["bounces"] = (bounces.poll, lambda: read_bounces(config, store))
    if config.delivery.executor == "celery":
        cron_jobs["requeue"] = (REQUEUE_CRON, lambda: requeue_lost_shards(config, store))
    return Service(
        settings,
        cron_jobs=cron_jobs,
        load_subscribers=current_subscribers,
        send_group=send_group,
        is_group_done=lambda group, day: is_done(store, members(group), day),
        fetch=(lambda: fetch_sources(config, store)) if config.model.sources.fetch or config.model.sources.inputs else None,
        lock_path=config.lock_path,
        cluster_lock=(lambda: _scheduler_lock(store)) if store._postgres else None,
    )


REQUEUE_CRON = "* * * * *"  # with Celery: look for shards the broker lost every minute


def requeue_lost_shards(config: Config, store: Store):
    """The `requeue` job: re-enqueue the editions of shards the broker lost; JobStats sent = editions re-enqueued."""
    from newsletter.scheduler import JobStats
    from newsletter.workers import requeue_lost

    return JobStats(sent=requeue_lost(config, store).editions)


SCHEDULER_LOCK = 0x6E6C7363  # pg advisory lock key: one `newsletter run` per PostgreSQL store


def _scheduler_lock(store: Store):
    """Hold the store's scheduler advisory lock; its release, or None when another host's `run` has it."""
    conn = store.try_cluster_lock(SCHEDULER_LOCK)
    return conn.close if conn is not None else None


def subscriber_file_name(email: str) -> str:
    """`ada@example.org.toml`: one file per address, only safe characters."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email).strip(".") + ".toml"


def toml_value(value) -> str:
    """A str, int, or list of str as TOML (JSON string escapes are TOML's, except DEL)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(value)


def add_subscriber(directory: Path, fields: dict) -> Path:
    """Write one new subscriber file, validated exactly as loading validates it.

    Raises ConfigError (one `file: field: problem` line each) for a bad value or
    an address that already has a file; creates `directory` if needed. Only the
    given fields are written, so the defaults stay the program's.
    """
    from newsletter.config import ConfigError, parse_subscriber

    subscriber = parse_subscriber(fields, display_path(directory / subscriber_file_name(str(fields.get("email", "")))))
    fields = {**fields, "email": subscriber.email}
    path = directory / subscriber_file_name(subscriber.email)
    shown = display_path(path)
    existing = load_subscribers(directory) if directory.is_dir() else None
    if existing is not None and subscriber.email in existing.paths:
        raise ConfigError([f"{shown}: email: {subscriber.email} is already subscribed "
                           f"(in {display_path(existing.paths[subscriber.email])})"])
    if path.exists():
        raise ConfigError([f"{shown}: already exists (and does not load: `newsletter subscribers check`)"])
    lines = ["# Written by `newsletter subscribers add`; edit freely (README: Subscribers).",
             *(f"{key} = {toml_value(value)}" for key, value in fields.items())]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def remove_subscriber(directory: Path, email: str) -> Path | None:
    """Delete the file of `email`; returns it, or None when no file holds that address."""
    path = load_subscribers(directory).paths.get(email.strip().lower())
    if path is not None:
        path.unlink()
    return path


def why_no_papers(
    config: Config, store: Store, subscribers: list[Subscriber], day: date | None, *, limit: int = 100
) -> dict[str, str]:
    """Why each of these subscribers (at most `limit`) got no picks for `day` (None: each one's local today),
    in words: no papers in the store, none in their age window, none matched, or nothing new (all sent before)."""
    from newsletter.pipeline import EditionBuilder, local_today
    from newsletter.selection import select

    if store.count_papers() == 0:
        return {s.email: "no papers in the store (`newsletter fetch hf` or `ingest` first)" for s in subscribers[:limit]}
    builder = EditionBuilder(config, store, key=b"only-for-selection")
    reasons = {}
    given = day
    for subscriber in subscribers[:limit]:
        day = given or local_today(subscriber)
        index = builder.index(day, subscriber.max_age_days)
        window = f"dated {day - timedelta(days=subscriber.max_age_days)} to {day} (max_age_days = {subscriber.max_age_days})"
        if not index.papers:
            reasons[subscriber.email] = f"no papers in the store {window}"
        elif select(subscriber, index, already_sent=set()):
            reasons[subscriber.email] = "nothing new: every paper that matches was sent to them before"
        else:
            reasons[subscriber.email] = f"none of the {len(index.papers)} papers {window} matched their profile"
    return reasons
