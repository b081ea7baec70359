"""The suppression list: addresses that must never be mailed (unsubscribed, disabled, bounced)."""

from __future__ import annotations

from sqlalchemy import delete, select

from newsletter.store.schema import _now, suppressions_table


class SuppressionsMixin:
    """Store methods for the suppressions table."""

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
