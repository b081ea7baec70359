"""`select`, `render`, `send` and `status`: one edition, from picks to the ledger."""

from __future__ import annotations

import gc
import json
import math
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from newsletter.app import base_url_warning, ingest_paths, make_service, why_no_papers
from newsletter.cli.common import (
    DateOption,
    WARNING_CHARS,
    RateColumn,
    app,
    builder_for,
    cell,
    err,
    fail,
    find_subscriber,
    loaded_subscribers,
    open_store,
    out,
    paper_json,
    parse_day,
    require_signing_key,
    warn,
)
from newsletter.config import Config, display_path
from newsletter.store import HELD, State, Store


@app.command("select")
def select_cmd(
    ctx: typer.Context,
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="Subscriber email.")],
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="What would be picked now, even if this edition was already sent.")] = False,
) -> None:
    """Show the picks for one subscriber, with score and reasons, without sending anything.

    Once the date's edition is in the ledger, shows what it carried (as `render` and
    `send` would), and says so; --fresh shows what would be picked now instead.
    """
    from newsletter.pipeline import EditionBuilder

    config = ctx.obj.config()
    sub = find_subscriber(config, subscriber)
    edition_day = edition_date(sub, day)
    with open_store(config, read_only=True) as store:
        builder = EditionBuilder(config, store, key=b"select-signs-nothing")
        entry = None if fresh else builder.recorded_entry(sub, edition_day)
        picks = builder.picks_from_ledger(entry) if entry else builder.select(sub, edition_day)
        why = why_no_papers(config, store, [sub], edition_day).get(sub.email) if not picks else None
    recorded = None
    if entry:
        verb = "already sent" if entry.state == "sent" else f"recorded ({entry.state})"
        in_email = len(entry.paper_ids)
        recorded = f"{verb} {entry.updated_at:%Y-%m-%d %H:%M} UTC, {in_email} papers" + (
            f" (and {len(picks) - in_email} the size budget left for the web page)" if len(picks) > in_email else "")
    if as_json:
        print(json.dumps({"subscriber": sub.email, "date": edition_day.isoformat(), "recorded": recorded, "picks": [
            {"rank": n, "score": round(p.score, 4), "reasons": p.reasons, "paper": paper_json(p.paper)}
            for n, p in enumerate(picks, 1)]}, ensure_ascii=False, indent=2))
        return
    if recorded:
        out.print(f"{sub.email} · {edition_day}: {recorded} (what it carried; --fresh for what would be picked now)",
                  markup=False)
    if not picks:
        out.print(f"{sub.email}: no picks for {edition_day} (no email would be sent): {why}", markup=False)
        return
    table = Table("#", "score", "title", "why", title=cell(f"{sub.email} · {edition_day}"))
    for n, pick in enumerate(picks, 1):
        table.add_row(str(n), f"{pick.score:.3f}", cell(pick.paper.title), cell("; ".join(pick.reasons), None))
    out.print(table)


def edition_date(subscriber, day: Optional[str]) -> date:
    """`--date`, or the subscriber's local today; a date after their today is warned about."""
    from newsletter.pipeline import local_today

    today = local_today(subscriber)
    edition_day = parse_day(day) or today
    if edition_day > today:
        warn(f"{edition_day} is in the future for {subscriber.email} (their today is {today}): "
             "papers published after today are not in the store yet")
    return edition_day


@app.command()
def render(
    ctx: typer.Context,
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="Subscriber email.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output file: .html, .txt or .eml.")],
    day: DateOption = None,
) -> None:
    """Write one subscriber's edition to a file (.html, .txt or .eml by the extension); creates the folder."""
    suffix = out_file.suffix.lower()
    if suffix not in (".html", ".txt", ".eml"):
        fail(f"--out: {out_file}: use a .html, .txt or .eml file name", code=2)
    config = ctx.obj.config()
    sub = find_subscriber(config, subscriber)
    edition_day = edition_date(sub, day)
    with open_store(config) as store:
        built = builder_for(config, store).edition(sub, edition_day)
        why = why_no_papers(config, store, [sub], edition_day).get(sub.email) if built is None else None
    if built is None:
        fail(f"{sub.email}: no picks for {edition_day}, nothing to render: {why}")
    edition, data = built
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--out: {out_file.parent}: cannot create the folder: {error.strerror or error}", code=2)
    if suffix == ".eml":
        out_file.write_bytes(data)
    else:
        out_file.write_text(edition.html if suffix == ".html" else edition.text, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(edition.picks)} papers, subject: {edition.subject})", markup=False)


