"""The store's tables and schema version, and the small value helpers every table family shares.

The schema is versioned (SQLite: `PRAGMA user_version`; PostgreSQL: the one-row
`schema_version` table) and migrated on open by `StoreBase`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, LargeBinary, MetaData, String, Table, Text, inspect
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 7
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
    # schema 7: the Celery shard (task id) an edition was enqueued in, so a shard the broker lost is found again
    Column("shard", String),
    Index("ix_deliveries_state", "state"),
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

# schema 3: one embedding per (paper, model), float32 bytes (SQLite BLOB, PostgreSQL bytea)
paper_vectors_table = Table(
    "paper_vectors",
    metadata,
    Column("paper_id", String, primary_key=True),
    Column("model", String, primary_key=True),
    Column("vector", LargeBinary, nullable=False),
)

# schema 3: "more like this" / "fewer like this" from the email, the latest click per (subscriber, paper)
feedback_table = Table(
    "feedback",
    metadata,
    Column("subscriber_email", String, primary_key=True),
    Column("paper_id", String, primary_key=True),
    Column("kind", String, nullable=False),  # "more" or "fewer"
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# schema 4: parsed subscriber files (see store/subscriber_files.py)
subscriber_files_table = Table(
    "subscriber_files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("directory", Text, nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("shape", Text, nullable=False),
    Column("subscriber", Text, nullable=False),
)

# schema 5: every bounce read from a DSN, once per (report, address); soft-bounce streaks are counted from it
bounces_table = Table(
    "bounces",
    metadata,
    Column("report_id", String, primary_key=True),  # the DSN's Message-ID, or a hash of its bytes
    Column("email", String, primary_key=True),
    Column("kind", String, nullable=False),  # hard | soft
    Column("reason", Text, nullable=False, default=""),
    Column("edition_date", Date),  # the bounced edition, when its Message-ID is in the ledger
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_bounces_email", "email"),
)

# schema 6: one-sentence TL;DRs, made once per paper (newsletter/summaries.py)
summaries_table = Table(
    "summaries",
    metadata,
    Column("paper_id", String, primary_key=True),
    Column("summary", Text, nullable=False),
    Column("model", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# schema 6: how each `[sources] fetch` entry last went, so an empty day can say "fetching failed since …"
fetch_status_table = Table(
    "fetch_status",
    metadata,
    Column("source", String, primary_key=True),
    Column("last_ok_at", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# PostgreSQL only; SQLite keeps the version in PRAGMA user_version
schema_version_table = Table("schema_version", MetaData(), Column("version", Integer, nullable=False))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]



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


def _upgrade_to_2(conn: Connection) -> None:
    """Schema 2: deliveries get `claimed_by` and `lease_until` for Store.claim."""
    for column in (deliveries_table.c.claimed_by, deliveries_table.c.lease_until):
        kind = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {deliveries_table.name} ADD COLUMN {column.name} {kind}")


def _upgrade_to_3(conn: Connection) -> None:
    """Schema 3: paper vectors and subscriber feedback (new tables only)."""
    paper_vectors_table.create(conn, checkfirst=True)
    feedback_table.create(conn, checkfirst=True)


def _upgrade_to_4(conn: Connection) -> None:
    """Schema 4: the subscriber_files cache."""
    subscriber_files_table.create(conn, checkfirst=True)


def _upgrade_to_5(conn: Connection) -> None:
    """Schema 5: the `bounces` table (newsletter/bounces.py)."""
    bounces_table.create(conn, checkfirst=True)


def _upgrade_to_6(conn: Connection) -> None:
    """Schema 6: the summaries and fetch_status tables."""
    summaries_table.create(conn, checkfirst=True)
    fetch_status_table.create(conn, checkfirst=True)


def _upgrade_to_7(conn: Connection) -> None:
    """Schema 7: deliveries get `shard` (queued editions know their Celery task) and an index on `state`."""
    present = {column["name"] for column in inspect(conn).get_columns(deliveries_table.name)}
    if "shard" not in present:
        kind = deliveries_table.c.shard.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {deliveries_table.name} ADD COLUMN shard {kind}")
    for index in deliveries_table.indexes:
        if index.name == "ix_deliveries_state":
            index.create(conn, checkfirst=True)


# schema version -> the step that upgrades the version before it; a new store gets the latest tables at once
_UPGRADES: dict[int, Callable[[Connection], None]] = {
    2: _upgrade_to_2,
    3: _upgrade_to_3,
    4: _upgrade_to_4,
    5: _upgrade_to_5,
    6: _upgrade_to_6,
    7: _upgrade_to_7,
}
_MIGRATION_LOCK = 0x6E6577736C  # pg_advisory_xact_lock key: one migrating process at a time
