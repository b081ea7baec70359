"""Configuration and subscriber files: TOML validated by pydantic.

Every problem a user can make in these files is reported as one line,
`file: field: problem` (or `file:line: problem` for TOML syntax), never as a
traceback. Relative paths resolve against the config file's directory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from newsletter.models import Subscriber

DEFAULT_CONFIG = Path("config.toml")
INSECURE_DEV_KEY = b"newsletter-insecure-development-key"  # only for backends that deliver no real mail, and the preview
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # an environment variable's name; a password rarely looks like one
LIST_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


class ConfigError(Exception):
    """A user file is wrong; `problems` holds one `file: field: problem` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewsletterSection(_Section):
    name: str = "Papers digest"
    sender: str = Field(alias="from")
    base_url: str
    address: str = ""
    secret_env: str = "NEWSLETTER_SECRET"
    logo_url: str = ""  # shown in the masthead, 32 x 32 px
    accent_color: str = "#0b57d0"  # the masthead rule, the newsletter's name and the paper links
    list_id: str | None = None  # List-Id; default: the From address as `local.domain`
    unsubscribe_mailto: str | None = None  # an address also offered in List-Unsubscribe
    feedback_id: str | None = None  # Feedback-ID header for Gmail's feedback loop, e.g. "digest:papers"

    @field_validator("logo_url")
    @classmethod
    def _logo_is_web(cls, value: str) -> str:
        if value and not re.match(r"https?://[^\s/]+\S*$", value):
            raise ValueError(f"expected an http(s) URL of an image, got {value!r}")
        return value

    @field_validator("accent_color")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", value):
            raise ValueError(f"expected a colour like \"#0b57d0\", got {value!r}")
        return value

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().removeprefix("<").removesuffix(">")
        if not LIST_ID.fullmatch(value):
            raise ValueError(f"expected a dotted name like 'papers.example.org' (RFC 2919), got {value!r}")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().removeprefix("mailto:")
        if not re.fullmatch(r"[^\s@<>,;\"?]+@[^\s@<>,;\"?]+", value):
            raise ValueError(f"expected a plain address like 'unsubscribe@example.org', got {value!r}")
        return value

    @field_validator("feedback_id")
    @classmethod
    def _feedback_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value):
            raise ValueError(f"expected printable ASCII without spaces, like 'digest:papers', got {value!r}")
        return value

    @field_validator("sender")
    @classmethod
    def _has_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError(f"expected an address like 'Papers <papers@example.org>', got {value!r}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @functools.cached_property  # parsed once: every message asks for these
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    @functools.cached_property
    def domain(self) -> str:
        return self.sender_address.rpartition("@")[2]

    @functools.cached_property
    def list_identifier(self) -> str:
        """The List-Id value without brackets: configured, or `papers.example.org` for papers@example.org."""
        if self.list_id:
            return self.list_id
        local, _, domain = self.sender_address.rpartition("@")
        local = re.sub(r"[^A-Za-z0-9-]+", "-", local).strip("-")
        return f"{local}.{domain}" if local else domain


class DkimSection(_Section):
    """DKIM signing of every message (see the README, "DKIM and DNS"); the key type picks RSA or Ed25519."""

    domain: str
    selector: str
    private_key_file: Path | None = None
    private_key_env: str | None = None

    @field_validator("domain", "selector")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not LIST_ID.fullmatch(value) and not re.fullmatch(r"[a-z0-9_-]+", value):
            raise ValueError(f"expected a DNS name, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> DkimSection:
        if (self.private_key_file is None) == (self.private_key_env is None):
            raise ValueError("set exactly one of private_key_file (a PEM file) or private_key_env (a variable holding the PEM)")
        return self


class StoreSection(_Section):
    path: Path = Path("newsletter.db")
    url: str | None = None


class SourcesSection(_Section):
    inputs: list[str] = Field(default_factory=list)
    fetch: list[str] = Field(default_factory=list)
    page_date: date | None = None

    @field_validator("fetch")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if source != "hf" and not re.fullmatch(r"arxiv:[\w.-]+", source):
                raise ValueError(f"unknown source {source!r} (use \"hf\" or \"arxiv:<category>\", e.g. \"arxiv:cs.LG\")")
        return value


class SubscribersSection(_Section):
    dir: Path = Path("subscribers")


class RenderSection(_Section):
    templates_dir: Path | None = None
    subject: str = ""  # empty: natural subjects ("Trending today: <top title> and 7 more"); else a format string
    language: str = "en"


class SummariesSection(_Section):
    """One-sentence TL;DRs from an OpenAI-compatible chat endpoint; off while `endpoint` is empty."""

    endpoint: str = ""  # e.g. "http://127.0.0.1:8080/v1" (…/chat/completions is added) or the full URL
    model: str = ""
    api_key_env: str = ""  # the NAME of the variable holding the API key; empty: no Authorization header
    timeout: float = Field(default=20.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if value and not re.match(r"https?://[^\s/]+", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _model_named(self) -> SummariesSection:
        if self.endpoint and not self.model:
            raise ValueError("model: name the model the endpoint should use")
        return self

class SelectionSection(_Section):
    """How "similar" profiles rank papers (see the README, "Papers like your library")."""

    embedder: str = "wordllama"  # or "sentence-transformers:/path/to/model", "model2vec:/path/to/model"

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str) -> str:
        kind, _, path = value.partition(":")
        if not ((kind == "wordllama" and not path) or (kind in ("sentence-transformers", "model2vec") and path)):
            raise ValueError(
                f"unknown embedder {value!r} (use \"wordllama\", \"sentence-transformers:/path/to/model\" or \"model2vec:/path/to/model\")"
            )
        return value


class ScheduleSection(_Section):
    fetch: str | None = "0 */3 * * *"
    catch_up_hours: float = Field(default=6.0, ge=0)
    misfire_grace_time: int = Field(default=3600, ge=1)
    skip_empty: bool = True
    shutdown_timeout: float = Field(default=60.0, gt=0)
    reload_minutes: float = Field(default=5.0, gt=0)

    @field_validator("fetch")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        from apscheduler.triggers.cron import CronTrigger

        if value:
            try:
                CronTrigger.from_crontab(value)
            except ValueError as error:
                raise ValueError(f"{value!r} is not a crontab line (minute hour day month weekday): {error}") from None
        return value or None


class BouncesSection(_Section):
    """Where delivery status notifications arrive (see the README, "Bounces"), and when to suppress."""

    source: Literal["imap", "maildir", "mbox"] = "imap"
    path: Path | None = None  # the Maildir folder or mbox file
    host: str = "localhost"
    port: int | None = None  # default: 993 with ssl, else 143
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str | None = None
    password_env: str | None = None  # the NAME of the variable holding the IMAP password
    folder: str = "INBOX"
    timeout: float = Field(default=30.0, gt=0)
    soft_limit: int = Field(default=3, ge=1)  # soft-bounced editions in a row before an address is suppressed
    poll: str | None = None  # crontab (UTC) for `newsletter run` to read bounces; unset: only `newsletter bounces`

    @field_validator("poll")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        return ScheduleSection._crontab(value)

    @model_validator(mode="after")
    def _where(self) -> BouncesSection:
        if self.source != "imap" and self.path is None:
            raise ValueError(f"source = {self.source!r} needs path (the {'Maildir folder' if self.source == 'maildir' else 'mbox file'})")
        if self.port is None:
            self.port = 993 if self.security == "ssl" else 143
        return self


class DeliverySection(BaseModel):
    """`backend` names the backend; `[delivery.<name>]` tables hold each backend's options."""

    model_config = ConfigDict(extra="allow")

    backend: str = "file"
    chunk_size: int = Field(default=200, ge=1)
    executor: Literal["local", "celery"] = "local"  # celery: `send` and `run` enqueue shards for `newsletter worker`
    # how long a run's claim on its editions holds without its heartbeat (renewed every quarter of it)
    lease_seconds: float = Field(default=60.0, ge=1)
    processes: int | None = Field(default=None, ge=1)  # local send: worker processes (None: one per core)

    @property
    def backend_options(self) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(self.backend, {}))


class CelerySection(_Section):
    """Scaling out with Celery workers (see the README, "Scaling out"); NEWSLETTER_BROKER_URL overrides broker_url."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    shard_size: int | None = Field(default=None, ge=1)  # None: from the number of editions (see workers.shard_size)
    lease_seconds: float = Field(default=30.0, gt=0)  # renewed by each worker's heartbeat (every quarter of it)
    # default: twice the lease, at least 60 s; it is how long a dead worker's shard waits in Redis
    visibility_timeout: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _visibility_outlasts_lease(self) -> CelerySection:
        if self.visibility_timeout is None:
            self.visibility_timeout = max(60.0, 2 * self.lease_seconds)
        if self.visibility_timeout <= self.lease_seconds:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout:g} s) must be longer than lease_seconds "
                f"({self.lease_seconds:g} s): a shard takes longer than one of its chunks"
            )
        return self


class ConfigModel(_Section):
    newsletter: NewsletterSection
    store: StoreSection = Field(default_factory=StoreSection)
    sources: SourcesSection = Field(default_factory=SourcesSection)
    subscribers: SubscribersSection = Field(default_factory=SubscribersSection)
    delivery: DeliverySection = Field(default_factory=DeliverySection)
    render: RenderSection = Field(default_factory=RenderSection)
    summaries: SummariesSection = Field(default_factory=SummariesSection)
    selection: SelectionSection = Field(default_factory=SelectionSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    celery: CelerySection = Field(default_factory=CelerySection)
    dkim: DkimSection | None = None
    bounces: BouncesSection | None = None

    @model_validator(mode="after")
    def _dkim_aligned(self) -> ConfigModel:
        if self.dkim is not None:
            domain, signing = self.newsletter.domain.lower(), self.dkim.domain
            if domain != signing and not domain.endswith("." + signing):
                raise ValueError(
                    f"dkim.domain {signing!r} does not align with the From domain {domain!r}: "
                    "DMARC passes only when it is the From domain or a parent of it"
                )
        return self


@dataclass
class Config:
    """The validated configuration plus where it came from."""

    path: Path
    model: ConfigModel
    db_override: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, path: Path | str) -> Path:
        """A path from the config file, made absolute against the config's directory."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def newsletter(self) -> NewsletterSection:
        return self.model.newsletter

    @property
    def delivery(self) -> DeliverySection:
        return self.model.delivery

    @property
    def store_url(self) -> str:
        """SQLAlchemy URL of the store: `--db` wins, then `[store] url`, then `[store] path`."""
        if self.db_override is not None:
            return f"sqlite:///{self.db_override.resolve()}"
        if self.model.store.url:
            return self.model.store.url
        return f"sqlite:///{self.resolve(self.model.store.path)}"

    @property
    def subscribers_dir(self) -> Path:
        return self.resolve(self.model.subscribers.dir)

    @property
    def dkim(self) -> DkimSection | None:
        return self.model.dkim

    @property
    def templates_dir(self) -> Path | None:
        directory = self.model.render.templates_dir
        return self.resolve(directory) if directory else None

    def input_paths(self) -> list[Path]:
        """`[sources] inputs` expanded: globs relative to the config directory, sorted."""
        paths: list[Path] = []
        for pattern in self.model.sources.inputs:
            resolved = self.resolve(pattern)
            if any(ch in pattern for ch in "*?["):
                anchor = Path(resolved.anchor)
                paths.extend(sorted(anchor.glob(str(resolved.relative_to(anchor)))))
            else:
                paths.append(resolved)
        return paths

    @property
    def lock_path(self) -> Path:
        """The single-instance lock file of `newsletter run`: next to the SQLite store."""
        if self.store_url.startswith("sqlite:///"):
            return Path(self.store_url.removeprefix("sqlite:///") + ".lock")
        return self.base_dir / "newsletter.lock"

    def secret_key(self) -> bytes | None:
        """The unsubscribe signing key from the environment variable named in config, if set."""
        value = os.environ.get(self.newsletter.secret_env)
        return value.encode("utf-8") if value else None


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory where possible."""
    try:
        return str(Path(os.path.relpath(path)))
    except ValueError:
        return str(path)


def _toml_problem(shown: str, error: tomllib.TOMLDecodeError) -> str:
    message = str(error)
    match = re.search(r"\(at line (\d+), column \d+\)$", message)
    if match:
        return f"{shown}:{match[1]}: {message[: match.start()].strip()}"
    return f"{shown}: {message}"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, raising ConfigError with `file:line: problem` when it cannot."""
    shown = display_path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{shown}: file not found"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([_toml_problem(shown, error)]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{shown}: cannot read: {error}"]) from None