@app.command()
def send(
    ctx: typer.Context,
    emails: Annotated[Optional[list[str]], typer.Argument(
        metavar="[EMAIL]...", help="With --resend-uncertain: the subscribers whose held editions to send again.")] = None,
    day: DateOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render everything, send and record nothing.")] = False,
    only: Annotated[Optional[str], typer.Option("--only", help="Send to this one subscriber only.")] = None,
    resend_uncertain: Annotated[bool, typer.Option(
        "--resend-uncertain",
        help="Send the 'uncertain' (maybe delivered) and 'review' editions of the EMAILs given (or of everyone "
        "with --all) again, with the same Message-ID, and nothing else. `newsletter status` lists them.")] = False,
    all_held: Annotated[bool, typer.Option("--all", help="With --resend-uncertain: every held edition.")] = False,
    hold_interrupted: Annotated[bool, typer.Option(
        "--hold-interrupted",
        help="Editions a crashed run was sending (lease expired) become 'uncertain' for you to check, instead of "
        "being sent again with the same Message-ID (the default; at most one per SMTP connection of that run can "
        "have been delivered).")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try editions that failed before again.")] = False,
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="Skip ingesting [sources] inputs first.")] = False,
    workers: Annotated[Optional[str], typer.Option(
        "--workers", help="local: send from this machine, one worker process per core ([delivery] processes); "
        "celery: enqueue shards for `newsletter worker` (default: [delivery] executor).")] = None,
) -> None:
    """One edition run: ingest [sources] inputs, then select, render and deliver to everyone due.

    A (subscriber, date) is sent at most once: running again the same day sends nothing new, and runs that
    overlap (cron and a manual run, `run` catching up) split the editions between them. Exit status: 0 all
    done, 1 some editions failed or are uncertain, 2 the run stopped (bad setup, authentication refused).
    """
    from newsletter.delivery.base import DeliveryError
    from newsletter.dkim_signing import DkimError
    from newsletter.executor import available_cores, run_parallel
    from newsletter.pipeline import Claim, MissingSecret, new_owner, resend_held, run_edition, signing_key

    config = ctx.obj.config()
    if not dry_run:
        require_signing_key(config)
    if warning := base_url_warning(config):
        warn(warning)
    edition_day = parse_day(day)
    executor = workers or config.delivery.executor
    if executor not in ("local", "celery"):
        fail(f"--workers: expected local or celery, got {executor!r}", code=2)
    if (emails or all_held) and not resend_uncertain:
        fail("EMAIL arguments and --all go with --resend-uncertain", code=2)
    if resend_uncertain and bool(emails) == all_held:
        fail("--resend-uncertain: name the subscribers (EMAIL...) or give --all", code=2)
    if executor == "celery" and not resend_uncertain:
        for given, option in ((dry_run, "--dry-run"), (retry_failed, "--retry-failed"), (hold_interrupted, "--hold-interrupted"), (ctx.obj.db, "--db")):
            if given:
                fail(f"{option}: not with --workers celery (workers follow the config; use --workers local)", code=2)
    with open_store(config) as store:
        gc.disable()  # the subscribers live for the whole run: no collection while they load
        try:
            loaded = loaded_subscribers(config, store=store)
        finally:
            gc.freeze()  # nor later: what is loaded now need not be scanned again and again
            gc.enable()
        if only:
            chosen = find_subscriber(config, only, loaded)
            if not chosen.active:
                fail(f"{chosen.email}: not active (active = false in {display_path(loaded.paths[chosen.email])}); "
                     "nothing to send", code=2)
            only = chosen.email
        if resend_uncertain:
            try:
                released, summary = resend_held(config, store, loaded.subscribers,
                                                None if all_held else [e.strip().lower() for e in emails], day=edition_day)
            except (MissingSecret, DkimError, DeliveryError) as error:
                fail(f"{display_path(config.path)}: {error}", code=2)
            out.print(f"Released {len(released)} held editions for sending again (same Message-ID).")
            print_summary(config, summary)
            finish(summary)
            return
        inputs = config.input_paths()
        if inputs and not no_ingest:
            results = ingest_paths(store, inputs, format="auto", page_date=config.model.sources.page_date, on_warning=warn)
            new = sum(stats.new for _, stats in results)
            warnings = sum(parsed.warning_count for parsed, _ in results)
            out.print(f"Ingested {sum(s.parsed for _, s in results)} papers from {len(results)} files ({new} new"
                      f"{f', {warnings:,} warnings' if warnings else ''}); {store.count_papers()} in the store")
        if executor == "celery":
            enqueue_shards(config, store, loaded.subscribers, day=edition_day, only=only)
            return
        total = len([s for s in loaded.subscribers if s.active and (not only or s.email == only.lower())])
        columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]} · {task.remaining:.0f} left", markup=False),
                   RateColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:  # cron: silence
            task = progress.add_task("editions", total=total, sent=0, failed=0)

            def on_progress(summary):
                progress.update(task, completed=summary.processed, sent=summary.sent, failed=summary.failed)

            options = dict(day=edition_day, retry_failed=retry_failed, hold_expired=hold_interrupted,
                           skip_empty=config.model.schedule.skip_empty, on_progress=on_progress)
            processes = min(config.delivery.processes or available_cores(),
                            math.ceil(total / config.delivery.chunk_size))
            try:
                if processes > 1 and not dry_run and not only:
                    signing_key(config)  # a missing secret is said once, not by every worker
                    summary = run_parallel(config, loaded.subscribers, processes=processes, **options)
                else:
                    summary = run_edition(config, store, loaded.subscribers, only=only, dry_run=dry_run,
                                          claim=Claim(new_owner("send"), config.delivery.lease_seconds), **options)
            except (MissingSecret, DkimError, DeliveryError) as error:
                fail(f"{display_path(config.path)}: {error}", code=2)
        empty = set(summary.empty)
        reasons = why_no_papers(config, store, [s for s in loaded.subscribers if s.email in empty], edition_day) if empty else {}
    print_summary(config, summary, reasons)
    finish(summary)


