"""Scale-out that survives its parts: a restarted PostgreSQL, one scheduler per cluster, shards that fit the workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from newsletter.app import SCHEDULER_LOCK
from newsletter.config import load_config
from newsletter.store import Store
from newsletter.workers import shard_size
from tests.conftest import REPO, run_cli
from tests.pg_server import pg_server, pg_url  # noqa: F401 (fixtures)


def test_stale_pooled_connections_are_replaced_after_the_database_drops_them(pg_url: str):
    psycopg = pytest.importorskip("psycopg")
    with Store(pg_url) as store:
        store.ledger_counts()  # a pooled connection now exists
        with psycopg.connect(pg_url, autocommit=True) as admin:  # what a restart does to every open session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert store.ledger_counts()["sent"] == 0  # checked before use, re-made: no error


def test_a_second_scheduler_on_one_postgresql_store_refuses_to_start(example_dir: Path, tmp_path: Path, pg_url: str):
    config = example_dir / "config.toml"
    text = config.read_text().replace('fetch = ["hf", "arxiv:cs.LG"]', "fetch = []")
    config.write_text(text.replace('[store]\npath = "newsletter.db"', f'[store]\nurl = "{pg_url}"'))
    other_host = tmp_path / "other-host"  # its own folder, so its own lock file: only the database is shared
    other_host.mkdir()
    (other_host / "config.toml").write_text(config.read_text())
    (other_host / "examples").symlink_to(example_dir / "examples")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-m", "newsletter", "run"], cwd=example_dir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # start the second only once the first holds the store's scheduler lock (else the second may win the race)
        deadline = time.monotonic() + 90
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while time.monotonic() < deadline and first.poll() is None:
                held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                                    (SCHEDULER_LOCK & 0xFFFFFFFF,)).fetchone()[0]
                if held:
                    break
                time.sleep(0.2)
        second = run_cli("run", cwd=other_host, timeout=60)
        assert first.poll() is None, first.stderr.read()
        assert second.returncode == 1 and "holds the scheduler lock of this store" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    again = subprocess.Popen([sys.executable, "-m", "newsletter", "run"], cwd=other_host, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # once the first has stopped, another host may take over
    assert again.poll() is None, again.stderr.read()
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)


def test_default_shards_give_every_pool_process_work(example_dir: Path):
    config = load_config(example_dir / "config.toml")
    assert shard_size(config, 3000) == 94  # 32 shards, not 3 of 1,000
    assert shard_size(config, 100) == 25 and shard_size(config, 1_000_000) == 1000
    path = example_dir / "config.toml"
    path.write_text(path.read_text() + "\n[celery]\nshard_size = 500\n")
    assert shard_size(load_config(path), 3000) == 500
