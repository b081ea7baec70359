"""A scaled-out setup for tests and benchmarks: subscriber files, a config, a sink, worker processes.

`write_setup` writes a config (PostgreSQL store, Redis broker, smtp backend
into a local sink) and N subscriber files, and stores a day's papers.
`CountingSink` is an aiosmtpd server that counts each Message-ID it accepts.
`Worker` is one `python -m newsletter worker` process group, stopped with
SIGTERM or killed with SIGKILL as a machine failure would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller

from newsletter.models import Paper
from newsletter.store import Store
from tests.smtp_fixtures import free_port

REPO = Path(__file__).resolve().parent.parent
MESSAGE_ID = re.compile(rb"\r\nMessage-ID: (<[^>\r\n]+>)\r\n")
TOPICS = ["diffusion", "language models", "reinforcement learning", "robotics", "vision"]


def write_setup(
    folder: Path,
    *,
    subscribers: int,
    day: date,
    store_url: str,
    broker_url: str,
    smtp_port: int,
    shard_size: int | None = 500,
    chunk_size: int = 100,
    lease_seconds: float | None = 600,
    visibility_timeout: float | None = 3600,
    smtp_concurrency: int = 2,
) -> Path:
    """A config plus `subscribers` subscriber files in `folder`, and 50 papers for `day` in the store; the config path.

    `shard_size`, `lease_seconds`, `visibility_timeout` None: not in the config (the program's defaults).
    """
    celery = {"shard_size": shard_size, "lease_seconds": lease_seconds, "visibility_timeout": visibility_timeout}
    celery_lines = "".join(f"{key} = {value}\n" for key, value in celery.items() if value is not None)
    directory = folder / "subscribers"
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(subscribers):
        mode = ("trending", "keywords", "mixed")[n % 3]
        keywords = f'keywords = ["{TOPICS[n % len(TOPICS)]}", "{TOPICS[(n + 2) % len(TOPICS)]}"]\n' if mode != "trending" else ""
        (directory / f"reader{n:05d}.toml").write_text(
            f'email = "reader{n}@example.org"\nname = "Reader {n}"\nmode = "{mode}"\n{keywords}max_items = 5\n'
        )
    config = folder / "config.toml"
    config.write_text(f"""\
[newsletter]
from = "Papers <papers@example.org>"
base_url = "http://127.0.0.1:8025"

[store]
url = "{store_url}"

[subscribers]
dir = "subscribers"

[delivery]
backend = "smtp"
executor = "celery"
chunk_size = {chunk_size}

[delivery.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
concurrency = {smtp_concurrency}
max_per_connection = 1000

[celery]
broker_url = "{broker_url}"
{celery_lines}""")
    with Store(store_url) as store:
        store.add_papers(
            Paper.create(
                f"Paper {n} on {TOPICS[n % len(TOPICS)]} and {TOPICS[(n + 1) % len(TOPICS)]}",
                arxiv_id=f"2411.{n:05d}",
                abstract=f"We study {TOPICS[n % len(TOPICS)]} at scale. " * 5,
                upvotes=n,
                published=day - timedelta(days=1),
            )
            for n in range(1, 51)
        )
    return config


@dataclass
class CountingSink:
    """An aiosmtpd server on a free loopback port counting the Message-IDs it accepts.

    `delay`: seconds each message takes before its 250 (a slow relay), so a fault lands mid-shard.
    """

    port: int = field(default_factory=free_port)
    received: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        found = MESSAGE_ID.search(envelope.content, 0, 8192)
        with self.lock:
            self.received[found[1].decode() if found else None] += 1
        return "250 2.0.0 queued"

    def total(self) -> int:
        with self.lock:
            return sum(self.received.values())

    def __enter__(self) -> CountingSink:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class Worker:
    """`newsletter worker` in its own process group (its pool processes included), logging to a file."""

    def __init__(self, config: Path, name: str, concurrency: int, log: Path):
        self.name = name
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), "worker",
             "--name", f"{name}@%h", "--concurrency", str(concurrency)],
            cwd=config.parent,
            env={**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": "test-signing-key"},
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready within {timeout:g} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pause(self) -> None:
        """SIGSTOP the process group: nothing it has not committed yet reaches the database until `resume`."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool, as if the machine died."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (warm shutdown: running shards finish), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            os.killpg(self.process.pid, signal.SIGCONT)  # in case it was paused
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # pool processes left behind, if any
        except ProcessLookupError:
            pass


def start_workers(config: Path, folder: Path, names: list[str], concurrency: int) -> list[Worker]:
    """Start one worker per name and wait until each is ready."""
    workers = [Worker(config, name, concurrency, folder / f"{name}.log") for name in names]
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop(5)
        raise
    return workers
