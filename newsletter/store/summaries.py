"""Stored one-sentence TL;DRs, one per paper: made once (newsletter/summaries.py), read by every edition after."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from newsletter.store.schema import _chunks, _now, _plain, summaries_table


class SummariesMixin:
    """Store methods for the summaries table."""

    def summaries(self, paper_ids: Iterable[str]) -> dict[str, str]:
        """The stored TL;DR of each of `paper_ids` that has one."""
        table = summaries_table
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(paper_ids))):
                query = select(table.c.paper_id, table.c.summary).where(self._among(table.c.paper_id, chunk))
                found.update((paper_id, summary) for paper_id, summary in conn.execute(query))
        return found

    def add_summaries(self, made: dict[str, str], *, model: str = "") -> None:
        """Store TL;DRs by paper id; a paper that already has one keeps it (the first one made wins)."""
        if not made:
            return
        now = _now()
        rows = [
            {"paper_id": paper_id, "summary": _plain(summary), "model": model, "created_at": now}
            for paper_id, summary in made.items()
        ]
        with self._writes.begin() as conn:
            conn.execute(self._insert_new(summaries_table), rows)
