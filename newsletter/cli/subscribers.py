"""`subscribers …`: validate and inspect subscriber files; the suppression list."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from newsletter.cli.common import loaded_subscribers, open_store, out, subscribers_app


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
    """Show the subscribers as a table (email, mode, time zone, send time, active or why suppressed, bounces)."""
    config = ctx.obj.config()
    loaded = loaded_subscribers(config)
    with open_store(config) as store:
        suppressed = store.suppression_reasons()
        bounced = store.bounce_counts()
    table = Table("email", "mode", "time zone", "send at", "days", "active", "bounces",
                  title=f"{len(loaded.subscribers)} subscribers")
    for s in loaded.subscribers:
        active = f"suppressed: {suppressed[s.email]}" if s.email in suppressed else ("yes" if s.active else "no")
        days = "every day" if len(s.days) == 7 else ",".join(s.days)
        counts = bounced.get(s.email)
        bounces = f"{counts['hard']} hard, {counts['soft']} soft" if counts else ""
        table.add_row(Text(s.email), s.mode, s.timezone, s.send_at.strftime("%H:%M"), days, Text(active), bounces)
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

