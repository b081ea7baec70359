"""Bounces: real-world-shaped DSNs parsed, hard ones suppressed, soft ones counted; Maildir, mbox and a real IMAP server."""

from __future__ import annotations

import email
import mailbox
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from newsletter.bounces import parse_report, process
from newsletter.store.ledger import EditionRecord, Outcome, State
from newsletter.store import BounceRecord, Store
from tests.conftest import run_cli
from tests.imap_server import imap_server  # noqa: F401

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("postfix_user_unknown.eml", [("ada@example.org", "hard", "5.1.1")]),
        ("gmail_over_quota.eml", [("grace@example.org", "soft", "5.2.2")]),
        ("office365_policy.eml", [("dave@outlook.com", "soft", "5.7.1")]),  # the sender is blocked, not the address
        ("exim_nonstandard.eml", [("bob@example.net", "hard", "5.1.1")]),
        ("qmail_nonstandard.eml", [("carol@example.com", "hard", "5.1.1")]),
        ("delayed_warning.eml", []),  # a warning, not a bounce
        ("auto_reply.eml", []),  # not a report at all
    ],
)
def test_reports_are_recognised(name, expected):
    report = parse_report((FIXTURES / name).read_bytes())
    assert [(b.email, b.kind) for b in report.bounces] == [(e, k) for e, k, _ in expected]
    for bounce, (_, _, status) in zip(report.bounces, expected):
        assert status in bounce.reason


def test_the_returned_message_id_is_found():
    assert parse_report((FIXTURES / "qmail_nonstandard.eml").read_bytes()).original_message_id == (
        "<fedcba9876543210fedcba9876543210@example.org>")
    assert parse_report((FIXTURES / "office365_policy.eml").read_bytes()).original_message_id == (
        "<11112222333344445555666677778888@example.org>")


