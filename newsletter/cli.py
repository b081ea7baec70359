"""The `newsletter` command line (Typer): thin wrappers over the pipeline stages."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from newsletter.config import DEFAULT_CONFIG, Config, ConfigError, SubscriberList, display_path, load_config, load_subscribers
from newsletter.models import Subscriber
from newsletter.sources import FORMATS, ParseResult, parse_file
from newsletter.store import IngestStats, Store

app = typer.Typer(
    help="A self-hosted, per-subscriber daily digest of new research papers.\n\n"
    "Typical day: `newsletter ingest FILES` (or `fetch hf`), then `newsletter send`. "
    "--config and --db may come before or after the command.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
subscribers_app = typer.Typer(help="Validate and inspect subscriber files; manage the suppression list.", no_args_is_help=True)
fetch_app = typer.Typer(help="Download papers from the network, then ingest them.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(fetch_app, name="fetch")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem, one line


class RateColumn(ProgressColumn):
    """Subscribers handled per second."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "–/s")


@dataclass
class Options:
    config_path: Path
    db: Path | None

    def config(self) -> Config:
        """The validated config, or exit 2 with one line per problem."""
        try:
            return load_config(self.config_path, db=self.db)
        except ConfigError as error:
            fail(error.problems, code=2)


def fail(problems: list[str] | str, code: int = 1):
    """Print problems to stderr (one per line) and exit."""
    for line in [problems] if isinstance(problems, str) else problems:
        err.print(line, markup=False)
    raise typer.Exit(code)


@contextmanager
def open_store(config: Config) -> Iterator[Store]:
    try:
        store = Store(config.store_url)
    except Exception as error:  # a store that cannot be opened is a user-facing problem, not a traceback
        from sqlalchemy.engine import make_url

        shown = make_url(config.store_url).render_as_string(hide_password=True)
        fail(f"{shown}: cannot open the store: {error}", code=2)
    try:
        yield store
    finally:
        store.close()


def report_subscriber_problems(loaded: SubscriberList) -> None:
    for problem in loaded.problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)


def parse_day(value: Optional[str], option: str = "--date") -> Optional[date]:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected a date like 2026-11-25, got {value!r}", code=2)


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Config file (TOML). Relative paths inside it resolve against its folder.")
]
DbOption = Annotated[Optional[Path], typer.Option("--db", help="SQLite store file, overriding [store] path.")]
DateOption = Annotated[Optional[str], typer.Option("--date", help="Edition date YYYY-MM-DD (default: each subscriber's local today).")]


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    ctx.obj = Options(config_path=config, db=db)


# -- ingest and papers ----------------------------------------------------------


def ingest_paths(store: Store, paths: list[Path], *, format: str, page_date: date | None) -> list[tuple[ParseResult, IngestStats]]:
    """Parse and store each file in its own transaction; warnings go to stderr."""
    results = []
    for path in paths:
        parsed = parse_file(Path(display_path(path)), format, page_date=page_date)
        for warning in parsed.warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        stats = store.add_papers(parsed.papers) if parsed.papers else IngestStats()
        results.append((parsed, stats))
    return results


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files to ingest (default: [sources] inputs).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help=f"auto, {', '.join(FORMATS)}.")] = "auto",
    page_date: Annotated[Optional[str], typer.Option(help="Date of a Hugging Face page dump, for dates shown without a year.")] = None,
) -> None:
    """Parse paper files (Hugging Face pages or API JSON, arXiv Atom, JSON Lines) into the store.

    Exits 0 when anything was ingested, 1 when a file yielded nothing.
    """
    if format != "auto" and format not in FORMATS:
        fail(f"--format: unknown format {format!r} (choose one of: auto, {', '.join(FORMATS)})", code=2)
    config = ctx.obj.config()
    paths = paths or config.input_paths()
    if not paths:
        fail("nothing to ingest: give PATH arguments or set [sources] inputs in the config", code=2)
    with open_store(config) as store:
        results = ingest_paths(store, paths, format=format, page_date=parse_day(page_date, "--page-date") or config.model.sources.page_date)
    table = Table("file", "format", "parsed", "new", "updated", "skipped", "warnings", title="Ingest")
    for parsed, stats in results:
        table.add_row(display_path(Path(parsed.path)), parsed.format, str(stats.parsed), str(stats.new),
                      str(stats.updated), str(stats.unchanged), str(len(parsed.warnings)))
    out.print(table)
    if any(not parsed.papers for parsed, _ in results):
        raise typer.Exit(1)


