"""`ingest`, `papers` and `fetch`: papers into the store, and out of it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from newsletter.app import embed_libraries, embed_papers, ingest_paths
from newsletter.cli.common import app, cell, err, fail, fetch_app, open_store, out, paper_json, parse_day, warn
from newsletter.config import display_path
from newsletter.sources import FORMATS, MAX_WARNINGS


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files to ingest (default: [sources] inputs).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help=f"auto, {', '.join(FORMATS)}.")] = "auto",
    page_date: Annotated[Optional[str], typer.Option(help="Date of a Hugging Face page dump, for dates shown without a year.")] = None,
) -> None:
    """Parse paper files (Hugging Face pages or API JSON, arXiv Atom, JSON Lines) into the store.

    Then embeds the new papers and the entries of the subscribers' libraries for the similar
    ranking (offline, once each), so that `send` never loads the model.
    Exits 0 when anything was ingested, 1 when a file yielded nothing.
    """
    if format != "auto" and format not in FORMATS:
        fail(f"--format: unknown format {format!r} (choose one of: auto, {', '.join(FORMATS)})", code=2)
    config = ctx.obj.store_config()
    paths = paths or config.input_paths()
    if not paths:
        fail("nothing to ingest: give PATH arguments or set [sources] inputs in the config", code=2)
    with open_store(config) as store:
        results = ingest_paths(store, paths, format=format, page_date=parse_day(page_date, "--page-date") or config.model.sources.page_date,
                               on_warning=warn)
        embed_papers(config, store, on_warning=warn)
        embed_libraries(config, store, on_warning=warn)
    table = Table("file", "format", "parsed", "new", "updated", "skipped", "warnings", title="Ingest")
    for parsed, stats in results:
        table.add_row(cell(display_path(Path(parsed.path))), parsed.format, str(stats.parsed), str(stats.new),
                      str(stats.updated), str(stats.unchanged), f"{parsed.warning_count:,}")
    out.print(table)
    warnings = sum(parsed.warning_count for parsed, _ in results)
    if warnings:
        out.print(f"{warnings:,} warning{'s' if warnings != 1 else ''} in {sum(1 for p, _ in results if p.warnings)} of "
                  f"{len(results)} files (at most {MAX_WARNINGS} shown per file)")
    if any(not parsed.papers for parsed, _ in results):
        raise typer.Exit(1)



@app.command()
def papers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")] = False,
    since: Annotated[Optional[str], typer.Option(help="Only papers dated on or after YYYY-MM-DD.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most this many papers.")] = None,
) -> None:
    """List the papers in the store, newest first."""
    config = ctx.obj.store_config()
    with open_store(config, read_only=True) as store:
        found = store.papers(since=parse_day(since, "--since"), limit=limit)
    if as_json:
        for paper in found:
            sys.stdout.write(json.dumps(paper_json(paper), ensure_ascii=False) + "\n")
        return
    table = Table("published", "upvotes", "id", "title", title=f"{len(found)} papers")
    for paper in found:
        table.add_row(str(paper.published or ""), "" if paper.upvotes is None else str(paper.upvotes), cell(paper.id), cell(paper.title))
    out.print(table)



def _ingest_fetched(ctx: typer.Context, source: str, fetcher) -> None:
    """Fetch, note how it went (an empty day's note tells a reader when fetching fails), ingest."""
    from newsletter.sources.fetch import FetchError

    config = ctx.obj.config()
    try:
        with err.status("fetching…"):
            parsed = fetcher()
    except (FetchError, ValueError) as error:
        with open_store(config) as store:
            store.record_fetch(source, error=str(error))
        fail(str(error))
    for warning in parsed.warnings:
        warn(warning)
    with open_store(config) as store:
        stats = store.add_papers(parsed.papers)
        store.record_fetch(source)
        embed_papers(config, store, on_warning=warn)
        embed_libraries(config, store, on_warning=warn)
    out.print(f"{parsed.path}: {stats.parsed} papers ({stats.new} new, {stats.updated} updated)")


@fetch_app.command("hf")
def fetch_hf(ctx: typer.Context, day: Annotated[Optional[str], typer.Option("--date", help="Daily papers date YYYY-MM-DD (default: today, UTC).")] = None) -> None:
    """Fetch the Hugging Face daily papers for a date and ingest them (weekends have none)."""
    from datetime import datetime, timezone

    from newsletter.sources.fetch import fetch_hf_daily

    when = parse_day(day) or datetime.now(timezone.utc).date()
    _ingest_fetched(ctx, "hf", lambda: fetch_hf_daily(when))


@fetch_app.command("arxiv")
def fetch_arxiv(ctx: typer.Context, category: Annotated[str, typer.Option(help="arXiv category, e.g. cs.LG.")]) -> None:
    """Fetch today's arXiv listing for a category and ingest it."""
    from newsletter.sources.fetch import fetch_arxiv_listing

    _ingest_fetched(ctx, f"arxiv:{category}", lambda: fetch_arxiv_listing(category))
