"""One edition run against a real SQLite store: exactly once, resumable, never repeating a paper."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from newsletter.delivery.memory import MemoryBackend
from newsletter.models import Paper, Subscriber
from newsletter.pipeline import is_done, run_edition
from tests.conftest import DAY




def subscribers(count: int, **fields) -> list[Subscriber]:
    return [Subscriber(email=f"reader{n}@example.org", name=f"Reader {n}", max_items=5, **fields) for n in range(count)]


def memory(**settings) -> MemoryBackend:
    """A fresh memory backend; its (class-wide) outbox starts empty."""
    MemoryBackend.outbox.clear()
    return MemoryBackend(MemoryBackend.Settings(**settings), base_dir=Path("."))


def test_a_second_run_sends_nothing(config, store):
    readers = subscribers(7)
    backend = memory()
    first = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (first.sent, first.failed) == (7, 0)
    second = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (second.sent, second.already_sent) == (0, 7)
    assert len(backend.outbox) == 7
    assert store.ledger_counts(DAY)["sent"] == 7
    assert is_done(store, readers, DAY)


def test_never_repeats_a_paper_across_editions(config, store):
    [reader] = subscribers(1)
    backend = memory()
    run_edition(config, store, [reader], day=DAY, backend=backend)
    run_edition(config, store, [reader], day=DAY + timedelta(days=1), backend=backend)
    first, second = (store.ledger_entries(d)[reader.email].paper_ids for d in (DAY, DAY + timedelta(days=1)))
    assert len(first) == len(second) == 5
    assert not set(first) & set(second)


def test_no_picks_means_no_email_and_the_run_says_so(config, store):
    [reader] = subscribers(1, mode="keywords", keywords=["quantum chromodynamics"])
    summary = run_edition(config, store, [reader], day=DAY, backend=memory())
    assert summary.sent == 0 and summary.empty == [reader.email]
    assert store.ledger_entries(DAY) == {}


def test_permanent_failure_is_recorded_and_the_rest_continue(config, store):
    readers = subscribers(4)
    backend = memory(fail_recipients={"reader2@example.org"})
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (summary.sent, summary.failed) == (3, 1)
    entry = store.ledger_entries(DAY)["reader2@example.org"]
    assert (entry.state, entry.reply) == ("failed", "550 mailbox unavailable")
    again = run_edition(config, store, readers, day=DAY, backend=memory())
    assert (again.sent, again.previously_failed) == (0, 1)
    retried = run_edition(config, store, readers, day=DAY, backend=memory(), retry_failed=True)
    assert retried.sent == 1
    assert store.ledger_entries(DAY)["reader2@example.org"].state == "sent"


def test_uncertain_rows_are_resent_with_the_same_message_id(config, store):
    readers = subscribers(3)
    run_edition(config, store, readers, day=DAY, backend=memory())
    ids = {e.email: e.message_id for e in store.ledger_entries(DAY).values()}
    store.mark(DAY, [("reader1@example.org", "sending", None)])  # as if the process died mid-send
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (summary.uncertain, summary.sent, summary.already_sent) == (1, 1, 2)
    [resent] = backend.outbox
    assert resent.recipient == "reader1@example.org" and resent.message_id == ids["reader1@example.org"]
    assert f"Message-ID: {ids['reader1@example.org']}".encode() in resent.data


def test_uncertain_rows_can_be_held_for_review(config, store):
    readers = subscribers(2)
    run_edition(config, store, readers, day=DAY, backend=memory())
    store.mark(DAY, [("reader0@example.org", "sending", None)])
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend, resend_uncertain=False)
    assert (summary.uncertain, summary.sent) == (1, 0) and backend.outbox == []
    assert store.ledger_entries(DAY)["reader0@example.org"].state == "review"


def test_pending_rows_from_a_crash_are_sent_with_their_recorded_picks(config, store):
    readers = subscribers(2)

    class CrashingBackend(MemoryBackend):
        def send_messages(self, messages):
            raise KeyboardInterrupt  # the process is stopped while the backend has the batch

    with pytest.raises(KeyboardInterrupt):
        run_edition(config, store, readers, day=DAY, backend=CrashingBackend(MemoryBackend.Settings(), base_dir=Path(".")))
    recorded = {e.email: e.paper_ids for e in store.ledger_entries(DAY).values()}
    assert set(recorded) == {r.email for r in readers}
    store.add_papers([Paper.create("A brand new hit", arxiv_id="2411.99999", upvotes=10_000, published=DAY)])
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert summary.sent == 2 and summary.uncertain == 2
    for entry in store.ledger_entries(DAY).values():
        assert entry.state == "sent" and entry.paper_ids == recorded[entry.email]


def test_dry_run_touches_nothing(config, store):
    summary = run_edition(config, store, subscribers(3), day=DAY, dry_run=True)
    assert summary.rendered == 3 and summary.sent == 0
    assert store.ledger_entries(DAY) == {}


def test_suppressed_inactive_and_off_days_are_skipped(config, store):
    readers = subscribers(3)
    store.suppress("reader0@example.org")
    off_day = Subscriber(email="weekend@example.org", days=["sat", "sun"])  # DAY is a Wednesday
    inactive = Subscriber(email="paused@example.org", active=False)
    summary = run_edition(config, store, [*readers, off_day, inactive], day=DAY, backend=memory())
    assert (summary.sent, summary.suppressed, summary.not_today) == (2, 1, 1)


def test_skip_empty_false_sends_a_short_no_papers_edition(config, store):
    [reader] = subscribers(1, mode="keywords", keywords=["quantum chromodynamics"])
    backend = memory()
    summary = run_edition(config, store, [reader], day=DAY, backend=backend, skip_empty=False)
    assert (summary.sent, summary.empty) == (1, [reader.email])
    [message] = backend.outbox
    text = email.message_from_bytes(message.data, policy=policy.default).get_body(("plain",)).get_content()
    assert "No new papers today" in text