def paper_json(paper) -> dict:
    """A paper as one `papers --json` object (the JSON Lines input format too)."""
    return {
        "id": paper.id,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": paper.authors,
        "author_count": paper.author_count,
        "organization": paper.organization,
        "published": paper.published.isoformat() if paper.published else None,
        "upvotes": paper.upvotes,
        "url": paper.url,
        "sources": paper.sources,
        "arxiv_id": paper.arxiv_id,
        "github_repo": paper.github_repo,
        "github_stars": paper.github_stars,
        "ai_keywords": paper.ai_keywords,
    }


@app.command()
def papers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")] = False,
    since: Annotated[Optional[str], typer.Option(help="Only papers dated on or after YYYY-MM-DD.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most this many papers.")] = None,
) -> None:
    """List the papers in the store, newest first."""
    config = ctx.obj.config()
    with open_store(config) as store:
        found = store.papers(since=parse_day(since, "--since"), limit=limit)
    if as_json:
        for paper in found:
            sys.stdout.write(json.dumps(paper_json(paper), ensure_ascii=False) + "\n")
        return
    table = Table("published", "upvotes", "id", "title", title=f"{len(found)} papers")
    for paper in found:
        table.add_row(str(paper.published or ""), "" if paper.upvotes is None else str(paper.upvotes), paper.id, paper.title)
    out.print(table)


# -- fetch ------------------------------------------------------------------------


def _ingest_fetched(ctx: typer.Context, fetcher) -> None:
    from newsletter.sources.fetch import FetchError

    config = ctx.obj.config()
    try:
        with err.status("fetching…"):
            parsed = fetcher()
    except FetchError as error:
        fail(str(error))
    for warning in parsed.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    with open_store(config) as store:
        stats = store.add_papers(parsed.papers)
    out.print(f"{parsed.path}: {stats.parsed} papers ({stats.new} new, {stats.updated} updated)")


@fetch_app.command("hf")
def fetch_hf(ctx: typer.Context, day: Annotated[Optional[str], typer.Option("--date", help="Daily papers date YYYY-MM-DD (default: today, UTC).")] = None) -> None:
    """Fetch the Hugging Face daily papers for a date and ingest them (weekends have none)."""
    from datetime import datetime, timezone

    from newsletter.sources.fetch import fetch_hf_daily

    when = parse_day(day) or datetime.now(timezone.utc).date()
    _ingest_fetched(ctx, lambda: fetch_hf_daily(when))


@fetch_app.command("arxiv")
def fetch_arxiv(ctx: typer.Context, category: Annotated[str, typer.Option(help="arXiv category, e.g. cs.LG.")]) -> None:
    """Fetch today's arXiv listing for a category and ingest it."""
    from newsletter.sources.fetch import fetch_arxiv_listing

    _ingest_fetched(ctx, lambda: fetch_arxiv_listing(category))


# -- subscribers ------------------------------------------------------------------


def loaded_subscribers(config: Config, *, quiet: bool = False) -> SubscriberList:
    loaded = load_subscribers(config.subscribers_dir)
    if not quiet:
        report_subscriber_problems(loaded)
    return loaded


@subscribers_app.command("check")
def subscribers_check(ctx: typer.Context) -> None:
    """Validate every subscriber file; list all problems and exit 1 if there are any."""
    config = ctx.obj.config()
    loaded = loaded_subscribers(config, quiet=True)
    for problem in loaded.problems:
        out.print(problem, markup=False)
    out.print(f"{len(loaded.subscribers)} subscribers ok, {len(loaded.problems)} problems")
    if loaded.problems:
        raise typer.Exit(1)


