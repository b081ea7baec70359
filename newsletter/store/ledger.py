"""The delivery ledger: one row per (subscriber, edition date), and the papers given to each subscriber.

A row moves through `pending` -> `sending` -> `sent` | `failed` (or `review`
when an uncertain send is held back for a person to look at).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, update

from newsletter.models import Pick
from newsletter.store.schema import _as_utc, _chunks, _now, deliveries_table, sent_papers_table

LEDGER_STATES = ("pending", "sending", "sent", "failed", "review")


@dataclass(frozen=True)
class LedgerEntry:
    """One (subscriber, edition date) row of the delivery ledger."""

    email: str
    edition_date: date
    state: str
    message_id: str
    picks: tuple[dict, ...]
    subject: str
    reply: str | None
    attempts: int
    updated_at: datetime
    claimed_by: str | None = None
    lease_until: datetime | None = None

    @property
    def paper_ids(self) -> list[str]:
        return [pick["id"] for pick in self.picks]



def _ledger_from_row(row) -> LedgerEntry:
    return LedgerEntry(
        email=row.subscriber_email,
        edition_date=row.edition_date,
        state=row.state,
        message_id=row.message_id,
        picks=tuple(json.loads(row.picks)),
        subject=row.subject,
        reply=row.reply,
        attempts=row.attempts,
        updated_at=_as_utc(row.updated_at),
        claimed_by=row.claimed_by,
        lease_until=_as_utc(row.lease_until),
    )



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
            counts.update({state: n for state, n in conn.execute(query)})
            return counts

    def ledger_rows(self, *, edition_date: date | None = None, state: str | None = None) -> list[LedgerEntry]:
        """Ledger rows filtered by date and/or state, oldest first."""
        query = select(deliveries_table).order_by(
            deliveries_table.c.edition_date, self._sorted(deliveries_table.c.subscriber_email)
        )
        if edition_date is not None:
            query = query.where(deliveries_table.c.edition_date == edition_date)
        if state is not None:
            query = query.where(deliveries_table.c.state == state)
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]

    def record_pending(self, editions: Sequence[tuple[str, date, str, Sequence[Pick], str]]) -> None:
        """Record editions as `pending` before anything is handed to a backend.

        Each item is (email, edition date, Message-ID, picks, subject). The
        papers are remembered as sent to that subscriber, so no later edition
        repeats them. Rows that already exist keep their state.
        """
        if not editions:
            return
        now = _now()
        with self._writes.begin() as conn:
            keys = {(email, day) for email, day, *_ in editions}
            existing = set()
            for day in {day for _, day in keys}:
                emails = [email for email, d in keys if d == day]
                for chunk in _chunks(emails):
                    query = select(deliveries_table.c.subscriber_email).where(
                        deliveries_table.c.edition_date == day, self._among(deliveries_table.c.subscriber_email, chunk)
                    )
                    existing.update((email, day) for email in conn.execute(query).scalars())
            fresh = [e for e in editions if (e[0], e[1]) not in existing]
            if not fresh:
                return
            conn.execute(
                self._insert_new(deliveries_table),
                [
                    {
                        "subscriber_email": email,
                        "edition_date": day,
                        "state": "pending",
                        "message_id": message_id,
                        "picks": json.dumps(
                            [{"id": p.paper.id, "score": p.score, "reasons": p.reasons} for p in picks], ensure_ascii=False
                        ),
                        "subject": subject,
                        "attempts": 0,
                        "updated_at": now,
                    }
                    for email, day, message_id, picks, subject in fresh
                ],
            )
            sent = {
                (email, pick.paper.id): day for email, day, _, picks, _ in fresh for pick in picks
            }
            already = set()
            for chunk in _chunks(list({email for email, _ in sent})):
                query = select(sent_papers_table.c.subscriber_email, sent_papers_table.c.paper_id).where(
                    self._among(sent_papers_table.c.subscriber_email, chunk)
                )
                already.update(tuple(row) for row in conn.execute(query))
            rows = [
                {"subscriber_email": email, "paper_id": paper_id, "edition_date": day}
                for (email, paper_id), day in sent.items()
                if (email, paper_id) not in already
            ]
            if rows:
                conn.execute(self._insert_new(sent_papers_table), rows)

    def mark(self, edition_date: date, outcomes: Sequence[tuple[str, str, str | None]], *, count_attempt: bool = False) -> None:
        """Move ledger rows to a new state: each outcome is (email, state, reply)."""
        if not outcomes:
            return
        for _, state, _ in outcomes:
            if state not in LEDGER_STATES:
                raise ValueError(f"unknown ledger state {state!r}")
        table = deliveries_table
        statement = (
            update(table)
            .where(table.c.subscriber_email == bindparam("v_email"), table.c.edition_date == bindparam("v_day"))
            .values(
                state=bindparam("v_state"),
                reply=func.coalesce(bindparam("v_reply"), table.c.reply),
                attempts=table.c.attempts + (1 if count_attempt else 0),
                updated_at=bindparam("v_now"),
            )
        )
        now = _now()
        with self._writes.begin() as conn:
            conn.execute(
                statement,
                [
                    {"v_email": email, "v_day": edition_date, "v_state": state, "v_reply": reply, "v_now": now}
                    for email, state, reply in outcomes
                ],
            )

    def claim(self, edition_date: date, emails: Sequence[str], *, worker: str, lease_seconds: float) -> list[str]:
        """Take rows of one edition date for `worker`; the emails it got, in the given order.

        A row is taken when it is `pending`, or `sending` under a lease that has
        run out; it becomes `sending` with `claimed_by=worker` and a lease of
        `lease_seconds` from now (this machine's UTC clock). Concurrent claimers
        never get the same row: PostgreSQL skips rows another claimer has locked
        (FOR UPDATE SKIP LOCKED); SQLite runs one writer at a time (BEGIN IMMEDIATE).
        """
        table = deliveries_table
        now = _now()
        claimable = or_(table.c.state == "pending", and_(table.c.state == "sending", table.c.lease_until < now))
        wanted = list(dict.fromkeys(emails))
        got: set[str] = set()
        with self._writes.begin() as conn:
            for chunk in _chunks(wanted):
                in_chunk = and_(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, chunk), claimable)
                free = list(conn.execute(select(table.c.subscriber_email).where(in_chunk).with_for_update(skip_locked=True)).scalars())
                if not free:
                    continue
                conn.execute(
                    update(table)
                    .where(table.c.edition_date == edition_date, self._among(table.c.subscriber_email, free), claimable)
                    .values(state="sending", claimed_by=worker, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
                )
                got.update(free)
        return [email for email in wanted if email in got]

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
        """One subscriber's ledger rows, newest first (those dated before `before`, if given): the archive."""
        table = deliveries_table
        query = select(table).where(table.c.subscriber_email == email).order_by(table.c.edition_date.desc())
        if before is not None:
            query = query.where(table.c.edition_date < before)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_ledger_from_row(row) for row in conn.execute(query)]
