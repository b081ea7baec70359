"""Kill `newsletter send` with SIGKILL mid-run, run it again: nobody is missed, and only the
editions that were `sending` at the kill may arrive twice."""

from __future__ import annotations

import collections
import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from newsletter.store import Store
from tests.conftest import REPO, run_cli

SUBSCRIBERS = 500


class SlowSink:
    """An SMTP handler that records every message and takes a little time over each."""

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_config(example: str, port: int) -> str:
    """The example config with its [delivery] sections replaced by SMTP to the local sink."""
    delivery = (
        '[delivery]\nbackend = "smtp"\nchunk_size = 25\n\n'
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconcurrency = 2\n\n'
    )
    return example[: example.index("[delivery]")] + delivery + example[example.index("[schedule]"):]


@pytest.fixture
def sink():
    handler = SlowSink(delay=0.004)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def test_sigkill_mid_run_then_rerun(example_dir: Path, sink):
    handler, port = sink
    config = example_dir / "config.toml"
    config.write_text(smtp_config(config.read_text(), port))
    folder = example_dir / "examples" / "subscribers"
    for path in folder.glob("*.toml"):
        path.unlink()
    for n in range(SUBSCRIBERS):
        (folder / f"r{n:03d}.toml").write_text(
            f'email = "reader{n:03d}@example.org"\nmode = "trending"\nmax_items = 5\nmax_age_days = 3650\n'
        )
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": "test-secret"}
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "send", "--date", "2026-11-25"],
                               cwd=example_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(handler.received) < SUBSCRIBERS // 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(0.2)  # let the sink finish messages already on the wire

    with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
        uncertain = {row.email for row in store.ledger_rows(state="sending")}
        states = collections.Counter(row.state for row in store.ledger_rows())
    received_before = len(handler.received)
    assert 0 < received_before < SUBSCRIBERS
    assert states["sent"] < SUBSCRIBERS

    rerun = run_cli("send", "--date", "2026-11-25", cwd=example_dir, env={"NEWSLETTER_SECRET": "test-secret"})
    assert rerun.returncode == 0, rerun.stderr
    assert "uncertain after a crash" in rerun.stdout or not uncertain

    counts = collections.Counter(rcpt for rcpt, _ in handler.received)
    assert set(counts) == {f"reader{n:03d}@example.org" for n in range(SUBSCRIBERS)}
    duplicates = {rcpt for rcpt, n in counts.items() if n > 1}
    assert duplicates <= uncertain
    # a duplicate carries the same Message-ID, so receivers can collapse it
    ids = collections.defaultdict(set)
    for rcpt, message_id in handler.received:
        ids[rcpt].add(message_id)
    assert all(len(v) == 1 for v in ids.values())
    with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
        assert store.ledger_counts()["sent"] == SUBSCRIBERS
