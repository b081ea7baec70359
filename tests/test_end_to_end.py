"""The README's main command, end to end through the real CLI."""

from __future__ import annotations

import email
from email import policy
from html import escape
from pathlib import Path

from newsletter.store import Store
from tests.conftest import run_cli

EXAMPLE_SUBSCRIBERS = {"ada@example.org", "grace@example.org", "alan@example.org"}


def read_outbox(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def test_send_writes_one_email_per_subscriber_then_nothing(example_dir: Path):
    first = run_cli("send", cwd=example_dir)
    assert first.returncode == 0, first.stderr
    assert "Ingested" in first.stdout and "Wrote 3 emails" in first.stdout

    messages = read_outbox(example_dir / "outbox")
    assert {m["To"].addresses[0].addr_spec for m in messages} == EXAMPLE_SUBSCRIBERS
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
            assert message[header], header
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/unsubscribe?token=")

    status = run_cli("status", "--json", cwd=example_dir)
    assert '"sent": 3' in status.stdout

    second = run_cli("send", cwd=example_dir)
    assert second.returncode == 0, second.stderr
    assert "Nothing new to send" in second.stdout
    assert len(list((example_dir / "outbox").glob("*.eml"))) == 3


def test_picked_titles_appear_in_both_parts(example_dir: Path):
    result = run_cli("send", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    store = Store(f"sqlite:///{example_dir / 'newsletter.db'}")
    try:
        rows = {row.email: row for row in store.ledger_rows(state="sent")}
        papers = store.get_papers([pid for row in rows.values() for pid in row.paper_ids])
    finally:
        store.close()
    assert set(rows) == EXAMPLE_SUBSCRIBERS
    for message in read_outbox(example_dir / "outbox"):
        row = rows[message["To"].addresses[0].addr_spec]
        assert row.message_id == message["Message-ID"]
        text = " ".join(message.get_body(("plain",)).get_content().split())
        html = message.get_body(("html",)).get_content()
        assert row.paper_ids
        for paper_id in row.paper_ids:
            title = papers[paper_id].title
            assert " ".join(title.split()) in text
            assert escape(title, quote=False) in html or escape(title) in html


def test_bad_config_gives_one_line_and_exit_2(example_dir: Path):
    config = example_dir / "config.toml"
    config.write_text(config.read_text().replace('backend = "file"', 'backend = "smpt"'))
    result = run_cli("send", cwd=example_dir)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("config.toml: delivery.backend: unknown backend 'smpt' (choose one of:")
    assert "Traceback" not in result.stderr


def test_broken_config_toml_names_the_line(example_dir: Path):
    config = example_dir / "config.toml"
    config.write_text(config.read_text() + "\n[broken\n")
    result = run_cli("send", cwd=example_dir)
    assert result.returncode == 2
    assert result.stderr.startswith("config.toml:")
    assert "Traceback" not in result.stderr


def test_bad_subscriber_is_reported_and_others_still_get_their_email(example_dir: Path):
    bad = example_dir / "examples" / "subscribers" / "zed.toml"
    bad.write_text('email = "zed@example.org"\ntimezone = "Mars/Base"\n')
    result = run_cli("send", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "examples/subscribers/zed.toml: timezone: unknown time zone 'Mars/Base'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(read_outbox(example_dir / "outbox")) == 3


def test_dry_run_sends_and_records_nothing(example_dir: Path):
    result = run_cli("send", "--dry-run", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "Dry run" in result.stdout
    assert not (example_dir / "outbox").exists() or not list((example_dir / "outbox").glob("*.eml"))
    again = run_cli("send", cwd=example_dir)
    assert "Wrote 3 emails" in again.stdout
