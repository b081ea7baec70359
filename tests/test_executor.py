"""The parallel local executor: `newsletter send` in several worker processes, each edition once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.executor import add_up, backend_options_for, worker_count
from newsletter.pipeline import RunSummary
from tests.conftest import run_cli
from tests.smtp_fixtures import check_password, smtp_factory  # noqa: F401

SUBSCRIBERS = 300


def many_subscribers(example_dir: Path, count: int = SUBSCRIBERS) -> int:
    folder = example_dir / "examples" / "subscribers"
    for n in range(count):
        (folder / f"gen{n:04d}.toml").write_text(
            f'email = "gen{n}@example.org"\nmode = "trending"\nmax_items = 3\nmax_age_days = 3650\n'
        )
    return len(list(folder.glob("*.toml")))


def configure(example_dir: Path, delivery: str) -> None:
    config = example_dir / "config.toml"
    text = config.read_text()
    start = text.index("[delivery]\n")
    config.write_text(text[:start] + delivery)


def ledger(example_dir: Path) -> list[tuple]:
    with sqlite3.connect(example_dir / "newsletter.db") as db:
        return db.execute("SELECT state, claimed_by, count(*) FROM deliveries GROUP BY state, claimed_by").fetchall()


def test_parallel_send_sends_each_edition_once_and_adds_up(example_dir: Path):
    total = many_subscribers(example_dir)
    configure(example_dir, '[delivery]\nbackend = "file"\nchunk_size = 40\nprocesses = 2\n\n[delivery.file]\ndir = "outbox"\n')
    result = run_cli("send", "--date", "2026-11-25", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    files = list((example_dir / "outbox").glob("*.eml"))
    assert len(files) == total
    assert len({f.name.rsplit("-", 1)[0] for f in files}) == total  # one file per recipient
    rows = ledger(example_dir)
    assert {state for state, _, _ in rows} == {"sent"} and sum(n for *_, n in rows) == total
    assert len({owner for _, owner, _ in rows}) == 2  # both workers took a share, through claims
    assert f"│ sent              │ {total}" in result.stdout and f"Wrote {total} emails" in result.stdout

    again = run_cli("send", "--date", "2026-11-25", cwd=example_dir)
    assert again.returncode == 0, again.stderr
    assert len(list((example_dir / "outbox").glob("*.eml"))) == total  # nothing sent twice


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_parallel_send_with_a_wrong_password_stops_with_one_line(example_dir: Path, smtp_factory):  # noqa: F811
    many_subscribers(example_dir)
    authenticator = check_password(("papers", "s3cret"))
    server = smtp_factory(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    configure(example_dir, '[delivery]\nbackend = "smtp"\nchunk_size = 40\nprocesses = 2\n\n[delivery.smtp]\n'
              f'host = "127.0.0.1"\nport = {server.port}\nusername = "papers"\npassword_env = "TEST_SMTP_PASSWORD"\n')
    env = {"TEST_SMTP_PASSWORD": "wrong", "NEWSLETTER_SECRET": "test-secret"}
    result = run_cli("send", "--date", "2026-11-25", cwd=example_dir, env=env)
    assert result.returncode == 2, result.stderr
    *warnings, line = result.stderr.strip().splitlines()  # warnings: e.g. base_url on loopback with real mail
    assert "Traceback" not in result.stderr and all("535" not in w for w in warnings)
    assert "535" in line and "TEST_SMTP_PASSWORD" in line and "wrong" not in line
    assert 1 <= authenticator.attempts <= 2  # one login per worker at most, whatever the number of chunks
    assert server.sink.received == []
    assert not [row for row in ledger(example_dir) if row[0] == "sent"]


def test_smtp_connections_and_rate_are_shared_out(example_dir: Path):
    configure(example_dir, '[delivery]\nbackend = "smtp"\n\n[delivery.smtp]\nconcurrency = 5\nrate_limit = 10\n')
    config = load_config(example_dir / "config.toml")
    assert backend_options_for(config, 2) == {"concurrency": 2, "rate_limit": 5.0}  # never more than 5 in flight
    assert backend_options_for(config, 1) == {"concurrency": 5, "rate_limit": 10}
    assert [worker_count(config, n) for n in (1, 4, 8)] == [1, 4, 5]  # at least one connection each
    configure(example_dir, '[delivery]\nbackend = "file"\n')
    assert worker_count(load_config(example_dir / "config.toml"), 8) == 8


def test_kill_9_of_send_stops_its_workers_too(example_dir: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    many_subscribers(example_dir, 3000)
    configure(example_dir, '[delivery]\nbackend = "file"\nchunk_size = 20\nprocesses = 2\n\n[delivery.file]\ndir = "outbox"\n'
              '\n[celery]\nlease_seconds = 1\n')  # the killed workers' claims run out at once
    outbox = example_dir / "outbox"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "newsletter", "send", "--date", "2026-11-25"], cwd=example_dir,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (outbox.exists() and len(os.listdir(outbox)) >= 200) and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    time.sleep(1.0)
    settled = len(os.listdir(outbox))
    time.sleep(1.5)
    assert len(os.listdir(outbox)) == settled < 3003  # no orphaned worker goes on writing
    rerun = run_cli("send", "--date", "2026-11-25", cwd=example_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert len([f for f in os.listdir(outbox) if f.endswith(".eml")]) == 3003


def test_summaries_add_up():
    first = RunSummary(sent=3, failed=1, failures=[("a@x", "550")], empty=["b@x"], processed=5)
    second = RunSummary(sent=2, failures=[("c@x", "451")], processed=2)
    first.dates.add("d1"), second.dates.add("d2")
    total = add_up([first, second])
    assert (total.sent, total.failed, total.processed) == (5, 1, 7)
    assert total.failures == [("a@x", "550"), ("c@x", "451")] and total.empty == ["b@x"]
    assert total.dates == {"d1", "d2"}