def finish(summary) -> None:
    """Exit 2 when the run stopped early, 1 when editions failed or are uncertain."""
    if summary.stopped:
        fail(f"stopped: {summary.stopped}", code=2)
    if summary.failed or summary.uncertain:
        raise typer.Exit(1)


def enqueue_shards(config: Config, store: Store, subscribers, *, day: Optional[date], only: Optional[str]) -> None:
    """`send --workers celery`: queue the shards, say how many, and how to follow them."""
    try:
        from kombu.exceptions import OperationalError as BrokerError
        from redis.exceptions import RedisError

        from newsletter.workers import broker_url, enqueue, requeue_lost
    except ImportError as missing:
        fail(f"--workers celery: needs the celery extra ({missing.name} is not installed): "
             "pip install 'newsletter[postgres,celery]'", code=2)

    try:
        queued = enqueue(config, store, subscribers, day=day, only=only)
        # shards of other dates the broker lost (the ones of these dates were just re-enqueued above)
        lost = requeue_lost(config, store, not_dates=queued.summary.dates) if not only else None
    except (BrokerError, RedisError) as error:
        fail(f"{broker_url(config)}: cannot reach the broker: {error}")
    dates = ", ".join(sorted(str(d) for d in queued.summary.dates)) or "none"
    out.print(f"Enqueued {queued.editions} editions in {queued.shards} shards for `newsletter worker` "
              f"(edition dates: {dates}; {queued.summary.already_sent} already settled"
              f"{f', {queued.already_queued} already queued' if queued.already_queued else ''}"
              f"{f', {queued.requeued} of them from shards the broker lost' if queued.requeued else ''}). "
              "Follow with `newsletter status`.", markup=False)
    if lost and lost.editions:
        out.print(f"Re-enqueued {lost.editions} editions of lost shards in {lost.shards} shards "
                  f"(edition dates: {', '.join(sorted(str(d) for d in lost.dates))}).", markup=False)


