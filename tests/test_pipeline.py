"""One edition run against a real SQLite store: exactly once, resumable, never repeating a paper."""

from __future__ import annotations

import email
import os
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest

from newsletter.delivery import Backend, DeliveryStopped, SendResult
from newsletter.delivery.memory import MemoryBackend
from newsletter.models import Paper, Subscriber
from newsletter.pipeline import Claim, EditionBuilder, is_done, new_owner, resend_held, run_edition
from newsletter.store import EditionRecord, deliveries_table
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


def left_sending(store, day, emails, *, owner="send@elsewhere:0/1/dead", expired=True) -> None:
    """Rows as a run on another machine leaves them: `sending` under its lease (run out, or still live)."""
    until = datetime.now(timezone.utc) + (timedelta(seconds=-1) if expired else timedelta(minutes=5))
    with store._writes.begin() as conn:
        conn.execute(deliveries_table.update()
                     .where(deliveries_table.c.edition_date == day, deliveries_table.c.subscriber_email.in_(emails))
                     .values(state="sending", claimed_by=owner, lease_until=until))


def test_a_dead_runs_editions_are_taken_over_with_the_same_message_id(config, store):
    readers = subscribers(3)
    run_edition(config, store, readers, day=DAY, backend=memory())
    ids = {e.email: e.message_id for e in store.ledger_entries(DAY).values()}
    left_sending(store, DAY, ["reader1@example.org"])  # as if its run died mid-send: the lease ran out
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (summary.taken_over, summary.sent, summary.already_sent) == (1, 1, 2)
    [resent] = backend.outbox
    assert resent.recipient == "reader1@example.org" and resent.message_id == ids["reader1@example.org"]
    assert f"Message-ID: {ids['reader1@example.org']}".encode() in resent.data
    assert store.ledger_entries(DAY)["reader1@example.org"].attempts == 2


def test_a_live_runs_editions_are_never_taken_for_crash_leftovers(config, store):
    readers = subscribers(3)
    run_edition(config, store, readers[:1], day=DAY, backend=memory())
    store.claim(DAY, [], owner="send@elsewhere:0/1/live", lease_seconds=300,
                fresh=[EditionRecord(r.email, DAY, f"<{r.email}>") for r in readers[1:]])
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (summary.sent, summary.claimed_elsewhere, summary.already_sent, summary.taken_over) == (0, 2, 1, 0)
    assert backend.outbox == []


def test_a_dead_process_on_this_machine_is_taken_over_without_waiting_for_its_lease(config, store):
    import subprocess
    import sys

    readers = subscribers(2)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = new_owner("send").replace(f"/{os.getpid()}/", f"/{gone.stdout.strip()}/")
    builder = EditionBuilder(config, store)
    store.claim(DAY, [], owner=owner, lease_seconds=300,
                fresh=[EditionRecord(r.email, DAY, f"<{r.email}>", builder.select(r, DAY)) for r in readers])
    summary = run_edition(config, store, readers, day=DAY, backend=memory())
    assert (summary.sent, summary.taken_over, summary.claimed_elsewhere) == (2, 2, 0)


def test_held_interrupted_editions_wait_for_resend_uncertain(config, store):
    readers = subscribers(2)
    run_edition(config, store, readers, day=DAY, backend=memory())
    ids = {e.email: e.message_id for e in store.ledger_entries(DAY).values()}
    left_sending(store, DAY, ["reader0@example.org"])
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend, hold_expired=True)
    assert (summary.uncertain, summary.sent) == (1, 0) and backend.outbox == []
    assert store.ledger_entries(DAY)["reader0@example.org"].state == "uncertain"
    again = run_edition(config, store, readers, day=DAY, backend=backend)
    assert (again.held, again.sent) == (1, 0) and backend.outbox == []  # uncertain stays uncertain
    released, resent = resend_held(config, store, readers, ["reader0@example.org"], backend=backend)
    assert [row.email for row in released] == ["reader0@example.org"] and resent.sent == 1
    [message] = backend.outbox
    assert message.message_id == ids["reader0@example.org"]
    assert store.ledger_entries(DAY)["reader0@example.org"].state == "sent"


