"""What every command group shares: the consoles, the global options, one-line failures.

Data is never printed as Rich markup: both consoles have markup and emoji codes
off, so a title like `[/bold]` prints as written, and table cells go in as
`Text` through `cell` (control characters removed, long values cut).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import ProgressColumn
from rich.text import Text

from newsletter.config import DEFAULT_CONFIG, Config, ConfigError, SubscriberList, display_path, load_config, load_subscribers
from newsletter.display import shown
from newsletter.store import Store

CELL_CHARS = 200      # a table cell (`papers --json` gives whole values)
WARNING_CHARS = 1000  # one warning or error line

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

out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)  # one problem, one line


def cell(value: object, limit: int | None = CELL_CHARS) -> Text:
    """A table cell holding data: plain text (never markup), one line, cut to `limit`."""
    return Text(shown(value, limit))


def warn(message: str) -> None:
    """One warning line on stderr; the message is data, never markup."""
    err.print(Text.assemble(("warning:", "yellow"), " ", shown(message, WARNING_CHARS)))


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


    def store_config(self) -> Config:
        """The config for commands that need only the store (`ingest`, `papers`): with --db and no
        config file, defaults stand in for it (no inputs, no page date)."""
        if self.db is not None and not self.config_path.exists():
            from newsletter.config import ConfigModel, NewsletterSection

            placeholder = NewsletterSection(sender="newsletter@localhost", base_url="http://127.0.0.1")
            return Config(path=self.config_path.resolve(), model=ConfigModel(newsletter=placeholder), db_override=self.db)
        return self.config()


def fail(problems: list[str] | str, code: int = 1):
    """Print problems to stderr (one per line) and exit."""
    for line in [problems] if isinstance(problems, str) else problems:
        err.print(Text(shown(line, WARNING_CHARS)))
    raise typer.Exit(code)


@contextmanager
def open_store(config: Config, *, read_only: bool = False) -> Iterator[Store]:
    """The store for one command; `read_only` for commands that only look (they work on a read-only file
    or volume and never migrate). A damaged, empty or read-only store is one line and exit 2, not a traceback."""
    from newsletter.store.engine import StoreError, sqlite_file, store_problem

    url, path = config.store_url, sqlite_file(config.store_url)
    if read_only and path is not None and not path.exists():
        warn(f"{path}: no store yet (nothing ingested or sent); showing an empty one")
        url = "sqlite://"
    try:
        store = Store(url, read_only=read_only and url != "sqlite://")
    except StoreError as error:
        fail(str(error), code=2)
    except Exception as error:  # a store that cannot be opened is a user-facing problem, not a traceback
        from sqlalchemy.engine import make_url

        shown = make_url(config.store_url).render_as_string(hide_password=True)
        fail(store_problem(config.store_url, error) or f"{shown}: cannot open the store: {_first_line(error)}", code=2)
    try:
        yield store
    except Exception as error:
        problem = store_problem(config.store_url, error)
        if problem is None:
            raise
        fail(problem, code=2)
    finally:
        store.close()


def _first_line(error: BaseException) -> str:
    """An exception's message without SQLAlchemy's SQL echo and background link."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def report_subscriber_problems(loaded: SubscriberList) -> None:
    for problem in loaded.problems:
        warn(problem)


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
DbOption = Annotated[Optional[Path], typer.Option("--db", help="SQLite store file, overriding [store] path; "
                                                   "`ingest` and `papers` need no config file with it.")]
DateOption = Annotated[Optional[str], typer.Option("--date", help="Edition date YYYY-MM-DD (default: each subscriber's local today).")]


def _print_version(value: bool) -> None:
    if value:
        from newsletter import __version__

        out.print(f"newsletter {__version__}")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")]


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None, version: VersionOption = False) -> None:
    ctx.obj = Options(config_path=config, db=db)


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



def email_argument(value: str) -> str:
    """An address given on the command line, lower-cased; exit 2 with one line if it is not one."""
    from pydantic import TypeAdapter, ValidationError
    from pydantic.networks import EmailStr

    try:
        return TypeAdapter(EmailStr).validate_python(value.strip()).lower()
    except ValidationError:
        fail(f"{value!r}: not an email address", code=2)


def loaded_subscribers(
    config: Config, *, quiet: bool = False, must_exist: bool = True, store: Store | None = None
) -> SubscriberList:
    """The subscriber files (one naming a template that does not exist is skipped), problems reported
    unless `quiet`; exit 2 when the folder is missing (`must_exist`); with a `store`, unchanged files
    come from its cache."""
    from newsletter.render import template_names

    loaded = load_subscribers(config.subscribers_dir, templates=template_names(config.templates_dir), cache=store)
    if loaded.missing_dir and must_exist:
        fail(f"{display_path(config.subscribers_dir)}: subscriber folder not found (create it with "
             "`newsletter subscribers add EMAIL`, or set [subscribers] dir in the config)", code=2)
    if not quiet:
        report_subscriber_problems(loaded)
    return loaded



def find_subscriber(config: Config, email: str, loaded: SubscriberList | None = None):
    """The subscriber with this address, or exit 2 with one line."""
    loaded = loaded or loaded_subscribers(config)
    subscriber = loaded.find(email)
    if subscriber is None:
        fail(f"{email}: no such subscriber in {display_path(config.subscribers_dir)}", code=2)
    return subscriber


def builder_for(config: Config, store: Store):
    from newsletter.dkim_signing import DkimError
    from newsletter.pipeline import EditionBuilder, MissingSecret

    try:
        return EditionBuilder(config, store)
    except (MissingSecret, DkimError) as error:
        fail(str(error), code=2)



def require_signing_key(config: Config, *, public: bool = False) -> None:
    """Exit 2 now, before any work, when the unsubscribe key (real mail, or `public`: the endpoint) or the
    DKIM key a process needs is missing."""
    from newsletter.dkim_signing import DkimError, Signer
    from newsletter.pipeline import MissingSecret, signing_key

    try:
        signing_key(config, public=public)
        if not public:
            Signer.from_config(config)
    except (MissingSecret, DkimError) as error:
        fail(str(error), code=2)
