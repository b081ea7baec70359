"""The paper store and the delivery ledger. All SQL lives here (SQLAlchemy Core).

SQLite (one file, WAL) is the default; PostgreSQL (through psycopg 3) serves
when scaling out, with the same schema and behaviour. The schema is versioned
(SQLite: `PRAGMA user_version`; PostgreSQL: the one-row `schema_version` table)
and migrated on open. Write transactions on SQLite start with BEGIN IMMEDIATE,
so writers are serialised instead of failing half-way.

Papers are de-duplicated by their stable id (arXiv id, else a title hash); a
title-only record and an arXiv record with the same normalised title become one.

The ledger has one row per (subscriber, edition date) moving through
`pending` -> `sending` -> `sent` | `failed` (or `review` when an uncertain
send is held back for a person to look at).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    any_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
    bindparam,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from newsletter.models import Paper, Pick, normalise_title

SCHEMA_VERSION = 2
LEDGER_STATES = ("pending", "sending", "sent", "failed", "review")
_CHUNK = 5000
_to_json = json.JSONEncoder(ensure_ascii=False).encode

metadata = MetaData()

papers_table = Table(
    "papers",
    metadata,
    Column("id", String, primary_key=True),
    Column("title", Text, nullable=False),
    Column("title_key", Text, nullable=False, index=True),
    Column("abstract", Text, nullable=False, default=""),
    Column("authors", Text, nullable=False, default="[]"),
    Column("author_count", Integer),
    Column("organization", Text),
    Column("published", Date),
    Column("upvotes", Integer, index=True),
    Column("url", Text),
    Column("arxiv_id", String),
    Column("github_repo", Text),
    Column("github_stars", Integer),
    Column("ai_keywords", Text, nullable=False, default="[]"),
    Column("sources", Text, nullable=False, default="[]"),
    Column("first_seen", DateTime(timezone=True)),
    Column("last_seen", DateTime(timezone=True)),
    # the date selection goes by: published where known, else the (UTC) day we first saw it; never NULL
    Column("dated", Date, index=True),
)

deliveries_table = Table(
    "deliveries",
    metadata,
    Column("subscriber_email", String, primary_key=True),
    Column("edition_date", Date, primary_key=True, index=True),
    Column("state", String, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("picks", Text, nullable=False, default="[]"),
    Column("subject", Text, nullable=False, default=""),
    Column("reply", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # schema 2: who holds a `sending` row, and until when (see Store.claim)
    Column("claimed_by", Text),
    Column("lease_until", DateTime(timezone=True)),
)

sent_papers_table = Table(
    "sent_papers",
    metadata,
    Column("subscriber_email", String, primary_key=True),
    Column("paper_id", String, primary_key=True),
    Column("edition_date", Date, nullable=False),
)

suppressions_table = Table(
    "suppressions",
    metadata,
    Column("email", String, primary_key=True),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# PostgreSQL only; SQLite keeps the version in PRAGMA user_version
schema_version_table = Table("schema_version", MetaData(), Column("version", Integer, nullable=False))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class IngestStats:
    """What one `add_papers` call did."""

    parsed: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class LedgerEntry:
    """One (subscriber, edition date) row of the delivery ledger."""

    email: str
    edition_date: date
    state: str
    message_id: str
    picks: tuple[dict, ...]
    subject: str
    reply: str | None
    attempts: int
    updated_at: datetime
    claimed_by: str | None = None
    lease_until: datetime | None = None

    @property
    def paper_ids(self) -> list[str]:
        return [pick["id"] for pick in self.picks]


def merge_papers(old: Paper, new: Paper) -> Paper:
    """One record from two sightings of the same paper; never loses known data.

    Highest upvotes win; missing authors, organisation, date, url and ids are
    filled; sources and keywords are united; first/last seen widen.
    """

    def first(a, b):
        return a if a not in (None, "", []) else b

    def highest(a, b):
        return b if a is None else a if b is None else max(a, b)

    def earliest(a, b):
        return b if a is None else a if b is None else min(a, b)

    return replace(
        old,
        id=old.id if old.arxiv_id or not new.arxiv_id else new.id,
        title=first(old.title, new.title),
        abstract=old.abstract if len(old.abstract) >= len(new.abstract) else new.abstract,
        authors=old.authors if len(old.authors) >= len(new.authors) else new.authors,
        author_count=highest(old.author_count, new.author_count),
        organization=first(old.organization, new.organization),
        published=first(old.published, new.published),
        upvotes=highest(old.upvotes, new.upvotes),
        url=first(old.url, new.url),
        arxiv_id=first(old.arxiv_id, new.arxiv_id),
        github_repo=first(old.github_repo, new.github_repo),
        github_stars=highest(old.github_stars, new.github_stars),
        ai_keywords=list(dict.fromkeys([*old.ai_keywords, *new.ai_keywords])),
        sources=list(dict.fromkeys([*old.sources, *new.sources])),
        first_seen=earliest(old.first_seen, new.first_seen),
        last_seen=highest(old.last_seen, new.last_seen),
    )


def _sqlite_value(value):
    """A parameter as SQLAlchemy's SQLite dialect stores it (datetimes as naive UTC text)."""
    if isinstance(value, datetime):
        return _as_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _as_utc(value: datetime | None) -> datetime | None:
    """The same instant in UTC; a naive value is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _plain(value: str | None) -> str | None:
    """Text without NUL characters, which PostgreSQL cannot store."""
    return value.replace("\x00", "") if value and "\x00" in value else value


def _paper_row(paper: Paper, title_key: str | None = None) -> dict:
    first_seen = _as_utc(paper.first_seen)
    return {
        "id": paper.id,
        "title": _plain(paper.title),
        "title_key": _plain(title_key or normalise_title(paper.title)),
        "abstract": _plain(paper.abstract),
        "authors": _to_json(paper.authors),
        "author_count": paper.author_count,
        "organization": _plain(paper.organization),
        "published": paper.published,
        "upvotes": paper.upvotes,
        "url": _plain(paper.url),
        "arxiv_id": paper.arxiv_id,
        "github_repo": _plain(paper.github_repo),
        "github_stars": paper.github_stars,
        "ai_keywords": _to_json(paper.ai_keywords),
        "sources": _to_json(paper.sources),
        "first_seen": first_seen,
        "last_seen": _as_utc(paper.last_seen),
        "dated": paper.published or (first_seen.date() if first_seen else None),
    }


def _paper_from_row(row) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=json.loads(row.authors),
        author_count=row.author_count,
        organization=row.organization,
        published=row.published,
        upvotes=row.upvotes,
        url=row.url,
        arxiv_id=row.arxiv_id,
        github_repo=row.github_repo,
        github_stars=row.github_stars,
        ai_keywords=json.loads(row.ai_keywords),
        sources=json.loads(row.sources),
        first_seen=_as_utc(row.first_seen),
        last_seen=_as_utc(row.last_seen),
    )


def _ledger_from_row(row) -> LedgerEntry:
    return LedgerEntry(
        email=row.subscriber_email,
        edition_date=row.edition_date,
        state=row.state,
        message_id=row.message_id,
        picks=tuple(json.loads(row.picks)),
        subject=row.subject,
        reply=row.reply,
        attempts=row.attempts,
        updated_at=_as_utc(row.updated_at),
        claimed_by=row.claimed_by,
        lease_until=_as_utc(row.lease_until),
    )


class PaperSet:
    """Papers keyed by id and by normalised title, merging sightings of the same paper."""

    def __init__(self, papers: Iterable[Paper] = ()):
        self._by_id: dict[str, Paper] = {}
        self._id_by_title: dict[str, str] = {}
        self.title_key: dict[str, str] = {}
        for paper in papers:
            self.add(paper)

    def match(self, paper: Paper, title_key: str | None = None) -> Paper | None:
        """The held paper that is the same as `paper` (same id, or same normalised title)."""
        found = self._by_id.get(paper.id)
        if found is None:
            held_id = self._id_by_title.get(title_key or normalise_title(paper.title))
            found = self._by_id.get(held_id) if held_id else None
            if found is not None and found.arxiv_id and paper.arxiv_id and found.arxiv_id != paper.arxiv_id:
                return None
        return found

    def add(self, paper: Paper) -> None:
        key = normalise_title(paper.title)
        old = self.match(paper, key)
        if old is not None:
            paper = merge_papers(old, paper)
            if paper.id != old.id:
                del self._by_id[old.id]
            key = self.title_key[old.id] if paper.title == old.title else normalise_title(paper.title)
        self._by_id[paper.id] = paper
        self._id_by_title[key] = paper.id
        self.title_key[paper.id] = key

    def papers(self) -> list[Paper]:
        return list(self._by_id.values())


def _content(paper: Paper) -> dict:
    row = _paper_row(paper)
    del row["last_seen"]
    return row


def _sqlite_connect(dbapi_connection, _record) -> None:
    # the driver must not open transactions itself: _sqlite_begin does, so DDL is transactional too
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MB of page cache: bulk ingest touches indexes at random
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # a writer takes the write lock up front (waiting up to busy_timeout), never half-way through
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("store_writes") else "BEGIN")


def _postgresql_connect(dbapi_connection, _record) -> None:
    # psycopg prepares statements it runs often; their generic plans, made while a table was
    # small, can stay on a sequential scan when it has grown. Plan each run for its own values.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def _upgrade_to_2(conn: Connection) -> None:
    """Schema 2: deliveries get `claimed_by` and `lease_until` for Store.claim."""
    for column in (deliveries_table.c.claimed_by, deliveries_table.c.lease_until):
        kind = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {deliveries_table.name} ADD COLUMN {column.name} {kind}")


# schema version -> the step that upgrades the version before it; a new store gets the latest tables at once
_UPGRADES: dict[int, Callable[[Connection], None]] = {2: _upgrade_to_2}
_MIGRATION_LOCK = 0x6E6577736C  # pg_advisory_xact_lock key: one migrating process at a time


def engine_url(url: str):
    """The SQLAlchemy URL for a store URL: `postgresql://` and `postgres://` mean psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"{_shown(url)}: unsupported store; use sqlite:///PATH or postgresql://HOST/DATABASE")
    return parsed


