"""Opening a store: the engine, connection set-up, migrations, and the SQL helpers each table family uses.

SQLite (one file, WAL) is the default; PostgreSQL (through psycopg 3) serves
when scaling out, with the same schema and behaviour. Write transactions on
SQLite start with BEGIN IMMEDIATE, so writers are serialised instead of failing
half-way.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import any_, bindparam, create_engine, delete, event, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.schema import Table

from newsletter.store.schema import (
    _MIGRATION_LOCK,
    _UPGRADES,
    SCHEMA_VERSION,
    _sqlite_value,
    metadata,
    schema_version_table,
)


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



class StoreBase:
    """The engine and schema of a store; the table families (papers, ledger, suppressions) build on it."""

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
