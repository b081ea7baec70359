"""A real, throwaway Redis server for tests (Debian's `redis-server` package).

`redis_server` (session scope) starts `redis-server` on a free loopback port in
a temporary folder, with persistence off, and stops it at the end of the
session. `redis_url` (function scope) is the URL of that server with its
databases emptied first. Tests are skipped when redis-server or the `redis`
client is absent.

Import the fixtures into a test module: `from tests.redis_server import redis_server, redis_url`.
Outside pytest (benchmarks), `with run_redis() as url:` runs one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:g} s")


class RedisProcess:
    """One redis-server on a fixed loopback port, persistence off, that a test can stop and start again
    (what a restart of a Redis without `appendonly` does: the queue is gone)."""

    def __init__(self, folder: Path, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise LookupError("redis-server not installed: apt-get install redis-server")
        self.binary, self.folder, self.port = binary, folder, port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = folder / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_ready(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()  # no shutdown save either
        self.process.wait()
        self.process = None


@contextmanager
def run_redis() -> Iterator[str]:
    """Run a private Redis server until the block ends; yields its URL (database 0).

    Raises LookupError when redis-server is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise LookupError("redis-server not installed: apt-get install redis-server")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="newsletter-redis-") as folder:
        log = Path(folder) / "redis.log"
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", folder, "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port, process, log)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private Redis server for the test session; its URL."""
    pytest.importorskip("redis", reason="the redis client is not installed: pip install redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed: apt-get install redis-server")
    with run_redis() as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server
