"""The feedback table: "more like this" / "fewer like this" clicks from the email, per subscriber.

One row per (subscriber, paper): a later click on the same paper replaces the earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from newsletter.store.schema import _as_utc, _chunks, _now, feedback_table

FEEDBACK_KINDS = ("more", "fewer")


@dataclass(frozen=True)
class Feedback:
    email: str
    paper_id: str
    kind: str  # "more" or "fewer"
    created_at: datetime


class FeedbackMixin:
    """Store methods for the feedback table."""

    def add_feedback(self, email: str, paper_id: str, kind: str, *, at: datetime | None = None) -> None:
        """Record a click; it replaces any earlier one of this subscriber on this paper."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, not {kind!r}")
        email = email.strip().lower()
        table = feedback_table
        with self._writes.begin() as conn:
            conn.execute(delete(table).where(table.c.subscriber_email == email, table.c.paper_id == paper_id))
            conn.execute(table.insert().values(subscriber_email=email, paper_id=paper_id, kind=kind, created_at=at or _now()))

    def feedback(self, emails: Iterable[str]) -> dict[str, list[Feedback]]:
        """Each subscriber's feedback, oldest first (subscribers without any are absent)."""
        emails = [email.strip().lower() for email in emails]
        table = feedback_table
        found: dict[str, list[Feedback]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(emails):
                query = select(table).where(self._among(table.c.subscriber_email, chunk)).order_by(table.c.created_at)
                for row in conn.execute(query):
                    found.setdefault(row.subscriber_email, []).append(
                        Feedback(row.subscriber_email, row.paper_id, row.kind, _as_utc(row.created_at)))
        return found