def validation_problems(shown: str, error: ValidationError, prefix: str = "") -> list[str]:
    """pydantic errors as `file: dotted.field: message` lines."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{shown}: {where or '(top level)'}: {message}")
    return problems


def load_config(path: Path | str = DEFAULT_CONFIG, *, db: Path | None = None) -> Config:
    """Read and validate the config file, including the chosen backend's options."""
    path = Path(path)
    shown = display_path(path)
    if not path.exists():
        hint = " (pass --config PATH, or copy config.example.toml to config.toml)" if path == DEFAULT_CONFIG else ""
        raise ConfigError([f"{shown}: file not found{hint}"])
    try:
        model = ConfigModel.model_validate(read_toml(path))
    except ValidationError as error:
        raise ConfigError(validation_problems(shown, error)) from None
    config = Config(path=path.resolve(), model=model, db_override=db)
    _check_backend(config, shown)
    return config


def _check_backend(config: Config, shown: str) -> None:
    from newsletter.delivery import UnknownBackend, get_backend_class

    name = config.delivery.backend
    for table, options in (config.delivery.model_extra or {}).items():  # a password pasted into any backend's table
        for key, value in (options.items() if isinstance(options, dict) else ()):
            if key.endswith("_env") and isinstance(value, str) and not ENV_NAME.fullmatch(value):
                raise ConfigError([f"{shown}: delivery.{table}.{key}: must be the name of an environment variable "
                                   "(upper case, e.g. SMTP_PASSWORD), not the secret itself"])
    try:
        backend_class = get_backend_class(name)
    except UnknownBackend as error:
        raise ConfigError([f"{shown}: delivery.backend: {error}"]) from None
    try:
        backend_class.Settings.model_validate(config.delivery.backend_options)
    except ValidationError as error:
        raise ConfigError(validation_problems(shown, error, prefix=f"delivery.{name}")) from None


