"""Opening a store: the engine, connection set-up, migrations, and the SQL helpers each table family uses.

SQLite (one file, WAL) is the default; PostgreSQL (through psycopg 3) serves
when scaling out, with the same schema and behaviour. Write transactions on
SQLite start with BEGIN IMMEDIATE, so writers are serialised instead of failing
half-way.

A store opened `read_only` never writes: SQLite opens the file with `mode=ro`
(and `immutable=1` when its folder is read-only too, where WAL cannot keep its
shared-memory file), and nothing is migrated. An existing empty SQLite file is
refused rather than taken for a new store, and a damaged one is named in one
line with what to do (`store_problem`).
"""

from __future__ import annotations

import functools
import sqlite3
import traceback
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Date, DateTime, any_, bindparam, create_engine, delete, event, func, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import Table

from newsletter.store.schema import (
    _MIGRATION_LOCK,
    _UPGRADES,
    SCHEMA_VERSION,
    _sqlite_value,
    metadata,
    schema_version_table,
)


class StoreError(RuntimeError):
    """The store cannot be used as it is; the message is one line naming it and what to do."""


def _sqlite_connect(dbapi_connection, _record, read_only: bool = False) -> None:
    # the driver must not open transactions itself: _sqlite_begin does, so DDL is transactional too
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    if not read_only:
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



def engine_url(url: str):
    """The SQLAlchemy URL for a store URL: `postgresql://` and `postgres://` mean psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"{_shown(url)}: unsupported store; use sqlite:///PATH or postgresql://HOST/DATABASE")
    return parsed


def _shown(url: str) -> str:
    """A store URL fit for messages and logs: any password masked; a SQLite store is its file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL (None for PostgreSQL or an in-memory store)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _read_only_connector(path: Path):
    """Connections that cannot write: `mode=ro`, or `immutable=1` where the folder is read-only
    (a WAL store's readers need a shared-memory file next to it, which cannot be made there)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"

    def connect():
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            connection.execute("PRAGMA user_version").fetchone()
            return connection
        except sqlite3.OperationalError as error:
            connection.close()
            if getattr(error, "sqlite_errorname", "") not in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_READONLY"):
                raise
        return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)

    return connect


def _raised_in_sqlalchemy(error: BaseException) -> bool:
    """Whether `error` came from turning a stored value into a Python one (a date that is not a date)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "sqlalchemy" in frames[-1].filename


def store_problem(url: str, error: BaseException) -> str | None:
    """One line for a store error a user must act on (damaged, read-only, unopenable file), else None."""
    original = error.orig if isinstance(error, DBAPIError) else error
    shown = _shown(url)
    what_to_do = f"restore it from a backup, or salvage what is left with `sqlite3 {shown} .recover | sqlite3 {shown}.recovered` and use that file"
    if isinstance(original, (ValueError, TypeError)) and sqlite_file(url) and _raised_in_sqlalchemy(original):
        return f"{shown}: the store holds a value that cannot be read ({original}), so the file may be damaged: {what_to_do}"
    if not isinstance(original, sqlite3.Error):
        return None
    code = getattr(original, "sqlite_errorname", "")
    if code in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or code.startswith("SQLITE_CORRUPT"):
        return f"{shown}: the store is damaged ({original}): {what_to_do}"
    if code.startswith("SQLITE_READONLY"):
        return f"{shown}: the store is read-only ({original}); this command writes to it: run it where the store is writable"
    if code.startswith("SQLITE_CANTOPEN"):
        return f"{shown}: cannot open the store file ({original}): check that its folder exists and is readable"
    return None



