"""`subscribers …`: validate and inspect subscriber files; the suppression list."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from newsletter.cli.common import WARNING_CHARS, cell, loaded_subscribers, open_store, out, subscribers_app


@subscribers_app.command("check")
def subscribers_check(ctx: typer.Context) -> None:
    """Validate every subscriber file and compile each template they use; list all problems, exit 1 if any."""
    config = ctx.obj.config()
    loaded = loaded_subscribers(config, quiet=True)
    problems = list(loaded.problems)
    compiled = template_problems(config, {s.template for s in loaded.subscribers})
    ok = 0
    for subscriber in loaded.subscribers:
        if compiled[subscriber.template]:
            problems.append(f"{subscriber.email}: template: {compiled[subscriber.template]}")
        else:
            ok += 1
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
        active = f"suppressed: {suppressed[s.email]}" if s.email in suppressed else ("yes" if s.active else "no")
        days = "every day" if len(s.days) == 7 else ",".join(s.days)
        counts = bounced.get(s.email)
        bounces = f"{counts['hard']} hard, {counts['soft']} soft" if counts else ""
        table.add_row(cell(s.email), s.mode, cell(s.timezone), s.send_at.strftime("%H:%M"), days, Text(active), bounces)
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

