"""The suppression list: addresses that must never be mailed (unsubscribed, disabled, bounced), and the bounces."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, select

from newsletter.store.schema import _now, bounces_table, deliveries_table, suppressions_table


@dataclass(frozen=True)
class BounceRecord:
    """One address in one delivery status notification."""

    report_id: str
    email: str
    kind: str  # hard | soft
    reason: str
    edition_date: date | None = None


class SuppressionsMixin:
    """Store methods for the suppressions and bounces tables."""

    def suppress(self, email: str, reason: str = "unsubscribed") -> bool:
        """Add an address to the suppression list; False when it was already there."""
        row = {"email": email.strip().lower(), "reason": reason, "created_at": _now()}
        with self._writes.begin() as conn:
            statement = self._insert_new(suppressions_table).values(row)
            return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Remove an address from the suppression list; False when it was not there."""
        with self._writes.begin() as conn:
            result = conn.execute(delete(suppressions_table).where(suppressions_table.c.email == email.strip().lower()))
            return result.rowcount > 0

    def suppressed(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(suppressions_table.c.email)).scalars())

    def suppression_reasons(self) -> dict[str, str]:
        """Every suppressed address with why (unsubscribed, hard bounce: …, soft bounces in a row: …)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(suppressions_table.c.email, suppressions_table.c.reason)).all())

    def record_bounce(self, bounce: BounceRecord) -> bool:
        """Store one bounce; False when this report already gave this address a bounce (read twice)."""
        row = {
            "report_id": bounce.report_id, "email": bounce.email.strip().lower(), "kind": bounce.kind,
            "reason": bounce.reason, "edition_date": bounce.edition_date, "received_at": _now(),
        }
        with self._writes.begin() as conn:
            statement = self._insert_new(bounces_table).values(row)
            return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount > 0

    def edition_of(self, email: str, message_id: str) -> date | None:
        """The edition date of the message `message_id` sent to `email`, if the ledger has it."""
        table = deliveries_table
        with self.engine.connect() as conn:
            return conn.execute(
                select(table.c.edition_date)
                .where(table.c.subscriber_email == email.strip().lower(), table.c.message_id == message_id.strip())
            ).scalar()

    def soft_bounce_streak(self, email: str) -> int:
        """How many editions in a row, back from the latest soft-bounced one, soft-bounced.

        An edition that was sent and did not bounce ends the streak; soft bounces whose
        edition is unknown (the report did not quote our Message-ID) count one each.
        """
        email = email.strip().lower()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(bounces_table.c.edition_date).where(bounces_table.c.email == email, bounces_table.c.kind == "soft")
            ).scalars().all()
            bounced = {day for day in rows if day is not None}
            unknown = sum(1 for day in rows if day is None)
            if not bounced:
                return unknown
            sent = conn.execute(
                select(deliveries_table.c.edition_date)
                .where(deliveries_table.c.subscriber_email == email, deliveries_table.c.state == "sent",
                       deliveries_table.c.edition_date <= max(bounced))
                .order_by(deliveries_table.c.edition_date.desc())
            ).scalars().all()
        streak = 0
        for day in sent or sorted(bounced, reverse=True):
            if day not in bounced:
                break
            streak += 1
        return max(streak, 1) + unknown

    def bounce_counts(self, emails: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """{email: {"hard": n, "soft": n}} over every bounce stored."""
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for email, kind in conn.execute(select(bounces_table.c.email, bounces_table.c.kind)):
                counts.setdefault(email, {"hard": 0, "soft": 0})[kind] += 1
        wanted = None if emails is None else {e.strip().lower() for e in emails}
        return {e: c for e, c in counts.items() if wanted is None or e in wanted}
