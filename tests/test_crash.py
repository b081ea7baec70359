"""Exactly once against real processes: kill -9 mid-send then rerun, and two runs at once on one store.

Every test runs `python -m newsletter` processes on a real SQLite file (or a
private PostgreSQL), sending by SMTP into an aiosmtpd sink on loopback (or
through the `file` backend), and counts what arrived.
"""

from __future__ import annotations

import collections
import email
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from newsletter.executor import available_cores
from newsletter.store import Store
from tests.conftest import REPO, run_cli
from tests.pg_server import pg_server, pg_url  # noqa: F401 (fixtures)
from tests.smtp_fixtures import free_port

SUBSCRIBERS = 2000
CONCURRENCY = 2
CHUNK = 50
DAY = date(2026, 11, 25)
ENV = {"NEWSLETTER_SECRET": "test-secret"}


class SlowSink:
    """An SMTP handler that records every (recipient, Message-ID) and takes a little time over each."""

    def __init__(self, delay: float):
        self.delay = delay
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append((envelope.rcpt_tos[0], message["Message-ID"]))
        return "250 OK"


@pytest.fixture
def sink():
    handler = SlowSink(delay=0.002)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def setup(folder: Path, delivery: str, *, subscribers: int = SUBSCRIBERS, store: str | None = None) -> Path:
    """The example config with `delivery` and `subscribers` subscriber files; the papers ingested."""
    config = folder / "config.toml"
    text = config.read_text()
    if store:
        text = text.replace('[store]\npath = "newsletter.db"', f'[store]\nurl = "{store}"')
    config.write_text(text[: text.index("[delivery]")] + delivery + text[text.index("[schedule]"):])
    people = folder / "examples" / "subscribers"
    for path in people.glob("*.toml"):
        path.unlink()
    for n in range(subscribers):
        (people / f"r{n:04d}.toml").write_text(
            f'email = "reader{n:04d}@example.org"\nmode = "trending"\nmax_items = 3\nmax_age_days = 3650\n'
        )
    ingest = run_cli("ingest", "examples/papers/hf-page-000.txt", "examples/papers/hf-page-004.txt", cwd=folder, env=ENV)
    assert ingest.returncode == 0, ingest.stderr
    return config


def smtp_delivery(port: int) -> str:
    return (f'[delivery]\nbackend = "smtp"\nchunk_size = {CHUNK}\n\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "none"\nconcurrency = {CONCURRENCY}\n\n')


