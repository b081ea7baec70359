"""The recorder that lets the ledger follow the wire, and the heartbeat that keeps a slow run's claims (real SQLite)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy.exc import OperationalError

from newsletter.delivery import OutgoingMessage, SendResult
from newsletter.delivery.memory import MemoryBackend
from newsletter.models import Subscriber
from newsletter.pipeline import Claim, run_edition
from newsletter.recorder import Recorder
from newsletter.store import EditionRecord, State
from tests.conftest import DAY


def claimed(store, count: int) -> list[OutgoingMessage]:
    emails = [f"r{n}@example.org" for n in range(count)]
    store.claim(DAY, [], owner="me", lease_seconds=60, fresh=[EditionRecord(e, DAY, f"<{e}>") for e in emails])
    return [OutgoingMessage(f"<{e}>", "digest@example.org", e, b"") for e in emails]


def test_results_from_many_threads_are_each_recorded_once_in_few_commits(store, monkeypatch):
    messages = claimed(store, 400)
    commits = []
    real = store.record_outcomes

    def counting(day, outcomes):
        commits.append(len(outcomes))
        time.sleep(0.002)  # a commit that takes a moment, as on a busy disk
        real(day, outcomes)

    monkeypatch.setattr(store, "record_outcomes", counting)
    recorder = Recorder(store, DAY, messages, wait=True)

    def sender(start: int) -> None:
        for index in range(start, 400, 4):
            recorder.on_result(index, SendResult(messages[index].message_id, True, "250 ok"))
            # wait=True: by the time on_result returns, this outcome is in the ledger
            assert store.ledger_entries(DAY, [messages[index].recipient])[messages[index].recipient].state == State.SENT
        recorder.on_result(start, SendResult(messages[start].message_id, False, "a second report is ignored"))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.finish()
    assert sum(commits) == 400 and len(commits) < 400  # group commit: threads share commits
    assert store.ledger_counts(DAY)["sent"] == 400


def test_without_wait_outcomes_are_batched_and_all_written_by_finish(store, monkeypatch):
    messages = claimed(store, 120)
    commits = []
    real = store.record_outcomes
    monkeypatch.setattr(store, "record_outcomes", lambda day, outcomes: (commits.append(len(outcomes)), real(day, outcomes)))
    recorder = Recorder(store, DAY, messages, wait=False)
    for index, message in enumerate(messages):
        recorder.on_result(index, SendResult(message.message_id, True, "written"))
    recorder.finish()
    assert sum(commits) == 120 and max(commits) <= 50 and len(commits) <= 10  # never more than one batch behind
    assert store.ledger_counts(DAY)["sent"] == 120


def test_a_database_that_is_away_for_a_moment_loses_no_outcome(store, monkeypatch):
    messages = claimed(store, 3)
    real, failures = store.record_outcomes, []

    def flaky(day, outcomes):
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))
        real(day, outcomes)

    monkeypatch.setattr(store, "record_outcomes", flaky)
    recorder = Recorder(store, DAY, messages, wait=True)
    for index, message in enumerate(messages):
        recorder.on_result(index, SendResult(message.message_id, True, "250 ok"))
    recorder.finish()
    assert len(failures) == 2 and store.ledger_counts(DAY)["sent"] == 3


def test_a_slow_run_keeps_its_claims_alive_with_the_heartbeat(config, store):
    readers = [Subscriber(email=f"reader{n}@example.org", max_items=5) for n in range(3)]
    started, release = threading.Event(), threading.Event()

    class Slow(MemoryBackend):
        def send_messages(self, messages, on_result=None):
            started.set()
            release.wait(10)
            return super().send_messages(messages, on_result)

    result = {}
    run = threading.Thread(target=lambda: result.update(summary=run_edition(
        config, store, readers, day=DAY, backend=Slow(MemoryBackend.Settings(), base_dir=Path(".")),
        claim=Claim("slow@elsewhere:0/1/x", lease_seconds=1.0))))
    run.start()
    assert started.wait(30)
    time.sleep(2.5)  # more than twice the lease: only the heartbeat keeps the claims
    other = run_edition(config, store, readers, day=DAY, backend=MemoryBackend(MemoryBackend.Settings(), base_dir=Path(".")))
    release.set()
    run.join(30)
    assert (other.sent, other.claimed_elsewhere, other.taken_over) == (0, 3, 0)
    assert result["summary"].sent == 3
