"""A ledger that follows the wire: outcomes recorded as the backend reports them, and the lease heartbeat.

`Recorder.on_result` is handed to `Backend.send_messages`; it may be called from
the backend's own threads. Outcomes are group-committed by one writer thread:
whatever arrived while the previous commit ran goes into the next one, and no
batch waits longer than `max_delay` or grows past `max_batch`.

With `wait=True` (backends that deliver real mail) `on_result` returns only once
its outcome is committed, so a sending thread starts its next message only after
the last one is on disk: after `kill -9`, the editions whose outcome was lost are
at most the messages in flight, one per connection. Local backends (file,
mbox, console, memory) need not wait: re-writing the same .eml is harmless, and
their batches cost one commit per `max_batch` results instead of one each.

A database error while committing is retried with backoff for `retry_for`
seconds: the messages are out, so their outcome must not be lost to a
restarting database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import date

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from newsletter.delivery import OutgoingMessage, SendResult
from newsletter.store import Store
from newsletter.store.ledger import Outcome, outcome_state

log = logging.getLogger(__name__)


class Recorder:
    """Streams one `send_messages` call's results into the ledger (thread-safe, group-committed)."""

    def __init__(
        self,
        store: Store,
        day: date,
        messages: Sequence[OutgoingMessage],
        *,
        wait: bool,
        max_batch: int = 50,
        max_delay: float = 0.1,
        retry_for: float = 300.0,
    ) -> None:
        self.store = store
        self.day = day
        self.messages = messages
        self.wait = wait
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.retry_for = retry_for
        self.results: dict[int, SendResult] = {}
        self.error: BaseException | None = None
        self._queue: list[int] = []
        self._queued_at = 0.0
        self._reported = 0  # results handed to on_result so far
        self._committed = 0  # of those, how many are committed (they are committed in arrival order)
        self._committing = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread = None
        if not wait:
            self._thread = threading.Thread(target=self._write_loop, name="newsletter-ledger", daemon=True)
            self._thread.start()

    def on_result(self, index: int, result: SendResult) -> None:
        """A backend's report for `messages[index]`; the first report of a message counts.

        With `wait`, returns once the outcome is committed: the first waiting
        thread commits everything queued so far, the others wait for it (one
        commit for all results that arrived meanwhile). Raises the database error
        that made recording give up; the backend should stop.
        """
        with self._cond:
            if self.error is not None and self.wait:
                raise self.error
            if index in self.results or not 0 <= index < len(self.messages):
                return
            self.results[index] = result
            if not self._queue:
                self._queued_at = time.monotonic()
            self._queue.append(index)
            self._reported += 1
            mine = self._reported
            if not self.wait:
                if len(self._queue) == 1 or len(self._queue) >= self.max_batch:  # the writer's timer starts, or a batch is full
                    self._cond.notify_all()
                # back-pressure: never more than one full batch waits behind the one being written
                while len(self._queue) >= self.max_batch and self.error is None:
                    self._cond.wait()
                return
            while self._committed < mine:
                if self.error is not None:
                    raise self.error
                if self._committing:
                    self._cond.wait()
                    continue
                self._commit_queue()

    def _commit_queue(self) -> None:
        """Commit what is queued (called holding the lock; releases it while writing)."""
        batch, self._queue = self._queue, []
        self._committing = True
        self._cond.release()
        try:
            self._commit(batch)
        except BaseException as error:  # noqa: BLE001 - handed to finish() and to every waiting sender
            failed = error
        else:
            failed = None
        finally:
            self._cond.acquire()
            self._committing = False
        if failed is not None:
            self.error = failed
        else:
            self._committed += len(batch)
        self._cond.notify_all()

    def finish(self, results: Sequence[SendResult] | None = None) -> dict[int, SendResult]:
        """Record what the call returned that was not streamed, commit everything, stop; the results by index.

        Raises the database error that made recording give up, if any.
        """
        if self.error is None:
            for index, result in enumerate(results or ()):
                self.on_result(index, result)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if self._thread is None:
                while self.error is None and (self._queue or self._committing):
                    if self._committing:
                        self._cond.wait()
                    else:
                        self._commit_queue()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.results

    def _write_loop(self) -> None:
        """Without `wait`: one writer thread commits every `max_batch` results or `max_delay` seconds."""
        with self._cond:
            while self.error is None:
                if self._queue and (
                    self._closing or len(self._queue) >= self.max_batch or time.monotonic() - self._queued_at >= self.max_delay
                ):
                    self._commit_queue()
                    continue
                if self._closing:
                    return
                timeout = None if not self._queue else max(0.0, self._queued_at + self.max_delay - time.monotonic())
                self._cond.wait(timeout)

    def _commit(self, batch: list[int]) -> None:
        outcomes = []
        for index in batch:
            result = self.results[index]
            state = outcome_state(result.ok, result.uncertain)
            outcomes.append(Outcome(self.messages[index].recipient, state, result.reply, getattr(result, "attempts", 1)))
        give_up_at = time.monotonic() + self.retry_for
        delay = 0.5
        while True:
            try:
                self.store.record_outcomes(self.day, outcomes)
                return
            except DBAPIError as error:
                transient = isinstance(error, (OperationalError, InterfaceError)) or error.connection_invalidated
                if not transient or time.monotonic() >= give_up_at:
                    raise
                log.warning("ledger: cannot record %d outcomes (%s); retrying in %.1f s", len(outcomes), error.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)


class Heartbeat:
    """Renews the leases of what `owner` holds every `lease_seconds / 4`, from a thread, until stopped."""

    def __init__(self, store: Store, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.days: set[date] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="newsletter-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self.store.renew_leases(self.owner, set(self.days), self.lease_seconds)
            except DBAPIError as error:  # a database away for a moment: the next beat tries again
                log.warning("ledger: cannot renew the leases of %s: %s", self.owner, error.orig)