def sent_example(example_dir: Path) -> dict[str, str]:
    """Send the example editions; {recipient: Message-ID} as the outbox has them."""
    result = run_cli("send", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    ids = {}
    for path in (example_dir / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        ids[email.utils.parseaddr(message["To"])[1]] = message["Message-ID"]
    return ids


def reports_for(ids: dict[str, str]) -> list[bytes]:
    """The fixtures, quoting the Message-IDs the example editions really had."""
    out = []
    for path in sorted(FIXTURES.glob("*.eml")):
        data = path.read_bytes().replace(b"@ADA_MESSAGE_ID@", ids["ada@example.org"].encode())
        out.append(data.replace(b"@GRACE_MESSAGE_ID@", ids["grace@example.org"].encode()))
    return out


def add_config(example_dir: Path, table: str) -> None:
    path = example_dir / "config.toml"
    path.write_text(path.read_text() + "\n" + table)


def test_maildir_through_the_cli(example_dir):
    ids = sent_example(example_dir)
    box = mailbox.Maildir(example_dir / "bounce-box", create=True)
    for data in reports_for(ids):
        box.add(data)
    add_config(example_dir, '[bounces]\nsource = "maildir"\npath = "bounce-box"\n')
    first = run_cli("bounces", cwd=example_dir)
    assert first.returncode == 0, first.stderr
    assert "Read 7 messages: 5 bounce reports, 3 hard and 2 soft bounces." in first.stdout
    again = run_cli("bounces", cwd=example_dir)
    assert "0 hard and 0 soft bounces, 5 already counted" in again.stdout  # read twice, counted once

    listed = run_cli("subscribers", "list", cwd=example_dir)
    assert "suppressed: hard bounce: 550 5.1.1 <ada@example.org>" in listed.stdout
    grace = next(line for line in listed.stdout.splitlines() if "grace@example.org" in line)
    assert "suppressed" not in grace and "0 hard, 1 soft" in grace  # one soft bounce is not enough
    status = run_cli("status", cwd=example_dir)
    assert "bounced: ada@example.org: hard bounce: 550 5.1.1" in status.stdout
    assert "3 addresses suppressed, 3 of them for bounces" in status.stdout  # ada; bob and carol are not subscribers

    with Store(f"sqlite:///{example_dir / 'newsletter.db'}") as store:
        (entry,) = [e for e in store.ledger_rows(state="sent") if e.email == "grace@example.org"]
        assert store.soft_bounce_streak("grace@example.org") == 1
        with store.engine.connect() as conn:  # the soft bounce knows which edition it was
            from newsletter.store import bounces_table
            row = conn.execute(bounces_table.select().where(bounces_table.c.email == "grace@example.org")).one()
        assert row.edition_date == entry.edition_date


def test_mbox_option_and_missing_sources(example_dir, tmp_path):
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add((FIXTURES / "exim_nonstandard.eml").read_bytes())
    box.flush()
    result = run_cli("bounces", "--mbox", str(tmp_path / "bounces.mbox"), cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "1 hard and 0 soft" in result.stdout
    missing = run_cli("bounces", "--maildir", str(tmp_path / "nope"), cwd=example_dir)
    assert missing.returncode == 2 and "not a Maildir" in missing.stderr and "Traceback" not in missing.stderr
    unset = run_cli("bounces", cwd=example_dir)
    assert unset.returncode == 2 and "no [bounces] table" in unset.stderr
    add_config(example_dir, '[bounces]\nsource = "maildir"\n')
    bad = run_cli("bounces", cwd=example_dir)
    assert bad.returncode == 2 and "bounces: source = 'maildir' needs path" in bad.stderr


def soft_report(report_id: str, address: str, message_id: str) -> bytes:
    return (FIXTURES / "gmail_over_quota.eml").read_bytes().replace(b"grace@example.org", address.encode()).replace(
        b"@GRACE_MESSAGE_ID@", message_id.encode()).replace(
        b"<67ab12cd.050a0220.1b2c3d.9f8eSMTPIN_ADDED_DSN@mx.google.com>", report_id.encode())


def test_soft_bounces_suppress_after_n_editions_in_a_row(store):
    day = date(2026, 11, 1)
    address = "full@example.org"

    def sent(n):
        store.record_pending([EditionRecord(address, day + timedelta(days=n), f"<ed{n}@example.org>", [], "S")])
        store.record_outcomes(day + timedelta(days=n), [Outcome(address, State.SENT, "250 ok")])

    for n in range(5):
        sent(n)
    # editions 0 and 1 bounce, 2 gets through, 3 and 4 bounce: the streak is 2, not 4
    for n in (0, 1, 3, 4):
        run = process(store, iter([soft_report(f"<dsn{n}@x>", address, f"<ed{n}@example.org>")]), soft_limit=3)
        assert run.soft and not run.suppressed
    assert store.soft_bounce_streak(address) == 2
    sent(5)
    run = process(store, iter([soft_report("<dsn5@x>", address, "<ed5@example.org>")]), soft_limit=3)
    assert run.suppressed and "3 soft bounces in a row" in store.suppression_reasons()[address]
    # the same report again changes nothing
    assert process(store, iter([soft_report("<dsn5@x>", address, "<ed5@example.org>")]), soft_limit=3).already_seen == 1


def test_hard_bounce_keeps_an_existing_reason(store):
    store.suppress("ada@example.org", reason="one-click unsubscribe")
    run = process(store, iter([(FIXTURES / "postfix_user_unknown.eml").read_bytes()]), soft_limit=3)
    assert run.hard and not run.suppressed
    assert store.suppression_reasons()["ada@example.org"] == "one-click unsubscribe"
    assert store.bounce_counts() == {"ada@example.org": {"hard": 1, "soft": 0}}
    assert store.record_bounce(BounceRecord("<r>", "x@example.org", "soft", "4.2.2")) is True


def test_reads_a_real_imap_server(example_dir, imap_server):
    ids = sent_example(example_dir)
    client = IMAPClient(imap_server.host, port=imap_server.port, ssl=False)
    client.login(imap_server.username, imap_server.password)
    client.delete_messages(client.select_folder("INBOX") and client.search(["ALL"]))
    client.expunge()
    for data in reports_for(ids):
        client.append("INBOX", data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    add_config(example_dir, f'[bounces]\nsource = "imap"\nhost = "{imap_server.host}"\nport = {imap_server.port}\n'
                            f'security = "none"\nusername = "{imap_server.username}"\npassword_env = "TEST_IMAP_PASSWORD"\n')
    wrong = run_cli("bounces", cwd=example_dir, env={"TEST_IMAP_PASSWORD": "wrong"})
    assert wrong.returncode == 2 and "imap://" in wrong.stderr and "Traceback" not in wrong.stderr
    first = run_cli("bounces", cwd=example_dir, env={"TEST_IMAP_PASSWORD": imap_server.password})
    assert first.returncode == 0, first.stderr
    assert "Read 7 messages: 5 bounce reports, 3 hard and 2 soft bounces." in first.stdout
    client.select_folder("INBOX")
    assert client.search(["UNSEEN"]) == [] and len(client.search(["SEEN"])) == 7  # marked seen
    client.logout()
    second = run_cli("bounces", cwd=example_dir, env={"TEST_IMAP_PASSWORD": imap_server.password})
    assert "Read 0 messages" in second.stdout
    listed = run_cli("subscribers", "list", cwd=example_dir)
    assert "suppressed: hard bounce: 550 5.1.1" in listed.stdout
    # the next edition is not sent to the hard-bounced address
    after = run_cli("send", "--dry-run", "--date", "2024-12-12", cwd=example_dir)
    assert after.returncode == 0, after.stderr
    assert re_row("suppressed (unsubscribed, bounced)", after.stdout) == "1"


def re_row(label: str, table: str) -> str:
    """The value next to `label` in a Rich summary table."""
    line = next(line for line in table.splitlines() if label in line)
    return line.split("│")[-2].strip()


def test_run_polls_bounces_on_its_schedule(config):
    from newsletter.app import make_service
    from newsletter.config import BouncesSection

    config.model.bounces = BouncesSection(source="maildir", path="box", poll="*/15 * * * *")
    with Store(config.store_url) as store:
        jobs = {row["job"]: row for row in make_service(config, store).next_runs()}
    assert jobs["bounces"]["cron"] == "*/15 * * * *"


def test_a_version_2_store_gets_the_bounces_table(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with Store(f"sqlite:///{path}") as store:
        store.suppress("x@example.org")
    with sqlite3.connect(path) as conn:  # back to schema 2: no bounces table
        conn.execute("DROP TABLE bounces")
        conn.execute("PRAGMA user_version=2")
    with Store(f"sqlite:///{path}") as store:
        assert store.record_bounce(BounceRecord("<r@x>", "y@example.org", "hard", "5.1.1 no such user"))
        assert store.bounce_counts() == {"y@example.org": {"hard": 1, "soft": 0}}
        assert store.suppression_reasons() == {"x@example.org": "unsubscribed"}
