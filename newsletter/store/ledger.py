"""The delivery ledger: one row per (subscriber, edition date), its state machine, and the claims.

Every ledger rule lives here:

    (no row) ──enqueue──► queued    (a Celery shard will build and send it: `shard` names the task)
    (no row) | queued ──claim──► sending ──result──► sent | failed | uncertain
    pending ───claim──► sending     (a run holds the row: `claimed_by`, `lease_until`)
    sending ──release─► pending     (the run stopped before handing it over)
    sending, lease expired ──claim──► sending   (its run died: the edition is sent again,
                                                  same Message-ID; `hold_expired` makes it uncertain)
    uncertain | review ──release_held──► pending   (`send --resend-uncertain`, never automatic)
    failed ──claim with retry_failed──► sending

`sending` rows are held by a live run as long as their lease is renewed (the
run's heartbeat); only an expired lease means the run is gone. `uncertain`
means the server may have the message (a timeout after the final "."), so it is
never sent again unless someone asks. `review` is what older versions' hold
option left; it is treated like `uncertain`.

`queued` rows are the ledger's copy of the broker's queue: written before a
shard's task is published, so a shard the broker loses is found again
(newsletter/workers.py `requeue_lost`). They hold no edition yet (whoever claims
one builds it, exactly like an edition with no row), are not settled, and any
sender may claim them; a worker that starts the shard marks its queued rows
with its name and a lease (`pick_up`), renewed by its heartbeat.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update

from newsletter.models import Pick, Subscriber
from newsletter.store.schema import _as_utc, _chunks, _now, _sqlite_value, deliveries_table, sent_papers_table


class State(StrEnum):
    """Where one (subscriber, edition date) stands."""

    PENDING = "pending"  # recorded, nobody holds it: the next run sends it
    QUEUED = "queued"  # in a Celery shard (`shard`), not built yet: claimed like an edition with no row
    SENDING = "sending"  # a run holds it under a lease and has it (or is about to hand it) to the backend
    SENT = "sent"  # the backend accepted it
    FAILED = "failed"  # refused, or the edition could not be built; `send --retry-failed` tries again
    UNCERTAIN = "uncertain"  # maybe delivered; sent again only by `send --resend-uncertain`
    REVIEW = "review"  # held by an older version's --no-resend-uncertain; like uncertain


LEDGER_STATES = tuple(State)
# a row in one of these is done with: no run sends it on its own
SETTLED = frozenset({State.SENT, State.FAILED, State.UNCERTAIN, State.REVIEW})
# held for a person to decide (`newsletter status` lists them, `send --resend-uncertain` releases them)
HELD = frozenset({State.UNCERTAIN, State.REVIEW})


class NotDue(StrEnum):
    """Why a subscriber gets no edition on a day (before the ledger is looked at)."""

    INACTIVE = "inactive"
    SUPPRESSED = "unsubscribed"
    NOT_TODAY = "not a sending day"


def not_due(subscriber: Subscriber, day: date, suppressed: set[str] | frozenset[str]) -> NotDue | None:
    """The one "who is due on `day`" rule: active, not unsubscribed, and `day` is a sending day; None when due."""
    if not subscriber.active:
        return NotDue.INACTIVE
    if subscriber.email in suppressed:
        return NotDue.SUPPRESSED
    if not subscriber.sends_on(day):
        return NotDue.NOT_TODAY
    return None


def outcome_state(ok: bool, uncertain: bool) -> State:
    """The state a backend's result moves a `sending` row to."""
    if ok:
        return State.SENT
    return State.UNCERTAIN if uncertain else State.FAILED


@dataclass(frozen=True)
class EditionRecord:
    """What the ledger keeps of an edition before it is sent: its Message-ID, papers and subject.

    `left_out` are the picks the size budget kept out of the email (newsletter/budget.py): recorded
    for the "View in browser" page and a rebuild, but not as sent, so they can come another day.
    """

    email: str
    edition_date: date
    message_id: str
    picks: Sequence[Pick] = ()
    subject: str = ""
    left_out: Sequence[Pick] = ()