@subscribers_app.command("list")
def subscribers_list(ctx: typer.Context) -> None:
    """Show the subscribers as a table (email, mode, time zone, send time, active)."""
    config = ctx.obj.config()
    loaded = loaded_subscribers(config)
    with open_store(config) as store:
        suppressed = store.suppressed()
    table = Table("email", "mode", "time zone", "send at", "days", "active", title=f"{len(loaded.subscribers)} subscribers")
    for s in loaded.subscribers:
        active = "unsubscribed" if s.email in suppressed else ("yes" if s.active else "no")
        days = "every day" if len(s.days) == 7 else ",".join(s.days)
        table.add_row(s.email, s.mode, s.timezone, s.send_at.strftime("%H:%M"), days, active)
    out.print(table)


@subscribers_app.command("enable")
def subscribers_enable(ctx: typer.Context, email: str) -> None:
    """Take an address off the suppression list, so it receives editions again."""
    config = ctx.obj.config()
    with open_store(config) as store:
        changed = store.unsuppress(email)
    out.print(f"{email}: {'re-enabled' if changed else 'was not suppressed'}")


@subscribers_app.command("disable")
def subscribers_disable(ctx: typer.Context, email: str) -> None:
    """Put an address on the suppression list (as an unsubscribe would)."""
    config = ctx.obj.config()
    with open_store(config) as store:
        changed = store.suppress(email, reason="disabled by operator")
    out.print(f"{email}: {'suppressed' if changed else 'was already suppressed'}")


# -- select, render, send ---------------------------------------------------------------


def find_subscriber(config: Config, email: str):
    loaded = loaded_subscribers(config)
    subscriber = loaded.find(email)
    if subscriber is None:
        fail(f"{email}: no such subscriber in {display_path(config.subscribers_dir)}", code=2)
    return subscriber


def builder_for(config: Config, store: Store):
    from newsletter.pipeline import EditionBuilder, MissingSecret

    try:
        return EditionBuilder(config, store)
    except MissingSecret as error:
        fail(str(error), code=2)


@app.command("select")
def select_cmd(
    ctx: typer.Context,
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="Subscriber email.")],
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show the picks for one subscriber, with score and reasons, without sending anything."""
    from newsletter.pipeline import local_today

    config = ctx.obj.config()
    sub = find_subscriber(config, subscriber)
    edition_day = parse_day(day) or local_today(sub)
    with open_store(config) as store:
        picks = builder_for(config, store).select(sub, edition_day)
    if as_json:
        print(json.dumps({"subscriber": sub.email, "date": edition_day.isoformat(), "picks": [
            {"rank": n, "score": round(p.score, 4), "reasons": p.reasons, "paper": paper_json(p.paper)}
            for n, p in enumerate(picks, 1)]}, ensure_ascii=False, indent=2))
        return
    if not picks:
        out.print(f"{sub.email}: no picks for {edition_day} (no email would be sent)")
        return
    table = Table("#", "score", "title", "why", title=f"{sub.email} · {edition_day}")
    for n, pick in enumerate(picks, 1):
        table.add_row(str(n), f"{pick.score:.3f}", pick.paper.title, "; ".join(pick.reasons))
    out.print(table)


@app.command()
def render(
    ctx: typer.Context,
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="Subscriber email.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output file: .html, .txt or .eml.")],
    day: DateOption = None,
) -> None:
    """Write one subscriber's edition to a file (.html, .txt or .eml by the extension)."""
    from newsletter.pipeline import local_today

    suffix = out_file.suffix.lower()
    if suffix not in (".html", ".txt", ".eml"):
        fail(f"--out: {out_file}: use a .html, .txt or .eml file name", code=2)
    config = ctx.obj.config()
    sub = find_subscriber(config, subscriber)
    edition_day = parse_day(day) or local_today(sub)
    with open_store(config) as store:
        built = builder_for(config, store).edition(sub, edition_day)
    if built is None:
        fail(f"{sub.email}: no picks for {edition_day}, nothing to render")
    edition, data = built
    if suffix == ".eml":
        out_file.write_bytes(data)
    else:
        out_file.write_text(edition.html if suffix == ".html" else edition.text, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(edition.picks)} papers, subject: {edition.subject})", markup=False)