def test_pending_rows_from_a_crash_are_sent_with_their_recorded_picks(config, store):
    readers = subscribers(2)

    class CrashingBackend(MemoryBackend):
        def send_messages(self, messages, on_result=None):
            raise KeyboardInterrupt  # the process is stopped while the backend has the batch

    with pytest.raises(KeyboardInterrupt):
        run_edition(config, store, readers, day=DAY, backend=CrashingBackend(MemoryBackend.Settings(), base_dir=Path(".")),
                    claim=Claim("send@elsewhere:0/1/dead", 60))
    recorded = {e.email: e.paper_ids for e in store.ledger_entries(DAY).values()}
    assert set(recorded) == {r.email for r in readers}
    store.add_papers([Paper.create("A brand new hit", arxiv_id="2411.99999", upvotes=10_000, published=DAY)])
    assert run_edition(config, store, readers, day=DAY, backend=memory()).claimed_elsewhere == 2  # its lease holds
    left_sending(store, DAY, [r.email for r in readers], owner="send@elsewhere:0/1/dead")
    backend = memory()
    summary = run_edition(config, store, readers, day=DAY, backend=backend)
    assert summary.sent == 2 and summary.taken_over == 2
    for entry in store.ledger_entries(DAY).values():
        assert entry.state == "sent" and entry.paper_ids == recorded[entry.email]


def test_an_uncertain_result_is_recorded_uncertain_and_not_retried(config, store):
    readers = subscribers(3)

    class LateReplies(MemoryBackend):
        """Answers the second message as an SMTP server that took it but never said 250 would."""

        def send_messages(self, messages, on_result=None):
            results = []
            for index, message in enumerate(messages):
                late = index == 1
                results.append(SendResult(message.message_id, not late, "timed out after the final '.'" if late else "250 ok",
                                          uncertain=late))
                on_result(index, results[-1])
            return results

    summary = run_edition(config, store, readers, day=DAY, backend=LateReplies(MemoryBackend.Settings(), base_dir=Path(".")))
    assert (summary.sent, summary.uncertain, summary.failed) == (2, 1, 0)
    entry = store.ledger_entries(DAY)["reader1@example.org"]
    assert (entry.state, entry.attempts) == ("uncertain", 1)
    assert run_edition(config, store, readers, day=DAY, backend=memory(), retry_failed=True).sent == 0


def test_a_backend_returning_only_a_list_is_recorded_after_the_call(config, store):
    class ListOnly(Backend):
        name = "list-only"

        def send_messages(self, messages):  # an older plugin: no on_result
            return [SendResult(m.message_id, m.recipient != "reader1@example.org", "250 ok") for m in messages]

    summary = run_edition(config, store, subscribers(3), day=DAY, backend=ListOnly(Backend.Settings(), base_dir=Path(".")))
    assert (summary.sent, summary.failed) == (2, 1)
    assert store.ledger_counts(DAY)["sent"] == 2 and store.ledger_counts(DAY)["failed"] == 1


def test_delivery_stopped_stops_the_run_and_leaves_the_rest_pending(config, store):
    class RefusesLogin(MemoryBackend):
        def send_messages(self, messages, on_result=None):
            on_result(0, SendResult(messages[0].message_id, True, "250 ok"))
            raise DeliveryStopped("535 authentication failed: check [delivery.smtp] username and the password variable")

    config.delivery.chunk_size = 3
    summary = run_edition(config, store, subscribers(7), day=DAY,
                          backend=RefusesLogin(MemoryBackend.Settings(), base_dir=Path(".")))
    assert summary.stopped.startswith("535 authentication failed") and summary.sent == 1
    counts = store.ledger_counts(DAY)
    assert (counts["sent"], counts["pending"], counts["sending"]) == (1, 2, 0)  # the other chunks were never claimed
    assert sum(e.attempts for e in store.ledger_entries(DAY).values()) == 1
    assert run_edition(config, store, subscribers(7), day=DAY, backend=memory()).sent == 6


def test_one_broken_edition_fails_alone_with_its_reason(config, store, monkeypatch):
    readers = subscribers(3)
    real = EditionBuilder.build

    def build(self, subscriber, *args, **kwargs):
        if subscriber.email == "reader1@example.org":
            raise ValueError("template exploded")
        return real(self, subscriber, *args, **kwargs)

    monkeypatch.setattr(EditionBuilder, "build", build)
    summary = run_edition(config, store, readers, day=DAY, backend=memory())
    assert (summary.sent, summary.failed) == (2, 1)
    entry = store.ledger_entries(DAY)["reader1@example.org"]
    assert entry.state == "failed" and entry.reply == "edition not built: ValueError: template exploded"
    monkeypatch.setattr(EditionBuilder, "build", real)
    assert run_edition(config, store, readers, day=DAY, backend=memory(), retry_failed=True).sent == 1


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


def test_an_owner_that_exited_but_is_not_reaped_yet_is_gone():
    """Right after kill -9 the dead sender is a zombie until reaped: a rerun must take its claims over at once."""
    import subprocess
    import sys
    import time

    from newsletter.pipeline import _machine, owner_gone

    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; not waited for, so a zombie
    owner = f"send@{_machine()}/{child.pid}/abc123"
    try:
        deadline = time.monotonic() + 20
        while not owner_gone(owner) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owner_gone(owner)
        assert not owner_gone(new_owner("send"))  # this process is alive
    finally:
        child.wait()