def _shown(url: str) -> str:
    """A store URL fit for messages and logs: any password masked."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """Papers, the delivery ledger and the suppression list, behind plain methods."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine: Engine = create_engine(engine_url(url))
        except ImportError as missing:
            raise RuntimeError(f"{_shown(url)}: PostgreSQL needs the psycopg package: pip install 'psycopg[binary]'") from missing
        self._postgres = self.engine.dialect.name == "postgresql"
        if self._postgres:
            event.listen(self.engine, "connect", _postgresql_connect)
        else:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        # write transactions go through here (BEGIN IMMEDIATE on SQLite)
        self._writes: Engine = self.engine.execution_options(store_writes=True)
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema -------------------------------------------------------------

    def _migrate(self) -> None:
        """Create a new store, or upgrade an older one step by step, in one transaction."""
        with self._writes.begin() as conn:
            if self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            version = self._read_version(conn)
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{_shown(self.url)}: store schema version {version} is newer than this program's ({SCHEMA_VERSION}); upgrade newsletter"
                )
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                metadata.create_all(conn)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    _UPGRADES[step](conn)
            if self._postgres:
                schema_version_table.create(conn, checkfirst=True)
                conn.execute(delete(schema_version_table))
                conn.execute(insert(schema_version_table).values(version=SCHEMA_VERSION))
            else:
                conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _read_version(self, conn: Connection) -> int:
        if not self._postgres:
            return conn.exec_driver_sql("PRAGMA user_version").scalar()
        if conn.execute(text("SELECT to_regclass('schema_version')")).scalar() is None:
            return 0
        return conn.execute(select(func.max(schema_version_table.c.version))).scalar() or 0

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._read_version(conn)

    def _sorted(self, column):
        """`column` for ORDER BY, compared byte-wise like SQLite does, whatever the database's locale."""
        return column.collate("C") if self._postgres else column

    def _among(self, column, values: Sequence):
        """`column IN values`; one array parameter on PostgreSQL (cheaper than thousands of them)."""
        if self._postgres:
            return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
        return column.in_(values)

    def _insert_many(self, conn: Connection, table: Table, rows: list[dict]) -> None:
        """Insert many new rows at once, on the driver itself: SQLAlchemy's per-row parameter
        processing costs more than the inserts. COPY on PostgreSQL; executemany on SQLite with
        dates written the way SQLAlchemy's SQLite dialect writes them."""
        columns = list(rows[0])
        if not self._postgres:
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            values = ([_sqlite_value(row[name]) for name in columns] for row in rows)
            conn.connection.driver_connection.cursor().executemany(sql, values)
            return
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[name] for name in columns])

    def _insert_new(self, table: Table):
        """An INSERT that skips rows whose key is already stored."""
        return (postgresql if self._postgres else sqlite).insert(table).on_conflict_do_nothing()

    # -- papers -------------------------------------------------------------

    def add_papers(self, papers: Iterable[Paper], *, seen_at: datetime | None = None) -> IngestStats:
        """Upsert papers in one transaction, merging with what the store already holds.

        Papers without first/last seen times are stamped with `seen_at` (default now).
        """
        seen_at = seen_at or _now()
        stats = IngestStats()
        batch = PaperSet()
        for paper in papers:
            stats.parsed += 1
            paper.first_seen = paper.first_seen or seen_at
            paper.last_seen = paper.last_seen or seen_at
            batch.add(paper)
        with self._writes.begin() as conn:
            stored = PaperSet(self._load_matches(conn, batch))
            inserts, updates, renamed = [], [], {}
            seen_again: dict[datetime, list[str]] = {}  # unchanged papers: only last_seen moves
            for paper in batch.papers():
                title_key = batch.title_key[paper.id]
                old = stored.match(paper, title_key)
                if old is None:
                    inserts.append(_paper_row(paper, title_key))
                    stats.new += 1
                    continue
                merged = merge_papers(old, paper)
                if merged.id != old.id:
                    renamed[old.id] = merged.id
                    inserts.append(_paper_row(merged))
                    stats.updated += 1
                elif _content(merged) != _content(old):
                    updates.append(_paper_row(merged))
                    stats.updated += 1
                else:
                    stats.unchanged += 1
                    if merged.last_seen != old.last_seen:
                        seen_again.setdefault(merged.last_seen, []).append(merged.id)
            if renamed:
                self._rename_papers(conn, renamed)
            if inserts:
                self._insert_many(conn, papers_table, inserts)
            if updates:
                columns = {name: bindparam(f"v_{name}") for name in updates[0] if name != "id"}
                statement = update(papers_table).where(papers_table.c.id == bindparam("v_id")).values(columns)
                conn.execute(statement, [{f"v_{k}": v for k, v in row.items()} for row in updates])
            for last_seen, ids in seen_again.items():
                for chunk in _chunks(ids):
                    conn.execute(update(papers_table).where(papers_table.c.id.in_(chunk)).values(last_seen=last_seen))
        return stats

    def _load_matches(self, conn: Connection, batch: PaperSet) -> list[Paper]:
        """Stored papers that share an id or a normalised title with the batch."""
        found: dict[str, Paper] = {}
        ids = list(batch.title_key)
        keys = list(batch.title_key.values())
        for column, values in ((papers_table.c.id, ids), (papers_table.c.title_key, keys)):
            for chunk in _chunks(values):
                for row in conn.execute(select(papers_table).where(self._among(column, chunk))):
                    found[row.id] = _paper_from_row(row)
        return list(found.values())

    def _rename_papers(self, conn: Connection, renamed: dict[str, str]) -> None:
        """Title-only records that turned out to have an arXiv id: drop the old row, keep its history."""
        for old_id, new_id in renamed.items():
            conn.execute(
                update(sent_papers_table).where(sent_papers_table.c.paper_id == old_id).values(paper_id=new_id)
            )
        for chunk in _chunks(list(renamed)):
            conn.execute(delete(papers_table).where(self._among(papers_table.c.id, chunk)))

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        """Papers by id (ids that are not stored are simply absent)."""
        ids = list(ids)
        found: dict[str, Paper] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(select(papers_table).where(self._among(papers_table.c.id, chunk))):
                    found[row.id] = _paper_from_row(row)
        return found

    def papers(self, *, since: date | None = None, until: date | None = None, limit: int | None = None) -> list[Paper]:
        """Stored papers dated `since`..`until` (published, else first seen), newest first."""
        newest = papers_table.c.dated
        query = select(papers_table).order_by(newest.desc(), self._sorted(papers_table.c.id))
        if since is not None:
            query = query.where(newest >= since)
        if until is not None:
            query = query.where(newest <= until)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_paper_from_row(row) for row in conn.execute(query)]

    def count_papers(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(papers_table)).scalar_one()

    # -- ledger ---------------------------------------------------------------

    def ledger_entries(self, edition_date: date, emails: Iterable[str] | None = None) -> dict[str, LedgerEntry]:
        """Ledger rows for one edition date, keyed by subscriber email (all, or just `emails`)."""
        query = select(deliveries_table).where(deliveries_table.c.edition_date == edition_date)
        with self.engine.connect() as conn:
            if emails is None:
                return {row.subscriber_email: _ledger_from_row(row) for row in conn.execute(query)}
            found = {}
            for chunk in _chunks(list(emails)):
                for row in conn.execute(query.where(self._among(deliveries_table.c.subscriber_email, chunk))):
                    found[row.subscriber_email] = _ledger_from_row(row)
            return found

    def ledger_counts(self, edition_date: date | None = None) -> dict[str, int]:
        """How many ledger rows are in each state (for one date, or overall)."""
        query = select(deliveries_table.c.state, func.count()).group_by(deliveries_table.c.state)
        if edition_date is not None:
            query = query.where(deliveries_table.c.edition_date == edition_date)
        with self.engine.connect() as conn:
            counts = dict.fromkeys(LEDGER_STATES, 0)
            counts.update({state: n for state, n in conn.execute(query)})
            return counts

    def ledger_rows(self, *, edition_date: date | None = None, state: str | None = None) -> list[LedgerEntry]:
        """Ledger rows filtered by date and/or state, oldest first."""
        query = select(deliveries_table).order_by(
            deliveries_table.c.edition_date, self._sorted(deliveries_table.c.subscriber_email)
        )
        if edition_date is not None:
            query = query.where(deliveries_table.c.edition_date == edition_date)
        if state is not None:
            query = query.where(deliveries_table.c.state == state)
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]

    def record_pending(self, editions: Sequence[tuple[str, date, str, Sequence[Pick], str]]) -> None:
        """Record editions as `pending` before anything is handed to a backend.

        Each item is (email, edition date, Message-ID, picks, subject). The
        papers are remembered as sent to that subscriber, so no later edition
        repeats them. Rows that already exist keep their state.
        """
        if not editions:
            return
        now = _now()
        with self._writes.begin() as conn:
            keys = {(email, day) for email, day, *_ in editions}
            existing = set()
            for day in {day for _, day in keys}:
                emails = [email for email, d in keys if d == day]
                for chunk in _chunks(emails):
                    query = select(deliveries_table.c.subscriber_email).where(
                        deliveries_table.c.edition_date == day, self._among(deliveries_table.c.subscriber_email, chunk)
                    )
                    existing.update((email, day) for email in conn.execute(query).scalars())
            fresh = [e for e in editions if (e[0], e[1]) not in existing]
            if not fresh:
                return
            conn.execute(
                self._insert_new(deliveries_table),
                [
                    {
                        "subscriber_email": email,
                        "edition_date": day,
                        "state": "pending",
                        "message_id": message_id,
                        "picks": json.dumps(
                            [{"id": p.paper.id, "score": p.score, "reasons": p.reasons} for p in picks], ensure_ascii=False
                        ),
                        "subject": subject,
                        "attempts": 0,
                        "updated_at": now,
                    }
                    for email, day, message_id, picks, subject in fresh
                ],
            )
            sent = {
                (email, pick.paper.id): day for email, day, _, picks, _ in fresh for pick in picks
            }
            already = set()
            for chunk in _chunks(list({email for email, _ in sent})):
                query = select(sent_papers_table.c.subscriber_email, sent_papers_table.c.paper_id).where(
                    self._among(sent_papers_table.c.subscriber_email, chunk)
                )
                already.update(tuple(row) for row in conn.execute(query))
            rows = [
                {"subscriber_email": email, "paper_id": paper_id, "edition_date": day}
                for (email, paper_id), day in sent.items()
                if (email, paper_id) not in already
            ]
            if rows:
                conn.execute(self._insert_new(sent_papers_table), rows)

    def mark(self, edition_date: date, outcomes: Sequence[tuple[str, str, str | None]], *, count_attempt: bool = False) -> None:
        """Move ledger rows to a new state: each outcome is (email, state, reply)."""
        if not outcomes:
            return
        for _, state, _ in outcomes:
            if state not in LEDGER_STATES:
                raise ValueError(f"unknown ledger state {state!r}")
        table = deliveries_table
        statement = (
            update(table)
            .where(table.c.subscriber_email == bindparam("v_email"), table.c.edition_date == bindparam("v_day"))
            .values(
                state=bindparam("v_state"),
                reply=func.coalesce(bindparam("v_reply"), table.c.reply),
                attempts=table.c.attempts + (1 if count_attempt else 0),
                updated_at=bindparam("v_now"),
            )
        )
        now = _now()
        with self._writes.begin() as conn:
            conn.execute(
                statement,
                [
                    {"v_email": email, "v_day": edition_date, "v_state": state, "v_reply": reply, "v_now": now}
                    for email, state, reply in outcomes
                ],
            )

    def claim(self, edition_date: date, emails: Sequence[str], *, worker: str, lease_seconds: float) -> list[str]:
        """Take rows of one edition date for `worker`; the emails it got, in the given order.

        A row is taken when it is `pending`, or `sending` under a lease that has
        run out; it becomes `sending` with `claimed_by=worker` and a lease of
        `lease_seconds` from now (this machine's UTC clock). Concurrent claimers
        never get the same row: PostgreSQL skips rows another claimer has locked
        (FOR UPDATE SKIP LOCKED); SQLite runs one writer at a time (BEGIN IMMEDIATE).
        """
        table = deliveries_table
        now = _now()
        claimable = or_(table.c.state == "pending", and_(table.c.state == "sending", table.c.lease_until < now))
        wanted = list(dict.fromkeys(emails))
        got: set[str] = set()
        with self._writes.begin() as conn:
            for chunk in _chunks(wanted):
                in_chunk = and_(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk), claimable)
                free = list(conn.execute(select(table.c.subscriber_email).where(in_chunk).with_for_update(skip_locked=True)).scalars())
                if not free:
                    continue
                conn.execute(
                    update(table)
                    .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, free), claimable)
                    .values(state="sending", claimed_by=worker, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
                )
                got.update(free)
        return [email for email in wanted if email in got]

    def sent_paper_ids(self, emails: Iterable[str], *, before: date | None = None) -> dict[str, set[str]]:
        """Paper ids already given to each subscriber (in editions other than `before`'s date)."""
        found: dict[str, set[str]] = {}
        table = sent_papers_table
        with self.engine.connect() as conn:
            for chunk in _chunks(list(emails)):
                query = select(table.c.subscriber_email, table.c.paper_id).where(self._among(table.c.subscriber_email, chunk))
                if before is not None:
                    query = query.where(table.c.edition_date != before)
                for email, paper_id in conn.execute(query):
                    found.setdefault(email, set()).add(paper_id)
        return found

    # -- suppression list ---------------------------------------------------------

    def suppress(self, email: str, reason: str = "unsubscribed") -> bool:
        """Add an address to the suppression list; False when it was already there."""
        row = {"email": email.strip().lower(), "reason": reason, "created_at": _now()}
        with self._writes.begin() as conn:
            statement = self._insert_new(suppressions_table).values(row)
            return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Remove an address from the suppression list; False when it was not there."""
        with self._writes.begin() as conn:
            result = conn.execute(delete(suppressions_table).where(suppressions_table.c.email == email.strip().lower()))
            return result.rowcount > 0

    def suppressed(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(suppressions_table.c.email)).scalars())