@dataclass
class SubscriberList:
    """The subscribers that loaded, and one problem line per file that did not."""

    subscribers: list[Subscriber] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # email -> the file it came from, as shown
    names: dict[str, str] = field(default_factory=dict)  # email -> the name of the file it came from
    directory: Path = Path()
    missing_dir: bool = False

    @property
    def paths(self) -> dict[str, Path]:
        """email -> the file it came from (made when asked: a big send never needs them)."""
        return {email: self.directory / name for email, name in self.names.items()}

    def find(self, email: str) -> Subscriber | None:
        email = email.strip().lower()
        return next((s for s in self.subscribers if s.email == email), None)


class SubscriberCache(Protocol):
    """Where parsed subscriber files are kept between runs (the store: see store/subscriber_files.py)."""

    def subscriber_files(self, directory: str) -> dict[str, tuple[int, int, str, str]]: ...

    def save_subscriber_files(self, directory: str, rows: list[dict], keep: set[str]) -> None: ...


SUBSCRIBER_FIELDS = tuple(Subscriber.model_fields)  # a cached row holds their values as a JSON array, in this order


@functools.cache
def subscriber_shape() -> str:
    """A digest of what validated a cached subscriber: the code of the model, of the keyword parser and of
    this module (which writes the rows), and pydantic's version; a file cached by another version is read again.

    Taken from the source, not from the model's JSON schema: that would build the model's validator (and
    import email-validator) in every run, while a run that finds every file cached validates nothing.
    """
    import pydantic

    from newsletter import keywords, models

    digest = hashlib.sha256(f"{pydantic.VERSION} {SUBSCRIBER_FIELDS}".encode())
    for module in (models, keywords, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _cached_row(subscriber: Subscriber) -> str:
    """The cached form of a validated subscriber: its fields' values, in SUBSCRIBER_FIELDS order."""
    return json.dumps(list(subscriber.model_dump(mode="json").values()), separators=(",", ":"))


@functools.cache
def _blank_subscriber() -> Subscriber:
    return Subscriber.model_construct(email="")


def _cached_subscribers(rows: list[str]) -> list[Subscriber] | None:
    """Subscribers validated when their files were cached, rebuilt without validating again (the fields
    JSON does not hold as such are made again: a time, a path); None when a row is damaged.

    One `json.loads` for all the rows (a call per row costs more than the decoding), and a copy of one
    blank model per row, updated with its fields (`model_copy` validates nothing, unlike the constructor).
    """
    blank = _blank_subscriber()
    subscribers = []
    try:
        for values in json.loads(f"[{','.join(rows)}]"):
            if len(values) != len(SUBSCRIBER_FIELDS):
                return None
            fields = dict(zip(SUBSCRIBER_FIELDS, values))
            fields["send_at"] = time.fromisoformat(fields["send_at"])
            if fields["library"] is not None:
                fields["library"] = Path(fields["library"])
            subscribers.append(blank.model_copy(update=fields))
    except (ValueError, TypeError):
        return None
    return subscribers


def parse_subscriber(data: dict[str, Any], shown: str) -> Subscriber:
    """One subscriber's fields, validated as a subscriber file is; ConfigError with `file: field: problem` lines."""
    from newsletter.keywords import parse_keywords

    try:
        subscriber = Subscriber.model_validate(data)
        parse_keywords(list(subscriber.keywords))
    except ValidationError as error:
        raise ConfigError(validation_problems(shown, error)) from None
    except ValueError as error:
        raise ConfigError([f"{shown}: keywords: {error}"]) from None
    return subscriber


def load_subscribers(
    directory: Path, *, templates: list[str] | None = None, cache: SubscriberCache | None = None
) -> SubscriberList:
    """Read every `*.toml` in `directory`; a broken file is reported and skipped, the rest load.

    With `templates` (see `render.template_names`), a subscriber naming a template not
    among them is a broken file too: one line, skipped, not a failure at send time.
    With a `cache`, a file whose path, size and modification time match the cached
    copy is not parsed again (a broken file is never cached: it is reported every time).
    """
    from newsletter.render import unknown_template

    result = SubscriberList(directory=directory)
    if not directory.is_dir():
        result.problems.append(f"{display_path(directory)}: subscriber directory not found")
        result.missing_dir = True
        return result
    root = directory.resolve()
    key = str(root)
    cached = cache.subscriber_files(key) if cache is not None else {}
    shape = subscriber_shape() if cache is not None else ""
    with os.scandir(root) as scan:
        files = sorted((entry for entry in scan if entry.name.endswith(".toml") and not entry.is_dir()), key=lambda e: e.name)
    # the files whose cached copy is current (the same path, size and modification time) are rebuilt together
    present: set[str] = set()
    checked: list[tuple[os.DirEntry, os.stat_result | OSError, bool]] = []  # each file, its stat, whether cached
    hits: list[str] = []
    for entry in files:
        try:
            stat = entry.stat()
        except OSError as error:
            checked.append((entry, error, False))
            continue
        name = f"{key}/{entry.name}"
        present.add(name)
        hit = cached.get(name)
        current = hit is not None and hit[:3] == (stat.st_size, stat.st_mtime_ns, shape)
        if current:
            hits.append(hit[3])
        checked.append((entry, stat, current))
    rebuilt = iter((_cached_subscribers(hits) or []) if hits else [])  # damaged rows: every file is read again
    fresh: list[dict] = []
    first_file_of = result.files
    shown_dir = display_path(directory)  # once: each file is shown as this folder and its name
    prefix = "" if shown_dir == "." else os.path.join(shown_dir, "")
    for entry, stat, current in checked:
        shown = prefix + entry.name
        if isinstance(stat, OSError):
            result.problems.append(f"{shown}: cannot read: {stat}")
            continue
        subscriber = next(rebuilt, None) if current else None
        if subscriber is None:
            try:
                subscriber = parse_subscriber(read_toml(directory / entry.name), shown)
            except ConfigError as error:
                result.problems.extend(error.problems)
                continue
            if cache is not None:
                fresh.append({"path": f"{key}/{entry.name}", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                              "shape": shape, "subscriber": _cached_row(subscriber)})
        if templates is not None and (problem := unknown_template(subscriber.template, templates)):
            result.problems.append(f"{shown}: template: {problem}")
            continue
        if subscriber.library is not None:
            library = subscriber.library.expanduser()
            library = library if library.is_absolute() else directory / library
            if not library.is_file():
                result.problems.append(f"{shown}: library: file not found: {display_path(library)}")
                continue
            subscriber = subscriber.model_copy(update={"library": library.resolve()})
        if subscriber.email in first_file_of:
            result.problems.append(
                f"{shown}: email: duplicate address {subscriber.email} "
                f"(already in {first_file_of[subscriber.email]})"
            )
            continue
        first_file_of[subscriber.email] = shown
        result.subscribers.append(subscriber)
        result.names[subscriber.email] = entry.name
    if cache is not None and (fresh or set(cached) - present):
        cache.save_subscriber_files(key, fresh, keep=present)
    return result
