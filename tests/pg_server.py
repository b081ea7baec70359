"""A real, throwaway PostgreSQL server for tests (Debian's `postgresql` package).

`pg_server` (session scope) runs `initdb` in a temporary folder and starts the
server on a free loopback port, with its unix socket in that folder; it is
stopped and removed at the end of the session. `pg_url` (function scope) is
the URL of a fresh, empty database for one test. As root, the server runs as
the `postgres` user. Tests are skipped when PostgreSQL or psycopg is absent.

Import the fixtures into a test module: `from tests.pg_server import pg_server, pg_url`.
Outside pytest (benchmarks), `with postgres_server() as server:` runs one.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

_databases = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    """A running test server: where to reach it and how long it took to start (and how to stop and start it again)."""

    host: str
    port: int
    user: str
    started_in: float
    data: Path | None = None
    options: str = ""
    pg_ctl: str = ""
    as_user: str | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        """Stop at once (`-m immediate`: every session is cut, as when the server or its machine dies)."""
        _run([self.pg_ctl, "stop", "-D", str(self.data), "-m", "immediate", "-w"], self.as_user)

    def start(self) -> None:
        _run([self.pg_ctl, "start", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.data.parent / "server.log"),
              "-o", self.options], self.as_user)


def _binaries() -> Path | None:
    """The newest installed PostgreSQL bin folder holding initdb and pg_ctl."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    found = [path for path in found if (path / "pg_ctl").exists()]
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], as_user: str | None) -> None:
    if as_user:
        command = ["runuser", "-u", as_user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PgServer]:
    """Run a private PostgreSQL server (initdb in a temporary folder) until the block ends.

    Unless `durable`, commits are not flushed to disk (fine for tests, not for timing).
    Raises LookupError when the PostgreSQL binaries are not installed.
    """
    bin_dir = _binaries()
    if bin_dir is None:
        raise LookupError("PostgreSQL not installed: apt-get install postgresql")
    as_user = "postgres" if os.geteuid() == 0 else None
    # not under pytest's tmp_path: its parents are private to root, and the server runs as postgres
    base = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if as_user:
        shutil.chown(base, as_user)
        shutil.chown(sockets, as_user)
    start = time.perf_counter()
    port = _free_port()
    pg_ctl = str(bin_dir / "pg_ctl")
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
              "--encoding=UTF8", "--locale=C.UTF-8"], as_user)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} -c max_connections=50"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([pg_ctl, "start", "-D", str(data), "-w", "-t", "60", "-l", str(base / "server.log"), "-o", options], as_user)
        try:
            yield PgServer("127.0.0.1", port, "postgres", time.perf_counter() - start, data, options, pg_ctl, as_user)
        finally:
            stop = [pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"]
            # not checked: a test may have stopped it already
            subprocess.run((["runuser", "-u", as_user, "--"] if as_user else []) + stop, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def create_database(server: PgServer) -> str:
    """A new, empty database on `server`; its URL."""
    import psycopg

    name = f"test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return server.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL server for the test session."""
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'psycopg[binary]'")
    if _binaries() is None:
        pytest.skip("PostgreSQL not installed: apt-get install postgresql")
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped after the test."""
    import psycopg

    url = create_database(pg_server)
    yield url
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