@app.command()
def send(
    ctx: typer.Context,
    day: DateOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render everything, send and record nothing.")] = False,
    only: Annotated[Optional[str], typer.Option("--only", help="Send to this one subscriber only.")] = None,
    resend_uncertain: Annotated[bool, typer.Option(
        "--resend-uncertain/--no-resend-uncertain",
        help="Editions a crashed run left 'sending' are re-sent with the same Message-ID (default), or marked for review.")] = True,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try editions that failed before again.")] = False,
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="Skip ingesting [sources] inputs first.")] = False,
    workers: Annotated[Optional[str], typer.Option(
        "--workers", help="local: send from this process; celery: enqueue shards for `newsletter worker` "
        "(default: [delivery] executor).")] = None,
) -> None:
    """One edition run: ingest [sources] inputs, then select, render and deliver to everyone due.

    A (subscriber, date) is sent at most once: running again the same day sends nothing new.
    """
    from newsletter.delivery.base import DeliveryError
    from newsletter.pipeline import MissingSecret, run_edition

    config = ctx.obj.config()
    edition_day = parse_day(day)
    executor = workers or config.delivery.executor
    if executor not in ("local", "celery"):
        fail(f"--workers: expected local or celery, got {executor!r}", code=2)
    if executor == "celery":
        for given, option in ((dry_run, "--dry-run"), (retry_failed, "--retry-failed"), (not resend_uncertain, "--no-resend-uncertain"), (ctx.obj.db, "--db")):
            if given:
                fail(f"{option}: not with --workers celery (workers follow the config; use --workers local)", code=2)
    loaded = loaded_subscribers(config)
    with open_store(config) as store:
        inputs = config.input_paths()
        if inputs and not no_ingest:
            results = ingest_paths(store, inputs, format="auto", page_date=config.model.sources.page_date)
            new = sum(stats.new for _, stats in results)
            out.print(f"Ingested {sum(s.parsed for _, s in results)} papers from {len(results)} files ({new} new); "
                      f"{store.count_papers()} in the store")
        if executor == "celery":
            enqueue_shards(config, store, loaded.subscribers, day=edition_day, only=only)
            return
        total = len([s for s in loaded.subscribers if s.active and (not only or s.email == only.lower())])
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]} · {task.remaining:.0f} left"),
                   RateColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("editions", total=total, sent=0, failed=0)

            def on_progress(summary):
                progress.update(task, completed=summary.processed, sent=summary.sent, failed=summary.failed)

            try:
                summary = run_edition(config, store, loaded.subscribers, day=edition_day, only=only, dry_run=dry_run,
                                      resend_uncertain=resend_uncertain, retry_failed=retry_failed,
                                      skip_empty=config.model.schedule.skip_empty, on_progress=on_progress)
            except (MissingSecret, DeliveryError) as error:
                fail(f"{display_path(config.path)}: {error}", code=2)
    print_summary(config, summary)
    if summary.failed:
        raise typer.Exit(1)


def enqueue_shards(config: Config, store: Store, subscribers, *, day: Optional[date], only: Optional[str]) -> None:
    """`send --workers celery`: queue the shards, say how many, and how to follow them."""
    from kombu.exceptions import OperationalError as BrokerError

    from newsletter.workers import broker_url, enqueue

    try:
        queued = enqueue(config, store, subscribers, day=day, only=only)
    except BrokerError as error:
        fail(f"{broker_url(config)}: cannot reach the broker: {error}")
    dates = ", ".join(sorted(str(d) for d in queued.summary.dates)) or "none"
    out.print(f"Enqueued {queued.editions} editions in {queued.shards} shards for `newsletter worker` "
              f"(edition dates: {dates}; {queued.summary.already_sent} already settled). "
              "Follow with `newsletter status`.", markup=False)