def queue_report(groups: list[dict], now: datetime, visibility_timeout: float) -> tuple[list[dict], list[dict]]:
    """`status`: queued editions per date (waiting in the broker, overdue), and per worker what it runs.

    Overdue: queued longer than `visibility_timeout` and no worker has started its shard (or its worker's lease ran
    out): the broker may have lost it; `send --workers celery` or `run`'s sweep re-enqueues lost shards.
    """
    dates: dict[str, dict] = {}
    workers: dict[str, dict] = {}
    for group in groups:
        live = group["lease_until"] is not None and group["lease_until"] > now
        owner = group["owner"] if live else None
        if group["state"] == State.QUEUED:
            day = dates.setdefault(group["date"].isoformat(), {"date": group["date"].isoformat(), "queued": 0, "waiting": 0,
                                                               "picked_up": 0, "overdue": 0, "shards": set(), "oldest_seconds": 0})
            age = (now - group["oldest"]).total_seconds()
            day["queued"] += group["editions"]
            day["shards"].add(group["shard"])
            day["oldest_seconds"] = max(day["oldest_seconds"], round(age))
            if owner:
                day["picked_up"] += group["editions"]
            else:
                day["waiting"] += group["editions"]
                day["overdue"] += group["editions"] if age > visibility_timeout else 0
        if owner:
            worker = workers.setdefault(owner, {"owner": owner, "shards": set(), "queued": 0, "sending": 0})
            worker["queued" if group["state"] == State.QUEUED else "sending"] += group["editions"]
            if group["shard"]:
                worker["shards"].add(group["shard"])
    for item in [*dates.values(), *workers.values()]:
        item["shards"] = len(item["shards"])
    return sorted(dates.values(), key=lambda d: d["date"]), sorted(workers.values(), key=lambda w: w["owner"])


def print_queue(queued: list[dict], workers: list[dict]) -> None:
    for day in queued:
        line = (f"queued: {day['queued']} editions of {day['date']} in {day['shards']} shards: {day['waiting']} waiting "
                f"for a worker, {day['picked_up']} in shards a worker runs (oldest queued {day['oldest_seconds']} s ago)")
        out.print(line, markup=False)
        if day["overdue"]:
            out.print(f"overdue: {day['overdue']} queued editions of {day['date']} were not picked up within the visibility "
                      "timeout: the broker may have lost them; `newsletter send --workers celery` (or `run`, every minute) "
                      "re-enqueues lost shards", markup=False)
    if workers:
        table = Table("worker", "shards", "queued (its shards)", "claimed, in flight (sending)", title="Workers")
        for worker in workers:
            table.add_row(cell(worker["owner"]), str(worker["shards"]), str(worker["queued"]), str(worker["sending"]))
        out.print(table)


def print_summary(config: Config, summary, reasons: dict[str, str] | None = None) -> None:
    """The run's summary table and the lines worth reading."""
    table = Table("", "", title="Dry run (nothing sent or recorded)" if summary.dry_run else "Send summary", show_header=False)
    rows = [
        ("subscribers", summary.subscribers),
        ("editions rendered", summary.rendered),
        ("sent", summary.sent),
        ("failed", summary.failed),
        ("already sent earlier", summary.already_sent),
        ("no new papers (no email)", len(summary.empty) - len(summary.notes)),
        ("no new papers (a note saying why)", len(summary.notes)),
        ("suppressed (unsubscribed, bounced)", summary.suppressed),
        ("not a sending day", summary.not_today),
        ("failed earlier (use --retry-failed)", summary.previously_failed),
        ("uncertain: maybe delivered (newsletter status)", summary.uncertain),
        ("held: uncertain or review (send --resend-uncertain)", summary.held),
        ("taken over from a run that stopped (same Message-ID)", summary.taken_over),
        ("claimed by another run", summary.claimed_elsewhere),
    ]
    for label, value in rows:
        if value or label in ("subscribers", "sent"):
            table.add_row(label, str(value))
    out.print(table)
    for email, reply in summary.failures:
        err.print(cell(f"failed: {email}: {reply}", WARNING_CHARS))  # a server's reply may span lines
    for email, reply in summary.uncertain_rows:
        err.print(cell(f"uncertain: {email}: {reply}", WARNING_CHARS))
    noted = set(summary.notes)
    for email in summary.empty:
        if email in noted:
            out.print(f"{email}: no new papers, a short note says why", markup=False)
            continue
        why = (reasons or {}).get(email)
        out.print(f"{email}: no new papers, no email today" + (f": {why}" if why else ""), markup=False)
    if summary.sent:
        from newsletter.delivery import create_backend

        backend = create_backend(config.delivery.backend, config.delivery.backend_options, base_dir=config.base_dir)
        plural = "" if summary.sent == 1 else "s"
        verb = "Sent" if backend.real_mail else "Wrote"
        out.print(f"{verb} {summary.sent} email{plural} to {backend.destination()}", markup=False)
    elif not summary.sent and not summary.dry_run and summary.already_sent:
        out.print("Nothing new to send: every due edition is already in the ledger.")


