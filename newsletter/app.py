"""The application layer: composition of the stages, with no command-line concerns.

The CLI and the scheduler call these to open the store, ingest files, fetch the
configured sources, read bounces and build the scheduler service wired to a config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path

from newsletter.config import Config, display_path, load_subscribers
from newsletter.models import Subscriber
from newsletter.render import template_names
from newsletter.sources import ParseResult, parse_file
from newsletter.store import IngestStats, Store


def ingest_paths(
    store: Store, paths: list[Path], *, format: str, page_date: date | None, on_warning: Callable[[str], None]
) -> list[tuple[ParseResult, IngestStats]]:
    """Parse and store each file in its own transaction; each warning goes to `on_warning`."""
    results = []
    for path in paths:
        parsed = parse_file(Path(display_path(path)), format, page_date=page_date)
        for warning in parsed.warnings:
            on_warning(warning)
        stats = store.add_papers(parsed.papers) if parsed.papers else IngestStats()
        results.append((parsed, stats))
    return results


def fetch_sources(config: Config, store: Store):
    """Download every `[sources] fetch` entry and store it; returns JobStats (sent = papers stored)."""
    from datetime import datetime, timezone

    from newsletter.scheduler import JobStats
    from newsletter.sources.fetch import FetchError, fetch_arxiv_listing, fetch_hf_daily

    stats = JobStats()
    for source in config.model.sources.fetch:
        try:
            if source == "hf":
                parsed = fetch_hf_daily(datetime.now(timezone.utc).date())
            else:
                parsed = fetch_arxiv_listing(source.removeprefix("arxiv:"))
        except (FetchError, ValueError) as error:
            logging.getLogger("newsletter.fetch").error("%s: %s", source, error)
            stats.failed += 1
            continue
        for warning in parsed.warnings:
            logging.getLogger("newsletter.fetch").warning(warning)
        stats.sent += store.add_papers(parsed.papers).parsed if parsed.papers else 0
        stats.skipped += parsed.warning_count
    return stats


def read_bounces(config: Config, store: Store):
    """The `[bounces] poll` job: one pass over the bounce mailbox; JobStats sent = addresses suppressed."""
    from newsletter.bounces import read_configured
    from newsletter.scheduler import JobStats

    run = read_configured(config, store)
    return JobStats(sent=len(run.suppressed), skipped=len(run.hard) + len(run.soft) - len(run.suppressed))


def make_service(config: Config, store: Store):
    """The scheduler service wired to this config: fetch, per-group sends, the ledger check."""
    from datetime import timedelta

    from newsletter.pipeline import is_done, run_edition
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
        summary = run_edition(config, store, members(group), day=day, skip_empty=schedule.skip_empty)
        return JobStats(sent=summary.sent, failed=summary.failed, skipped=len(summary.empty) + summary.already_sent)

    settings = ScheduleSettings(
        fetch_cron=schedule.fetch,
        catch_up=timedelta(hours=schedule.catch_up_hours),
        misfire_grace_time=schedule.misfire_grace_time,
        skip_empty=schedule.skip_empty,
        shutdown_timeout=schedule.shutdown_timeout,
        reload_interval=timedelta(minutes=schedule.reload_minutes),
    )
    cron_jobs = {}
    bounces = config.model.bounces
    if bounces is not None and bounces.poll:
        cron_jobs["bounces"] = (bounces.poll, lambda: read_bounces(config, store))
    return Service(
        settings,
        cron_jobs=cron_jobs,
        load_subscribers=current_subscribers,
        send_group=send_group,
        is_group_done=lambda group, day: is_done(store, members(group), day),
        fetch=(lambda: fetch_sources(config, store)) if config.model.sources.fetch else None,
        lock_path=config.lock_path,
    )

