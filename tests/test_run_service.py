"""`newsletter run` as a real process: catch-up on start writes the edition, a second
instance refuses to start, SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.conftest import REPO, run_cli


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_run_catches_up_refuses_a_second_instance_and_stops_on_sigterm(example_dir: Path):
    config = example_dir / "config.toml"
    config.write_text(config.read_text().replace('fetch = ["hf", "arxiv:cs.LG"]', "fetch = []"))  # no network
    folder = example_dir / "examples" / "subscribers"
    for path in folder.glob("*.toml"):
        path.unlink()
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    (folder / "early.toml").write_text(
        f'email = "early@example.org"\ntimezone = "UTC"\nsend_at = "{an_hour_ago:%H:%M}"\nmax_age_days = 3650\n'
    )
    assert run_cli("ingest", cwd=example_dir).returncode == 0

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    service = subprocess.Popen([sys.executable, "-m", "newsletter", "run"], cwd=example_dir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        outbox = example_dir / "outbox"
        assert wait_for(lambda: outbox.is_dir() and len(list(outbox.glob("*.eml"))) == 1), "no catch-up edition"
        second = run_cli("run", cwd=example_dir, timeout=30)
        assert second.returncode == 1
        assert "another `newsletter run` holds this lock" in second.stderr
        status = run_cli("status", "--json", cwd=example_dir)
        assert '"job": "send"' in status.stdout and '"next_run_utc"' in status.stdout
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    assert service.returncode == 0, stderr
    assert "sent 1" in stderr
