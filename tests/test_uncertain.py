"""Uncertain stays uncertain, and what cannot get better stops the run: the CLI against a real SMTP server."""

from __future__ import annotations

import json
from pathlib import Path

from newsletter.store import Store
from tests.conftest import DAY, run_cli
from tests.smtp_fixtures import check_password, smtp_factory, smtp_server  # noqa: F401 (fixtures)

ENV = {"NEWSLETTER_SECRET": "test-secret"}


def smtp_config(example_dir: Path, port: int, extra: str = "") -> None:
    config = example_dir / "config.toml"
    text = config.read_text()
    delivery = (f'[delivery]\nbackend = "smtp"\nchunk_size = 2\n\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                f'security = "none"\nconcurrency = 1\nfinal_reply_timeout = 1\n{extra}\n')
    config.write_text(text[: text.index("[delivery]")] + delivery + text[text.index("[schedule]"):])


def ledger(example_dir: Path) -> dict:
    with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
        return {e.email: e for e in store.ledger_entries(DAY).values()}


def test_a_late_250_leaves_one_copy_uncertain_until_released_with_the_same_message_id(example_dir: Path, smtp_server):
    smtp_config(example_dir, smtp_server.port)
    smtp_server.sink.late_at = {2: 3.0}  # the second message is stored, but its 250 comes after the 1 s wait
    first = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir, env=ENV)
    assert first.returncode == 1, first.stderr  # something needs a look
    received = [(r.rcpt_tos[0], r.message_id) for r in smtp_server.sink.received]
    assert len(received) == 3 and len({rcpt for rcpt, _ in received}) == 3
    [(late, late_id)] = [item for item in received if ledger(example_dir)[item[0]].state == "uncertain"]
    assert f"uncertain: {late}:" in first.stderr

    again = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir, env=ENV)
    assert again.returncode == 0 and "held: uncertain or review" in again.stdout
    assert len(smtp_server.sink.received) == 3  # never retried on its own
    status = run_cli("status", "--json", cwd=example_dir)
    problems = json.loads(status.stdout)["problems"]
    assert [(p["email"], p["state"]) for p in problems] == [(late, "uncertain")]
    shown = run_cli("status", cwd=example_dir)
    assert f"uncertain: {late} {DAY}" in shown.stdout and "--resend-uncertain" in shown.stdout

    refused = run_cli("send", "--resend-uncertain", cwd=example_dir, env=ENV)
    assert refused.returncode == 2 and "name the subscribers (EMAIL...) or give --all" in refused.stderr
    released = run_cli("send", "--resend-uncertain", late, cwd=example_dir, env=ENV)
    assert released.returncode == 0, released.stderr
    assert "Released 1 held editions" in released.stdout
    assert [(r.rcpt_tos[0], r.message_id) for r in smtp_server.sink.received[3:]] == [(late, late_id)]
    assert {e.state for e in ledger(example_dir).values()} == {"sent"}


def test_a_refused_password_stops_the_run_with_exit_2_and_leaves_the_rest_pending(example_dir: Path, smtp_factory):
    auth = check_password(("digest", "right"))
    server = smtp_factory(authenticator=auth, auth_require_tls=False)
    smtp_config(example_dir, server.port, 'username = "digest"\npassword_env = "SMTP_PASSWORD"\n')
    result = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir, env={**ENV, "SMTP_PASSWORD": "wrong"})
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("stopped: ")]  # (after any config warning)
    assert "535" in line and "Traceback" not in result.stderr
    assert auth.attempts == 1 and server.sink.received == []
    entries = ledger(example_dir)
    assert {e.state for e in entries.values()} <= {"pending"} and sum(e.attempts for e in entries.values()) == 0

    fixed = run_cli("send", "--date", DAY.isoformat(), cwd=example_dir, env={**ENV, "SMTP_PASSWORD": "right"})
    assert fixed.returncode == 0, fixed.stderr
    assert len(server.sink.received) == 3 and {e.state for e in ledger(example_dir).values()} == {"sent"}
