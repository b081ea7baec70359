"""`subscribers …`: validate and inspect subscriber files; the suppression list."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from newsletter.app import add_subscriber, remove_subscriber
from newsletter.cli.common import (
    WARNING_CHARS,
    app,
    cell,
    email_argument,
    fail,
    loaded_subscribers,
    open_store,
    out,
    subscribers_app,
)
from newsletter.config import ConfigError, display_path


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    name: Annotated[Optional[str], typer.Option(help="Their name, for the greeting and the To: header.")] = None,
    timezone: Annotated[Optional[str], typer.Option(help="IANA time zone, e.g. Europe/London (default UTC).")] = None,
    send_at: Annotated[Optional[str], typer.Option(help="Local send time HH:MM (default 07:30).")] = None,
    days: Annotated[Optional[str], typer.Option(help="Sending days, e.g. mon,tue,wed,thu,fri (default every day).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="trending, keywords or mixed (default: keywords when --keyword is given, else trending).")] = None,
    keyword: Annotated[Optional[list[str]], typer.Option("--keyword", "-k", help='A keyword; repeat it. "a phrase", "-exclusion", "term^2".')] = None,
    max_items: Annotated[Optional[int], typer.Option(help="At most this many papers an edition (default 10).")] = None,
) -> None:
    """Write a subscriber file (validated as loading validates it); refuses an address that is already subscribed.

    The file is ordinary TOML in [subscribers] dir: edit it by hand afterwards if you like.
    """
    config = ctx.obj.config()
    fields: dict = {"email": email}
    if mode is None and keyword:
        mode = "keywords"
    given = {"name": name, "timezone": timezone, "send_at": send_at, "mode": mode, "keywords": keyword, "max_items": max_items,
             "days": [day.strip() for day in days.split(",") if day.strip()] if days is not None else None}
    fields.update((key, value) for key, value in given.items() if value is not None)
    try:
        path = add_subscriber(config.subscribers_dir, fields)
    except ConfigError as error:
        fail(error.problems, code=2)
    address = email.strip().lower()
    out.print(f"Added {address} in {display_path(path)} (mode {fields.get('mode', 'trending')}); "
              f"`newsletter select --subscriber {address}` shows what they would get", markup=False)


@subscribers_app.command("remove")
def subscribers_remove(ctx: typer.Context, email: str) -> None:
    """Delete the subscriber's file: no more editions. The ledger keeps what was sent.

    To pause someone instead, set `active = false` in their file; to stop mail to an
    address whatever the files say, `subscribers disable EMAIL`.
    """
    config = ctx.obj.config()
    address = email_argument(email)
    loaded = loaded_subscribers(config, quiet=True)
    if loaded.missing_dir:
        fail(loaded.problems, code=2)
    path = remove_subscriber(config.subscribers_dir, address)
    if path is None:
        fail(f"{address}: no such subscriber in {display_path(config.subscribers_dir)}", code=2)
    out.print(f"Deleted {display_path(path)}: {address} gets no more editions (the ledger keeps what was sent)", markup=False)


@subscribers_app.command("check")
def subscribers_check(ctx: typer.Context) -> None:
    """Validate every subscriber file and library and compile each template they use; list all problems, exit 1 if any.

    A library entry that cannot be used (no title, broken syntax, a .txt line not in the store)
    is a problem too, reported as `file:line: problem`; the rest of that library is still used.
    """
    from newsletter.config import display_path
    from newsletter.library import LibraryCache, LibraryError

    config = ctx.obj.config()
    loaded = loaded_subscribers(config, quiet=True)
    problems = list(loaded.problems)
    compiled = template_problems(config, {s.template for s in loaded.subscribers})
    ok = 0
    for subscriber in loaded.subscribers:
        if compiled[subscriber.template]:
            problems.append(f"{loaded.files[subscriber.email]}: template: {compiled[subscriber.template]}")
        else:
            ok += 1
    libraries = sorted({s.library for s in loaded.subscribers if s.library is not None})
    if libraries:
        with open_store(config) as store:
            cache = LibraryCache(store)
            for path in libraries:
                try:
                    library = cache.get(path)
                except LibraryError as error:
                    problems.append(str(error))
                    continue
                problems.extend(library.problems)
                if not library.items:
                    problems.append(f"{display_path(path)}: no usable entries")
    for problem in problems:
        out.print(cell(problem, WARNING_CHARS))
    out.print(f"{ok} subscribers ok, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


def template_problems(config, names: set[str]) -> dict[str, str | None]:
    """Each template name -> why it does not compile (None when it does)."""
    from newsletter.render import Renderer, RenderSettings

    renderer = Renderer(RenderSettings(newsletter_name=config.newsletter.name, base_url=config.newsletter.base_url,
                                       templates_dir=config.templates_dir))
    return {name: renderer.check(name) for name in sorted(names)}


@subscribers_app.command("list")
def subscribers_list(ctx: typer.Context) -> None:
    """Show the subscribers as a table (email, mode, time zone, send time, active or why suppressed, bounces)."""
    config = ctx.obj.config()
    loaded = loaded_subscribers(config)
    with open_store(config, read_only=True) as store:
        suppressed = store.suppression_reasons()
        bounced = store.bounce_counts()
    table = Table("email", "mode", "time zone", "send at", "days", "active", "bounces",
                  title=f"{len(loaded.subscribers)} subscribers")
    for s in loaded.subscribers:
        reason = suppressed.get(s.email)
        if reason is not None:
            active = f"suppressed: {reason}" if "bounce" in reason else f"unsubscribed ({reason})"
        else:
            active = "yes" if s.active else "no"
        days = "every day" if len(s.days) == 7 else ",".join(s.days)
        counts = bounced.get(s.email)
        bounces = f"{counts['hard']} hard, {counts['soft']} soft" if counts else ""
        table.add_row(cell(s.email), s.mode, cell(s.timezone), s.send_at.strftime("%H:%M"), days, Text(active), bounces)
    out.print(table)


@subscribers_app.command("enable")
def subscribers_enable(ctx: typer.Context, email: str) -> None:
    """Take an address off the suppression list, so it receives editions again."""
    email = email_argument(email)
    config = ctx.obj.config()
    with open_store(config) as store:
        changed = store.unsuppress(email)
    out.print(f"{email}: {'re-enabled' if changed else 'was not suppressed'}", markup=False)


@subscribers_app.command("disable")
def subscribers_disable(ctx: typer.Context, email: str) -> None:
    """Put an address on the suppression list (as an unsubscribe would)."""
    email = email_argument(email)
    config = ctx.obj.config()
    with open_store(config) as store:
        changed = store.suppress(email, reason="disabled by operator")
    out.print(f"{email}: {'suppressed' if changed else 'was already suppressed'}", markup=False)


@app.command("feedback")
def feedback_cmd(ctx: typer.Context, email: str) -> None:
    """List a subscriber's "more like this" / "fewer like this" clicks, oldest first.

    "more" papers join the profile's examples from the next edition on (a keyword or
    trending profile then gets a share of similar picks); "fewer" papers count against.
    """
    from rich.text import Text

    config = ctx.obj.config()
    with open_store(config) as store:
        clicks = store.feedback([email]).get(email.strip().lower(), [])
        papers = store.get_papers({click.paper_id for click in clicks})
    table = Table("when (UTC)", "choice", "paper", "title", title=f"{email}: {len(clicks)} feedback")
    for click in clicks:
        paper = papers.get(click.paper_id)
        table.add_row(click.created_at.strftime("%Y-%m-%d %H:%M"), "more like this" if click.kind == "more" else "fewer like this",
                      Text(click.paper_id), Text(paper.title if paper else "(no longer in the store)"))
    out.print(table)