def start_send(folder: Path, day: date) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **ENV}
    return subprocess.Popen([sys.executable, "-m", "newsletter", "send", "--no-ingest", "--date", day.isoformat()],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"the run ended before {what}: " + process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait()


def everyone() -> set[str]:
    return {f"reader{n:04d}@example.org" for n in range(SUBSCRIBERS)}


KILL_POINTS = (0.1, 0.5, 0.9)


def test_kill_9_at_several_points_of_an_smtp_send_loses_nothing_and_repeats_at_most_the_messages_in_flight(
    example_dir, sink
):
    handler, port = sink
    setup(example_dir, smtp_delivery(port))
    # with results streamed, only what was on the wire at a kill comes twice: one per connection
    bound = CONCURRENCY
    for kills, point in enumerate(KILL_POINTS, 1):
        # each rerun starts right away: the killed process is gone, so its claims are taken over at once
        run = start_send(example_dir, DAY)
        kill_when(run, lambda: len({r for r, _ in handler.received}) >= SUBSCRIBERS * point, f"{point:.0%} was received")
        time.sleep(0.2)  # let the sink finish what was already on the wire
        counts = collections.Counter(rcpt for rcpt, _ in handler.received)
        duplicates = sum(n - 1 for n in counts.values())
        assert duplicates <= kills * bound, (point, duplicates)

    rerun = run_cli("send", "--no-ingest", "--date", DAY.isoformat(), cwd=example_dir, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    counts = collections.Counter(rcpt for rcpt, _ in handler.received)
    assert set(counts) == everyone()  # nobody lost
    assert sum(n - 1 for n in counts.values()) <= len(KILL_POINTS) * bound
    ids = collections.defaultdict(set)
    for rcpt, message_id in handler.received:
        ids[rcpt].add(message_id)
    assert all(len(v) == 1 for v in ids.values())  # a duplicate carries the same Message-ID
    with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
        assert store.ledger_counts()["sent"] == SUBSCRIBERS
        # attempts count every try, but for the ones a kill cut short (those are among the duplicates)
        duplicates = len(handler.received) - SUBSCRIBERS
        assert 0 <= len(handler.received) - sum(e.attempts for e in store.ledger_rows()) <= duplicates


def test_kill_9_at_several_points_of_a_file_send_writes_each_edition_once(example_dir):
    setup(example_dir, f'[delivery]\nbackend = "file"\nchunk_size = {CHUNK}\n\n[delivery.file]\ndir = "outbox"\n\n')
    outbox = example_dir / "outbox"

    def written():
        return [entry for entry in os.scandir(outbox) if not entry.name.startswith(".")] if outbox.exists() else []

    rewritten = 0
    for point in (0.3, 0.8):
        run = start_send(example_dir, DAY)
        kill_when(run, lambda: len(written()) >= SUBSCRIBERS * point, f"{point:.0%} was written")
        before = {entry.name: entry.inode() for entry in written()}
        with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
            unrecorded = len(before) - store.ledger_counts()["sent"]
        # per worker process (one per core by default): outcomes are group-committed every 50 results or 100 ms,
        # so at most two batches written but not yet recorded, plus the chunk written but not yet made durable
        assert 0 <= unrecorded <= available_cores() * (CHUNK + 100)
        rerun = run_cli("send", "--no-ingest", "--date", DAY.isoformat(), cwd=example_dir, env=ENV)
        assert rerun.returncode == 0, rerun.stderr
        after = {entry.name: entry.inode() for entry in written()}
        assert len(after) == SUBSCRIBERS  # one file per edition: nobody lost, nobody twice
        again = [name for name, inode in before.items() if after[name] != inode]
        assert len(again) <= unrecorded  # only the unrecorded ones were written again (the same file)
        rewritten += len(again)
        with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
            assert store.ledger_counts()["sent"] == SUBSCRIBERS
        with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store, store._writes.begin() as conn:
            conn.exec_driver_sql("DELETE FROM deliveries")  # the same send again from the start, for the next kill point
            conn.exec_driver_sql("DELETE FROM sent_papers")
        for entry in written():
            os.unlink(entry.path)


def overlapping_sends(folder: Path, handler, runs: int = 2) -> list[subprocess.CompletedProcess]:
    processes = [start_send(folder, DAY) for _ in range(runs)]
    done = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def assert_exactly_once(handler, results, subscribers: int) -> None:
    counts = collections.Counter(rcpt for rcpt, _ in handler.received)
    assert len(counts) == subscribers and set(counts.values()) == {1}, collections.Counter(counts.values())
    for result in results:
        assert result.returncode == 0, result.stderr
    said = [result.stdout for result in results]
    # both runs say what the other did
    assert all("claimed by another run" in text for text in said), said


def test_two_sends_at_once_on_sqlite_send_every_edition_once(example_dir, sink):
    handler, port = sink
    setup(example_dir, smtp_delivery(port), subscribers=600)
    assert_exactly_once(handler, overlapping_sends(example_dir, handler), 600)


def test_two_sends_at_once_on_postgresql_send_every_edition_once(example_dir, sink, pg_url):
    handler, port = sink
    setup(example_dir, smtp_delivery(port), subscribers=600, store=pg_url)
    assert_exactly_once(handler, overlapping_sends(example_dir, handler), 600)
    with Store(pg_url) as store:
        assert store.ledger_counts(DAY)["sent"] == 600


def test_run_catching_up_while_send_runs_sends_every_edition_once(example_dir, sink):
    """`newsletter run` starts with an overdue edition (catch-up) while a manual `send` sends the same one."""
    handler, port = sink
    config = setup(example_dir, smtp_delivery(port), subscribers=600)
    from datetime import datetime, timezone

    due_at = datetime.now(timezone.utc) - timedelta(minutes=2)  # UTC: the edition was due two minutes ago
    due = due_at.strftime("%H:%M")
    for path in (example_dir / "examples" / "subscribers").glob("*.toml"):
        path.write_text(path.read_text() + f'timezone = "UTC"\nsend_at = "{due}"\n')
    text = config.read_text()
    config.write_text(text.replace('fetch = ["hf", "arxiv:cs.LG"]', "fetch = []"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **ENV}
    service = subprocess.Popen([sys.executable, "-m", "newsletter", "run"], cwd=example_dir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not handler.received and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.01)
        assert handler.received, "run did not start sending: " + (service.stderr.read() if service.poll() is not None else "")
        manual = run_cli("send", "--no-ingest", "--date", due_at.date().isoformat(), cwd=example_dir, env=ENV)
        assert manual.returncode == 0, manual.stderr
        while len(handler.received) < 600 and time.monotonic() < deadline + 60:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        service.send_signal(signal.SIGTERM)
        _, log = service.communicate(timeout=60)
    counts = collections.Counter(rcpt for rcpt, _ in handler.received)
    assert len(counts) == 600 and set(counts.values()) == {1}, (collections.Counter(counts.values()), log[-2000:])
    assert "claimed by another run" in manual.stdout or "already sent" in manual.stdout