def print_summary(config: Config, summary) -> None:
    """The run's summary table and the lines worth reading."""
    table = Table("", "", title="Dry run (nothing sent or recorded)" if summary.dry_run else "Send summary", show_header=False)
    rows = [
        ("subscribers", summary.subscribers),
        ("editions rendered", summary.rendered),
        ("sent", summary.sent),
        ("failed", summary.failed),
        ("already sent earlier", summary.already_sent),
        ("no new papers" + (" (no email)" if summary.skip_empty else ""), len(summary.empty)),
        ("unsubscribed", summary.suppressed),
        ("not a sending day", summary.not_today),
        ("failed earlier (use --retry-failed)", summary.previously_failed),
        ("uncertain after a crash", summary.uncertain),
        ("held for review", summary.held_for_review),
    ]
    for label, value in rows:
        if value or label in ("subscribers", "sent"):
            table.add_row(label, str(value))
    out.print(table)
    for email, reply in summary.failures:
        err.print(f"failed: {email}: {reply}", markup=False)
    for email in summary.empty if summary.skip_empty else ():
        out.print(f"{email}: no new papers, no email today", markup=False)
    if summary.sent and config.delivery.backend in ("file", "mbox"):
        options = config.delivery.backend_options
        where = options.get("dir", "outbox") if config.delivery.backend == "file" else options.get("path", "outbox.mbox")
        plural = "" if summary.sent == 1 else "s"
        out.print(f"Wrote {summary.sent} email{plural} to {display_path(config.resolve(where))}", markup=False)
    elif not summary.sent and not summary.dry_run and summary.already_sent:
        out.print("Nothing new to send: every due edition is already in the ledger.")