def _checksqlite_file(path: Path, *, read_only: bool) -> None:
    """Refuse an existing empty file (a truncated store taken for a new one would re-mail everyone)
    and, read-only, a missing one (which would have to be created)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if read_only:
            raise StoreError(f"{path}: no store here yet (nothing ingested or sent); run `newsletter ingest` or "
                             "`newsletter send` first, or check --db and [store] path") from None
        return
    if size == 0 and path.is_file():
        raise StoreError(f"{path}: the store file is empty (0 bytes), not a store: if it held your ledger, restore it "
                         "from a backup; to start a new store, delete the empty file first")


class StoreBase:
    """The engine and schema of a store; the table families (papers, ledger, suppressions) build on it."""

    def __init__(self, url: str, *, read_only: bool = False):
        """Open (creating or upgrading) the store at `url`; with `read_only`, open it as it is, never writing."""
        self.url = url
        self.read_only = read_only
        path = sqlite_file(url)
        if path is not None:
            _checksqlite_file(path, read_only=read_only)
        options = {"creator": _read_only_connector(path)} if read_only and path is not None else {}
        if path is None:  # PostgreSQL: a pooled connection is checked before use, so one a restart broke is re-made
            options["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(engine_url(url), **options)
        except ImportError as missing:
            raise RuntimeError(f"{_shown(url)}: PostgreSQL needs the psycopg package: pip install 'psycopg[binary]'") from missing
        self._postgres = self.engine.dialect.name == "postgresql"
        if self._postgres:
            event.listen(self.engine, "connect", _postgresql_connect)
        else:
            event.listen(self.engine, "connect", lambda connection, record: _sqlite_connect(connection, record, read_only))
            event.listen(self.engine, "begin", _sqlite_begin)
        # write transactions go through here (BEGIN IMMEDIATE on SQLite)
        self._writes: Engine = self.engine.execution_options(store_writes=True)
        try:
            self._check_version() if read_only else self._migrate()
        except Exception:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def try_cluster_lock(self, key: int) -> Connection | None:
        """PostgreSQL: a session advisory lock on `key`, held while the returned connection stays open.

        None when another session (on any host) holds it. SQLite stores are one
        host's files: the caller's lock file serves, so this returns None there too
        (check `self._postgres` first).
        """
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if got:
            return conn
        conn.close()
        return None

    def __enter__(self):
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

    def _check_version(self) -> None:
        """A read-only store must already be at this program's schema version: it cannot be migrated."""
        with self.engine.connect() as conn:
            version = self._read_version(conn)
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            raise StoreError(f"{_shown(self.url)}: not a newsletter store yet (nothing ingested or sent); "
                             "run `newsletter ingest` or `newsletter send` first")
        newer = version > SCHEMA_VERSION
        raise StoreError(
            f"{_shown(self.url)}: store schema version {version} is {'newer' if newer else 'older'} than this program's "
            f"({SCHEMA_VERSION}); " + ("upgrade newsletter" if newer else "run a command that writes (e.g. `newsletter ingest`) once to upgrade it"))

    def _read_version(self, conn: Connection) -> int:
        if not self._postgres:
            return conn.exec_driver_sql("PRAGMA user_version").scalar()
        if conn.execute(text("SELECT to_regclass('schema_version')")).scalar() is None:
            return 0
        return conn.execute(select(func.max(schema_version_table.c.version))).scalar() or 0

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._read_version(conn)

    @functools.cached_property
    def _dialect(self):
        """SQLAlchemy's dialect module for this database (PostgreSQL's is imported only by a PostgreSQL store)."""
        if self._postgres:
            from sqlalchemy.dialects import postgresql

            return postgresql
        return sqlite

    def _sorted(self, column):
        """`column` for ORDER BY, compared byte-wise like SQLite does, whatever the database's locale."""
        return column.collate("C") if self._postgres else column

    def _among(self, column, values: Sequence):
        """`column IN values`; one array parameter on PostgreSQL (cheaper than thousands of them)."""
        if self._postgres:
            return column == any_(bindparam(None, list(values), type_=self._dialect.ARRAY(column.type)))
        return column.in_(values)

    def _insert_many(self, conn: Connection, table: Table, rows: list[dict]) -> None:
        """Insert many new rows at once, on the driver itself: SQLAlchemy's per-row parameter
        processing costs more than the inserts. COPY on PostgreSQL; executemany on SQLite with
        dates written the way SQLAlchemy's SQLite dialect writes them."""
        columns = list(rows[0])
        if not self._postgres:
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            conn.connection.driver_connection.cursor().executemany(sql, self._driver_values(table, columns, rows))
            return
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[name] for name in columns])

    def _driver_values(self, table: Table, columns: list[str], rows: list[dict]) -> list[list]:
        """`rows` as parameter lists for the driver; on SQLite the date columns written as SQLAlchemy's
        SQLite dialect writes them (the other values are passed as they are)."""
        values = [[row[name] for name in columns] for row in rows]
        if not self._postgres:
            for position in [n for n, name in enumerate(columns) if isinstance(table.c[name].type, (Date, DateTime))]:
                for row in values:
                    row[position] = _sqlite_value(row[position])
        return values

    def _insert_new_rows(self, conn: Connection, table: Table, rows: list[dict], *, returning: str | None = None) -> list:
        """INSERT … ON CONFLICT DO NOTHING of many rows, on the driver (SQLAlchemy's per-row parameter
        processing costs more than the inserts); with `returning`, that column of the rows it inserted."""
        if not rows:
            return []
        columns = list(rows[0])
        mark = "%s" if self._postgres else "?"
        sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "
               "ON CONFLICT DO NOTHING")
        values = self._driver_values(table, columns, rows)
        cursor = conn.connection.driver_connection.cursor()
        try:
            if returning is None:
                cursor.executemany(sql, values)
                return []
            sql += f" RETURNING {returning}"
            found = []
            if not self._postgres:  # sqlite3's executemany returns no rows; one statement is a few µs
                for row in values:
                    found.extend(key for key, in cursor.execute(sql, row))
                return found
            cursor.executemany(sql, values, returning=True)
            while True:
                found.extend(key for key, in cursor.fetchall())
                if not cursor.nextset():
                    return found
        finally:
            cursor.close()

    def _insert_new(self, table: Table):
        """An INSERT that skips rows whose key is already stored."""
        return self._dialect.insert(table).on_conflict_do_nothing()

    def _insert_replacing(self, table: Table):
        """An INSERT that overwrites the other columns of a row whose primary key is already stored."""
        insert = self._dialect.insert(table)
        key = [column.name for column in table.primary_key.columns]
        return insert.on_conflict_do_update(
            index_elements=key, set_={c.name: insert.excluded[c.name] for c in table.columns if c.name not in key}
        )
