"""How each configured source's fetches went: the last success, and since when it has been failing.

An empty day's note reads this to say "fetching from hf has failed since …" instead of staying silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from newsletter.store.schema import _as_utc, _now, _plain, fetch_status_table


@dataclass(frozen=True)
class FetchStatus:
    """One source's fetch record; `failing_since` is None while its latest fetch worked."""

    source: str
    last_ok_at: datetime | None
    failing_since: datetime | None
    last_error: str | None


class FetchesMixin:
    """Store methods for the fetch_status table."""

    def record_fetch(self, source: str, *, error: str | None = None, at: datetime | None = None) -> None:
        """Note one fetch of `source`: a success (no `error`), or a failure, keeping when the failures began."""
        table = fetch_status_table
        now = at or _now()
        with self._writes.begin() as conn:
            conn.execute(self._insert_new(table).values(source=source, updated_at=now))
            if error is None:
                values = {"last_ok_at": now, "failing_since": None, "last_error": None}
                conn.execute(update(table).where(table.c.source == source).values(updated_at=now, **values))
            else:
                conn.execute(
                    update(table)
                    .where(table.c.source == source, table.c.failing_since.is_(None))
                    .values(failing_since=now)
                )
                conn.execute(
                    update(table).where(table.c.source == source).values(last_error=_plain(error), updated_at=now)
                )

    def fetch_statuses(self) -> dict[str, FetchStatus]:
        """Every source's fetch record, by source."""
        table = fetch_status_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.source, table.c.last_ok_at, table.c.failing_since, table.c.last_error))
            return {
                row.source: FetchStatus(row.source, _as_utc(row.last_ok_at), _as_utc(row.failing_since), row.last_error)
                for row in rows
            }