@app.command()
def status(
    ctx: typer.Context,
    day: Annotated[Optional[str], typer.Option("--date", help="Edition date YYYY-MM-DD (default: all dates).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Ledger counts per state, the failed editions with their reasons, and the next scheduled runs."""
    config = ctx.obj.config()
    edition_day = parse_day(day)
    with open_store(config) as store:
        counts = store.ledger_counts(edition_day)
        failed = store.ledger_rows(edition_date=edition_day, state="failed")
        review = store.ledger_rows(edition_date=edition_day, state="review")
        next_runs = make_service(config, store).next_runs()
    problems = [
        {"email": row.email, "date": row.edition_date.isoformat(), "state": row.state, "reply": row.reply, "attempts": row.attempts}
        for row in [*failed, *review]
    ]
    if as_json:
        print(json.dumps({"date": edition_day.isoformat() if edition_day else None, "counts": counts,
                          "problems": problems, "next_runs": next_runs}, indent=2))
        return
    table = Table("state", "editions", title=f"Ledger{' for ' + str(edition_day) if edition_day else ''}")
    for state, count in counts.items():
        table.add_row(state, str(count))
    out.print(table)
    for item in problems:
        out.print(f"{item['state']}: {item['email']} {item['date']}: {item['reply']}", markup=False)
    jobs = Table("job", "next run (UTC)", "group", title="Next scheduled runs (`newsletter run`)")
    for job in next_runs:
        group = f"{job['timezone']} {job['send_at']} {','.join(job['days'])} · {job['subscribers']} subscribers" if job["job"] == "send" else job["cron"]
        jobs.add_row(job["job"], job["next_run_utc"], group)
    out.print(jobs)


# -- preview and unsubscribe server ---------------------------------------------------------


def serve_app(config: Config, host: str, port: int, *, preview: bool) -> None:
    """Run the web app (preview pages and/or the unsubscribe endpoints) with uvicorn."""
    import uvicorn

    from newsletter.preview import create_app

    with open_store(config) as store:
        builder = builder_for(config, store)

        def build_edition(email: str, day: date):
            subscriber = loaded_subscribers(config, quiet=True).find(email)
            return builder.edition(subscriber, day) if subscriber else None

        web = create_app(
            list_subscribers=lambda: loaded_subscribers(config).subscribers,
            build_edition=build_edition,
            suppress=lambda email: store.suppress(email, reason="one-click unsubscribe"),
            secret_key=builder.key,
            preview=preview,
        )
        what = "preview" if preview else "unsubscribe endpoint"
        err.print(f"Serving the {what} on http://{host}:{port}/ (Ctrl-C to stop)", markup=False)
        uvicorn.run(web, host=host, port=port, log_level="warning")


HostOption = Annotated[str, typer.Option(help="Address to bind; keep 127.0.0.1 unless you mean to expose it.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]


@app.command()
def preview(ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = 8025) -> None:
    """Preview every subscriber's digest in the browser (HTML at 320/600 px, text, .eml) for any date.

    Pages are built by the same code as `send`; templates are re-read on each request.
    """
    serve_app(ctx.obj.config(), host, port, preview=True)


@app.command()
def serve(ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = 8025) -> None:
    """Serve only the public one-click unsubscribe endpoint (RFC 8058) under [newsletter] base_url."""
    serve_app(ctx.obj.config(), host, port, preview=False)


# -- the scheduler service ---------------------------------------------------------------


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
        stats.skipped += len(parsed.warnings)
    return stats


def make_service(config: Config, store: Store):
    """The scheduler service wired to this config: fetch, per-group sends, the ledger check."""
    from datetime import timedelta

    from newsletter.pipeline import is_done, run_edition
    from newsletter.scheduler import JobStats, ScheduleSettings, Service

    schedule = config.model.schedule
    log = logging.getLogger("newsletter.subscribers")

    latest: dict[str, Subscriber] = {}  # the subscribers as last loaded; the service reloads before every job

    def current_subscribers():
        loaded = load_subscribers(config.subscribers_dir)
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
    return Service(
        settings,
        load_subscribers=current_subscribers,
        send_group=send_group,
        is_group_done=lambda group, day: is_done(store, members(group), day),
        fetch=(lambda: fetch_sources(config, store)) if config.model.sources.fetch else None,
        lock_path=config.lock_path,
    )


def require_signing_key(config: Config) -> None:
    """Exit 2 now, before any work, when the unsubscribe key a long-running process needs is missing."""
    from newsletter.pipeline import MissingSecret, signing_key

    try:
        signing_key(config)
    except MissingSecret as error:
        fail(str(error), code=2)


@app.command()
def run(
    ctx: typer.Context,
    log_file: Annotated[Optional[Path], typer.Option(help="Also write the log to this file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the scheduler service: fetch papers on [schedule] fetch, send each group at its local time.

    One job per (time zone, send time, days) group; missed editions from the last
    [schedule] catch_up_hours are sent on start. Stop with SIGTERM or Ctrl-C:
    sends in flight finish first.
    """
    from newsletter.scheduler import AlreadyRunning

    config = ctx.obj.config()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose else logging.WARNING)
    require_signing_key(config)
    with open_store(config) as store:
        service = make_service(config, store)
        try:
            service.start()
        except AlreadyRunning as error:
            fail(f"error: {error}", code=1)
    if not service.shutdown_clean:
        raise typer.Exit(1)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="Processes sending at once (default: CPU count).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Worker name, e.g. w1@%h (default: celery@HOST).")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a Celery worker: sends the shards that `send --workers celery` and `run` enqueue (README: "Scaling out").

    Stop with SIGTERM or Ctrl-C: shards in progress finish first.
    """
    if ctx.obj.db:
        fail("--db: not with worker (workers open the store in [store] of the config their tasks name)", code=2)
    config = ctx.obj.config()
    require_signing_key(config)
    with open_store(config):
        pass  # fail now, not in every task, when the store cannot be opened
    from newsletter.workers import run_worker

    run_worker(config, concurrency=concurrency, name=name, loglevel=loglevel.upper())


GLOBAL_OPTIONS = ("--config", "-c", "--db")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--config`/`--db` given after the command to the front, so both
    `newsletter --config X send` and `newsletter send --config X` work."""
    front, rest = [], []
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        elif name in GLOBAL_OPTIONS and index + 1 < len(args):
            front.extend(args[index : index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def main() -> None:
    """Console-script entry point."""
    app(args=hoist_global_options(sys.argv[1:]), prog_name="newsletter")