@dataclass(frozen=True)
class Outcome:
    """A row's new state after an attempt (or a failure to build it), with the reply or reason."""

    email: str
    state: State
    reply: str | None = None
    attempts: int = 1  # tries this outcome took (a backend's retries count)


@dataclass(frozen=True)
class LedgerEntry:
    """One (subscriber, edition date) row of the delivery ledger."""

    email: str
    edition_date: date
    state: State
    message_id: str
    picks: tuple[dict, ...]
    subject: str
    reply: str | None
    attempts: int
    updated_at: datetime
    claimed_by: str | None = None
    lease_until: datetime | None = None
    shard: str | None = None

    @property
    def paper_ids(self) -> list[str]:
        """The papers in the email (not those the size budget left out)."""
        return [pick["id"] for pick in self.picks if not pick.get("left_out")]

    def held_by_other(self, owner: str, now: datetime) -> bool:
        """Another live run holds this row (its lease has not run out)."""
        return self.state == State.SENDING and self.claimed_by != owner and not self.lease_expired(now)

    def lease_expired(self, now: datetime) -> bool:
        return self.state == State.SENDING and (self.lease_until is None or self.lease_until <= now)

    def picked_up(self, now: datetime) -> bool:
        """A `queued` row whose shard a live worker runs (its lease is renewed by that worker's heartbeat)."""
        return self.state == State.QUEUED and self.claimed_by is not None and self.lease_until is not None and self.lease_until > now


@dataclass
class Claimed:
    """What one claim got: the rows now held (new ones and taken-over ones), and what others hold."""

    emails: list[str] = field(default_factory=list)
    inserted: set[str] = field(default_factory=set)  # rows this claim created, with the given edition
    taken_over: set[str] = field(default_factory=set)  # `sending` rows whose run had died (lease expired)
    held_elsewhere: set[str] = field(default_factory=set)  # live claims of other runs
    settled: set[str] = field(default_factory=set)  # settled meanwhile (by another run)
    expired_to_uncertain: set[str] = field(default_factory=set)  # hold_expired: a dead run's rows, now uncertain


def _ledger_from_row(row) -> LedgerEntry:
    return LedgerEntry(
        email=row.subscriber_email,
        edition_date=row.edition_date,
        state=State(row.state),
        message_id=row.message_id,
        picks=tuple(json.loads(row.picks)),
        subject=row.subject,
        reply=row.reply,
        attempts=row.attempts,
        updated_at=_as_utc(row.updated_at),
        claimed_by=row.claimed_by,
        lease_until=_as_utc(row.lease_until),
        shard=row.shard,
    )


_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(..., ensure_ascii=False) without a new encoder per call


def _picks_json(picks: Sequence[Pick], left_out: Sequence[Pick] = ()) -> str:
    """The ledger's record of an edition's picks (the same picks come round for reader after reader)."""
    return _encoded_picks(tuple((p.paper.id, p.score, tuple(p.reasons), False) for p in picks)
                          + tuple((p.paper.id, p.score, tuple(p.reasons), True) for p in left_out))


@functools.lru_cache(maxsize=1024)
def _encoded_picks(picks: tuple) -> str:
    return _JSON.encode([{"id": paper_id, "score": score, "reasons": list(reasons), **({"left_out": True} if left else {})}
                         for paper_id, score, reasons, left in picks])


