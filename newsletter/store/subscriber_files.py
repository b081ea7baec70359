"""Parsed subscriber files, kept so that a run does not parse and validate thousands of TOML files again.

A row holds one file's validated `Subscriber` as JSON, keyed by the file's path,
with the size and modification time it had when it was read and the shape of
the model that validated it; any of these differing means the file is read again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError

from newsletter.store.schema import subscriber_files_table


class SubscriberFilesMixin:
    """Store methods for the subscriber_files table (see newsletter.config.load_subscribers)."""

    def subscriber_files(self, directory: str) -> dict[str, tuple[int, int, str, str]]:
        """path -> (size, mtime_ns, model shape, subscriber JSON) for the files cached under `directory`."""
        table = subscriber_files_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.path, table.c.size, table.c.mtime_ns, table.c.shape, table.c.subscriber).where(
                    table.c.directory == directory
                )
            ).all()  # fetched at once: thousands of rows one by one cost twice as long
            return {path: (size, mtime_ns, shape, data) for path, size, mtime_ns, shape, data in rows}

    def save_subscriber_files(self, directory: str, rows: Sequence[dict], keep: set[str]) -> None:
        """Store freshly parsed files (dicts of the table's columns) and forget the cached ones not in `keep`.

        Two runs starting together both parse and save the same files: a row is replaced if it is
        there, and a write that still loses a race (a deadlock) is dropped, since the next run
        simply parses those files again.
        """
        table = subscriber_files_table
        try:
            with self._writes.begin() as conn:
                known = set(conn.execute(select(table.c.path).where(table.c.directory == directory)).scalars())
                gone = sorted(known - keep)
                for start in range(0, len(gone), 500):
                    conn.execute(delete(table).where(self._among(table.c.path, gone[start : start + 500])))
                if rows:
                    conn.execute(self._insert_replacing(table), [{**row, "directory": directory} for row in rows])
        except DBAPIError:
            return