@app.command()
def status(
    ctx: typer.Context,
    day: Annotated[Optional[str], typer.Option("--date", help="Edition date YYYY-MM-DD (default: all dates).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Ledger counts per state, the failed editions with their reasons, and the next scheduled runs.

    With Celery: the editions queued per date (waiting for a worker, in shards a worker runs, overdue ones the
    broker may have lost) and, per worker, its shards and the editions it holds.
    """
    config = ctx.obj.config()
    edition_day = parse_day(day)
    with open_store(config, read_only=True) as store:
        counts = store.ledger_counts(edition_day)
        problems_rows = store.ledger_rows(edition_date=edition_day, state=[State.FAILED, *HELD])
        sending = store.ledger_rows(edition_date=edition_day, state=State.SENDING)
        groups = store.queue_groups(edition_day)
        next_runs = make_service(config, store).next_runs()
        suppressed = store.suppression_reasons()
    bounced = {email: reason for email, reason in sorted(suppressed.items()) if "bounce" in reason}
    problems = [
        {"email": row.email, "date": row.edition_date.isoformat(), "state": str(row.state), "reply": row.reply, "attempts": row.attempts}
        for row in problems_rows
    ]
    now = datetime.now(timezone.utc)
    claims: dict[tuple[str, str, bool], int] = {}
    for row in sending:
        key = (row.claimed_by or "?", row.edition_date.isoformat(), row.lease_expired(now))
        claims[key] = claims.get(key, 0) + 1
    held_by = [{"owner": owner, "date": when, "editions": n, "lease_expired": expired}
               for (owner, when, expired), n in sorted(claims.items())]
    queued, workers = queue_report(groups, now, config.model.celery.visibility_timeout)
    if as_json:
        print(json.dumps({"date": edition_day.isoformat() if edition_day else None, "counts": counts,
                          "problems": problems, "sending": held_by, "queued": queued, "workers": workers,
                          "next_runs": next_runs, "suppressed": len(suppressed), "bounced": bounced}, indent=2))
        return
    table = Table("state", "editions", title=f"Ledger{' for ' + str(edition_day) if edition_day else ''}")
    for state, count in counts.items():
        table.add_row(state, str(count))
    out.print(table)
    for claim in held_by:
        how = "lease expired: its run stopped; the next send takes them over" if claim["lease_expired"] else "live"
        out.print(f"sending: {claim['editions']} editions of {claim['date']} held by {claim['owner']} ({how})", markup=False)
    print_queue(queued, workers)
    for item in problems:
        out.print(cell(f"{item['state']}: {item['email']} {item['date']}: {item['reply']}", WARNING_CHARS))
    if any(item["state"] != State.FAILED for item in problems):
        out.print("Send uncertain and review editions again with `newsletter send --resend-uncertain EMAIL...` (or --all), "
                  "once you know they did not arrive.")
    out.print(f"{len(suppressed)} addresses suppressed, {len(bounced)} of them for bounces"
              + (" (`newsletter subscribers list` shows why; `subscribers enable` takes one back)" if suppressed else ""))
    for email, reason in list(bounced.items())[:20]:
        out.print(cell(f"bounced: {email}: {reason}", WARNING_CHARS))
    jobs = Table("job", "next run (UTC)", "group", title="Next scheduled runs (`newsletter run`)")
    for job in next_runs:
        group = f"{job['timezone']} {job['send_at']} {','.join(job['days'])} · {job['subscribers']} subscribers" if job["job"] == "send" else job["cron"]
        jobs.add_row(job["job"], job["next_run_utc"], cell(group))
    out.print(jobs)