class LedgerMixin:
    """Store methods for the deliveries and sent_papers tables."""

    def ledger_entries(self, edition_date: date, emails: Iterable[str] | None = None) -> dict[str, LedgerEntry]:
        """Ledger rows for one edition date, keyed by subscriber email (all, or just `emails`)."""
        query = select(deliveries_table).where(deliveries_table.c.edition_date == edition_date)
        with self.engine.connect() as conn:
            if emails is None:
                return {row.subscriber_email: _ledger_from_row(row) for row in conn.execute(query)}
            found = {}
            for chunk in _chunks(list(emails)):
                for row in conn.execute(query.where(self._among(deliveries_table.c.subscriber_email, chunk))):
                    found[row.subscriber_email] = _ledger_from_row(row)
            return found

    def ledger_counts(self, edition_date: date | None = None) -> dict[str, int]:
        """How many ledger rows are in each state (for one date, or overall)."""
        query = select(deliveries_table.c.state, func.count()).group_by(deliveries_table.c.state)
        if edition_date is not None:
            query = query.where(deliveries_table.c.edition_date == edition_date)
        with self.engine.connect() as conn:
            counts = dict.fromkeys(LEDGER_STATES, 0)
            counts.update({State(state): n for state, n in conn.execute(query)})
            return {str(state): n for state, n in counts.items()}

    def ledger_rows(
        self, *, edition_date: date | None = None, state: State | Iterable[State] | None = None, emails: Iterable[str] | None = None
    ) -> list[LedgerEntry]:
        """Ledger rows filtered by date, state(s) and/or subscribers, oldest first."""
        table = deliveries_table
        query = select(table).order_by(table.c.edition_date, self._sorted(table.c.subscriber_email))
        if edition_date is not None:
            query = query.where(table.c.edition_date == edition_date)
        if state is not None:
            states = [State(state)] if isinstance(state, str) else [State(s) for s in state]
            query = query.where(table.c.state.in_([str(s) for s in states]))
        if emails is not None:
            query = query.where(table.c.subscriber_email.in_(list(emails)))
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]

    def record_pending(self, records: Sequence[EditionRecord]) -> set[str]:
        """Record editions as `pending` (nobody holds them yet); rows that exist keep their state. The emails inserted."""
        if not records:
            return set()
        table = deliveries_table
        now = _now()
        inserted: set[str] = set()
        with self._writes.begin() as conn:
            for day in sorted({record.edition_date for record in records}):
                of_day = [record for record in records if record.edition_date == day]
                for chunk in _chunks(of_day, 1000):
                    rows = [
                        {"subscriber_email": r.email, "edition_date": day, "state": str(State.PENDING), "message_id": r.message_id,
                         "picks": _picks_json(r.picks, r.left_out), "subject": r.subject, "attempts": 0, "updated_at": now}
                        for r in chunk
                    ]
                    new = set(self._insert_new_rows(conn, table, rows, returning="subscriber_email"))
                    self._remember_papers(conn, [r for r in chunk if r.email in new])
                    inserted.update(new)
        return inserted

    # -- claims ---------------------------------------------------------------------------------

    def _expired(self, now: datetime, dead_owners: Iterable[str] = ()):
        """`sending` rows whose run is gone: the lease ran out, or the owner is known dead."""
        table = deliveries_table
        gone = [table.c.lease_until.is_(None), table.c.lease_until <= now]
        if dead_owners:
            gone.append(table.c.claimed_by.in_(list(dead_owners)))
        return and_(table.c.state == State.SENDING, or_(*gone))

    def _claimable(self, now: datetime, *, retry_failed: bool, hold_expired: bool, dead_owners: Iterable[str] = ()):
        table = deliveries_table
        expired = self._expired(now, dead_owners)
        states = [State.PENDING] + ([State.FAILED] if retry_failed else [])
        ready = table.c.state.in_([str(s) for s in states])
        return ready if hold_expired else or_(ready, expired)

    def claim(
        self,
        edition_date: date,
        emails: Sequence[str],
        *,
        owner: str,
        lease_seconds: float,
        fresh: Sequence[EditionRecord] = (),
        retry_failed: bool = False,
        hold_expired: bool = False,
        dead_owners: Iterable[str] = (),
    ) -> Claimed:
        """Hold rows of one edition date for `owner`, for `lease_seconds` from now (this machine's UTC clock).

        `fresh` editions (no row yet) are inserted straight into `sending` for
        `owner` (a row another run inserted first is left alone and tried as an
        existing one); then the existing rows among `emails` are taken when
        `pending` (or `failed`, with `retry_failed`), or `sending` under a lease
        that ran out or whose owner is in `dead_owners` (with `hold_expired`,
        those become `uncertain` instead).
        Concurrent claimers never get the same row: PostgreSQL skips rows another
        claimer has locked (FOR UPDATE SKIP LOCKED); SQLite runs one writer at a
        time (BEGIN IMMEDIATE). The papers of inserted editions are remembered as
        given to the subscriber, so no later edition repeats them.
        """
        table = deliveries_table
        now = _now()
        lease = now + timedelta(seconds=lease_seconds)
        result = Claimed()
        fresh_by_email = {record.email: record for record in fresh if record.edition_date == edition_date}
        wanted = list(dict.fromkeys([*emails, *fresh_by_email]))
        with self._writes.begin() as conn:
            if fresh_by_email:
                result.inserted = self._insert_claimed(conn, list(fresh_by_email.values()), owner, lease, now)
            existing = [email for email in wanted if email not in result.inserted]
            if hold_expired:
                result.expired_to_uncertain = self._expired_to_uncertain(conn, edition_date, existing, self._expired(now, dead_owners), now)
            claimable = self._claimable(now, retry_failed=retry_failed, hold_expired=hold_expired, dead_owners=dead_owners)
            for chunk in _chunks(existing):
                in_chunk = and_(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk))
                free = conn.execute(
                    select(table.c.subscriber_email, table.c.state).where(in_chunk, claimable).with_for_update(skip_locked=True)
                ).all()
                got = {email for email, _ in free}
                if got:
                    conn.execute(
                        update(table)
                        .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, list(got)), claimable)
                        .values(state=State.SENDING, claimed_by=owner, lease_until=lease, updated_at=now)
                    )
                    result.emails.extend(got)
                    result.taken_over.update(email for email, state in free if state == State.SENDING)
                rest = [email for email in chunk if email not in got]
                if not rest:
                    continue
                others = select(table.c.subscriber_email, table.c.state, table.c.claimed_by).where(
                    table.c.edition_date == edition_date, self._among(table.c.subscriber_email, rest)
                )
                for email, state, claimed_by in conn.execute(others):
                    if state in SETTLED:
                        result.settled.add(email)
                    elif claimed_by != owner:  # sending under a live lease, or being claimed right now
                        result.held_elsewhere.add(email)
        claimed = set(result.emails) | result.inserted
        result.emails = [email for email in wanted if email in claimed]
        return result

    def _insert_claimed(self, conn, records: list[EditionRecord], owner: str, lease: datetime, now: datetime) -> set[str]:
        """Insert new editions as `sending` for `owner`; the emails whose row this inserted."""
        table = deliveries_table
        inserted: set[str] = set()
        for chunk in _chunks(records, 1000):
            rows = [
                {
                    "subscriber_email": record.email,
                    "edition_date": record.edition_date,
                    "state": str(State.SENDING),
                    "message_id": record.message_id,
                    "picks": _picks_json(record.picks, record.left_out),
                    "subject": record.subject,
                    "attempts": 0,
                    "updated_at": now,
                    "claimed_by": owner,
                    "lease_until": lease,
                }
                for record in chunk
            ]
            inserted.update(self._insert_new_rows(conn, table, rows, returning="subscriber_email"))
        inserted |= self._claim_queued(conn, [record for record in records if record.email not in inserted], owner, lease, now)
        self._remember_papers(conn, [record for record in records if record.email in inserted])
        return inserted

    def _claim_queued(self, conn, records: list[EditionRecord], owner: str, lease: datetime, now: datetime) -> set[str]:
        """`queued` rows of these new editions become `sending` for `owner`, with the edition; the emails taken."""
        table = deliveries_table
        taken: set[str] = set()
        for day in sorted({record.edition_date for record in records}):
            of_day = {record.email: record for record in records if record.edition_date == day}
            for chunk in _chunks(list(of_day)):
                free = conn.execute(
                    select(table.c.subscriber_email)
                    .where(table.c.edition_date == day, self._among(table.c.subscriber_email, chunk), table.c.state == State.QUEUED)
                    .with_for_update(skip_locked=True)
                ).scalars().all()
                if not free:
                    continue
                conn.execute(
                    update(table)
                    .where(table.c.edition_date == day, table.c.subscriber_email == bindparam("b_email"),
                           table.c.state == State.QUEUED)
                    .values(state=State.SENDING, message_id=bindparam("b_message_id"), picks=bindparam("b_picks"),
                            subject=bindparam("b_subject"), claimed_by=owner, lease_until=lease, updated_at=now),
                    [{"b_email": email, "b_message_id": of_day[email].message_id,
                      "b_picks": _picks_json(of_day[email].picks, of_day[email].left_out), "b_subject": of_day[email].subject}
                     for email in free],
                )
                taken.update(free)
        return taken

    def _remember_papers(self, conn, records: list[EditionRecord]) -> None:
        """Note the papers of new editions as given to their subscribers (the first edition that had a paper keeps it)."""
        given = {(record.email, pick.paper.id): record.edition_date for record in records for pick in record.picks}
        rows = [{"subscriber_email": email, "paper_id": paper_id, "edition_date": day} for (email, paper_id), day in given.items()]
        self._insert_new_rows(conn, sent_papers_table, rows)  # a paper given before keeps its first edition

    def _expired_to_uncertain(self, conn, edition_date: date, emails: list[str], gone, now: datetime) -> set[str]:
        """Rows of a dead run become `uncertain`: they may have been on the wire."""
        table = deliveries_table
        moved: set[str] = set()
        for chunk in _chunks(emails):
            expired = and_(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk), gone)
            found = list(conn.execute(select(table.c.subscriber_email).where(expired).with_for_update(skip_locked=True)).scalars())
            if found:
                conn.execute(
                    update(table)
                    .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, found), expired)
                    .values(state=State.UNCERTAIN, claimed_by=None, lease_until=None, updated_at=now,
                            reply="uncertain: its run stopped while sending (lease expired); check, then send --resend-uncertain")
                )
                moved.update(found)
        return moved

    def renew_leases(self, owner: str, edition_dates: Iterable[date], lease_seconds: float) -> int:
        """The heartbeat: push the lease of every row `owner` holds on these dates to now + `lease_seconds`."""
        days = list(edition_dates)
        if not days:
            return 0
        table = deliveries_table
        now = _now()
        with self._writes.begin() as conn:
            return conn.execute(
                update(table)
                .where(table.c.edition_date.in_(days), table.c.claimed_by == owner, table.c.state == State.SENDING)
                .values(lease_until=now + timedelta(seconds=lease_seconds))
            ).rowcount

    def record_outcomes(self, edition_date: date, outcomes: Sequence[Outcome]) -> None:
        """Settle rows: each outcome's state and reply, and its tries added to `attempts`.

        A row already `sent` stays sent (whoever reports later).
        """
        if not outcomes:
            return
        # on the driver itself: this runs once per message for real mail, where SQLAlchemy's per-call cost shows
        mark = "%s" if self._postgres else "?"
        sql = (
            f"UPDATE {deliveries_table.name} SET state = {mark}, reply = COALESCE({mark}, reply), "
            f"attempts = attempts + {mark}, updated_at = {mark}, lease_until = NULL "
            f"WHERE subscriber_email = {mark} AND edition_date = {mark} AND state <> '{State.SENT}'"
        )
        now = _now() if self._postgres else _sqlite_value(_now())
        day = edition_date if self._postgres else _sqlite_value(edition_date)
        rows = [(str(State(o.state)), o.reply, o.attempts, now, o.email, day) for o in outcomes]
        with self._writes.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.executemany(sql, rows)
            finally:
                cursor.close()

    def record_failed(self, records: Sequence[EditionRecord], reason: str | Sequence[str]) -> None:
        """Editions that could not be built: a `failed` row each with the reason (existing rows are moved to failed)."""
        reasons = [reason] * len(records) if isinstance(reason, str) else list(reason)
        now = _now()
        table = deliveries_table
        with self._writes.begin() as conn:
            for record, why in zip(records, reasons, strict=True):
                row = {
                    "subscriber_email": record.email, "edition_date": record.edition_date, "state": State.FAILED,
                    "message_id": record.message_id, "picks": _picks_json(record.picks, record.left_out), "subject": record.subject,
                    "reply": why, "attempts": 0, "updated_at": now,
                }
                if not conn.execute(self._insert_new(table).returning(table.c.subscriber_email), row).first():
                    conn.execute(
                        update(table)
                        .where(table.c.subscriber_email == record.email, table.c.edition_date == record.edition_date,
                               or_(table.c.state == State.QUEUED, self._claimable(now, retry_failed=True, hold_expired=False)))
                        .values(state=State.FAILED, reply=why, updated_at=now, claimed_by=None, lease_until=None)
                    )

    def release(self, edition_date: date, owner: str, emails: Sequence[str]) -> int:
        """Give rows `owner` holds back as `pending` (never handed to the backend); how many."""
        table = deliveries_table
        now = _now()
        released = 0
        with self._writes.begin() as conn:
            for chunk in _chunks(list(emails)):
                released += conn.execute(
                    update(table)
                    .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk),
                           table.c.claimed_by == owner, table.c.state == State.SENDING)
                    .values(state=State.PENDING, claimed_by=None, lease_until=None, updated_at=now)
                ).rowcount
        return released

    def release_held(self, emails: Iterable[str] | None = None, *, edition_date: date | None = None) -> list[LedgerEntry]:
        """`uncertain` and `review` rows (of these subscribers, or all; of one date, or all) back to `pending`.

        Returns the released rows as they were; they keep their Message-ID and papers.
        """
        rows = self.ledger_rows(edition_date=edition_date, state=HELD, emails=emails)
        table = deliveries_table
        now = _now()
        with self._writes.begin() as conn:
            for row in rows:
                conn.execute(
                    update(table)
                    .where(table.c.subscriber_email == row.email, table.c.edition_date == row.edition_date,
                           table.c.state.in_([str(s) for s in HELD]))
                    .values(state=State.PENDING, updated_at=now)
                )
        return rows

    def sent_paper_ids(self, emails: Iterable[str], *, before: date | None = None) -> dict[str, set[str]]:
        """Paper ids already given to each subscriber (in editions other than `before`'s date)."""
        found: dict[str, set[str]] = {}
        table = sent_papers_table
        with self.engine.connect() as conn:
            for chunk in _chunks(list(emails)):
                query = select(table.c.subscriber_email, table.c.paper_id).where(self._among(table.c.subscriber_email, chunk))
                if before is not None:
                    query = query.where(table.c.edition_date != before)
                for email, paper_id in conn.execute(query):
                    found.setdefault(email, set()).add(paper_id)
        return found

    def editions_of(self, email: str, *, before: date | None = None, limit: int | None = None) -> list[LedgerEntry]:
        """One subscriber's editions (ledger rows, not `queued` ones), newest first (those dated before `before`, if given): the archive."""
        table = deliveries_table
        query = (select(table).where(table.c.subscriber_email == email, table.c.state != State.QUEUED)
                 .order_by(table.c.edition_date.desc()))
        if before is not None:
            query = query.where(table.c.edition_date < before)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]

    # -- the queue's copy: editions in Celery shards ------------------------------------------------

    def queue(self, edition_date: date, shard: str, new: Sequence[tuple[str, str]], replacing: dict[str, str | None]) -> list[str]:
        """Put editions in `shard` before its task is published; the emails this call got (others may race for them).

        `new`: (email, Message-ID) of editions with no row: inserted `queued`.
        `replacing`: email -> the shard its unsettled row was in (None: none), which
        `requeue` found lost: the row moves to `shard` only if it is still there
        (a queued row is un-picked too). Two enqueuers never get the same edition.
        """
        table = deliveries_table
        now = _now()
        got: list[str] = []
        with self._writes.begin() as conn:
            for chunk in _chunks(list(new), 1000):
                rows = [{"subscriber_email": email, "edition_date": edition_date, "state": str(State.QUEUED), "message_id": message_id,
                         "picks": "[]", "subject": "", "attempts": 0, "updated_at": now, "shard": shard} for email, message_id in chunk]
                got.extend(self._insert_new_rows(conn, table, rows, returning="subscriber_email"))
            by_old: dict[str | None, list[str]] = {}
            for email, old in replacing.items():
                by_old.setdefault(old, []).append(email)
            queued = table.c.state == State.QUEUED
            unsettled = and_(
                table.c.state.in_([State.QUEUED, State.PENDING, State.SENDING]),
                or_(table.c.state != State.SENDING, table.c.lease_until.is_(None), table.c.lease_until <= now),
            )
            for old, emails in by_old.items():
                was = table.c.shard.is_(None) if old is None else table.c.shard == old
                for chunk in _chunks(emails):
                    got.extend(conn.execute(
                        update(table)
                        .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk), was, unsettled)
                        .values(shard=shard, updated_at=now,
                                claimed_by=case((queued, None), else_=table.c.claimed_by),
                                lease_until=case((queued, None), else_=table.c.lease_until))
                        .returning(table.c.subscriber_email)
                    ).scalars())
        return got

    def pick_up(self, edition_date: date, shard: str, owner: str, lease_seconds: float) -> int:
        """A worker starts `shard`: its `queued` rows are marked with `owner` under a lease (renewed by the heartbeat)."""
        table = deliveries_table
        with self._writes.begin() as conn:
            return conn.execute(
                update(table)
                .where(table.c.edition_date == edition_date, table.c.shard == shard, table.c.state == State.QUEUED)
                .values(claimed_by=owner, lease_until=_now() + timedelta(seconds=lease_seconds))
            ).rowcount

    def put_down(self, edition_date: date, shard: str, owner: str) -> int:
        """`owner` stops running `shard` before it is done: its queued rows wait for the next run of the shard."""
        table = deliveries_table
        with self._writes.begin() as conn:
            return conn.execute(
                update(table)
                .where(table.c.edition_date == edition_date, table.c.shard == shard, table.c.state == State.QUEUED,
                       table.c.claimed_by == owner)
                .values(claimed_by=None, lease_until=None)
            ).rowcount

    def drop_queued(self, edition_date: date, emails: Iterable[str] | None = None, *, shard: str | None = None) -> int:
        """Forget `queued` rows that will not be sent (nothing to send, not due any more): of these emails, or of `shard`."""
        table = deliveries_table
        where = [table.c.edition_date == edition_date, table.c.state == State.QUEUED]
        if shard is not None:
            where.append(table.c.shard == shard)
        dropped = 0
        with self._writes.begin() as conn:
            if emails is None:
                return conn.execute(delete(table).where(*where)).rowcount
            for chunk in _chunks(list(emails)):
                dropped += conn.execute(delete(table).where(*where, self._among(table.c.subscriber_email, chunk))).rowcount
        return dropped

    def in_shards(self) -> list[LedgerEntry]:
        """Unsettled rows that were enqueued (`queued`, `pending` or `sending` with a shard), oldest date first."""
        table = deliveries_table
        query = (select(table).where(table.c.state.in_([State.QUEUED, State.PENDING, State.SENDING]), table.c.shard.is_not(None))
                 .order_by(table.c.edition_date, table.c.shard))
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]

    def queue_groups(self, edition_date: date | None = None) -> list[dict]:
        """`queued` and `sending` rows grouped by (date, state, holder, shard): count, oldest update, latest lease."""
        table = deliveries_table
        query = (select(table.c.edition_date, table.c.state, table.c.claimed_by, table.c.shard, func.count(),
                        func.min(table.c.updated_at), func.max(table.c.lease_until))
                 .where(table.c.state.in_([State.QUEUED, State.SENDING]))
                 .group_by(table.c.edition_date, table.c.state, table.c.claimed_by, table.c.shard))
        if edition_date is not None:
            query = query.where(table.c.edition_date == edition_date)
        with self.engine.connect() as conn:
            return [{"date": day, "state": State(state), "owner": owner, "shard": shard, "editions": n,
                     "oldest": _as_utc(oldest), "lease_until": _as_utc(lease)}
                    for day, state, owner, shard, n, oldest, lease in conn.execute(query)]
