"""The paper_vectors table: one embedding per (paper, model), computed once at ingest.

Vectors are float32 bytes (SQLite BLOB, PostgreSQL bytea). A paper whose title or
abstract changes loses its vectors (see `PapersMixin.add_papers`), so the next
`embed_missing` computes them again from the new text.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import and_, delete, select

from newsletter.store.schema import _chunks, paper_vectors_table, papers_table


class VectorsMixin:
    """Store methods for the paper_vectors table."""

    def save_vectors(self, model: str, ids: list[str], vectors: np.ndarray) -> None:
        """Store (or replace) the vectors of `ids` under `model`, one row each."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [{"paper_id": i, "model": model, "vector": vector.tobytes()} for i, vector in zip(ids, vectors, strict=True)]
        if not rows:
            return
        with self._writes.begin() as conn:
            for chunk in _chunks(ids):
                conn.execute(delete(paper_vectors_table).where(
                    paper_vectors_table.c.model == model, self._among(paper_vectors_table.c.paper_id, chunk)))
            for chunk in _chunks(rows):
                self._insert_many(conn, paper_vectors_table, list(chunk))

    def load_vectors(self, model: str, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of `ids` under `model` (ids without one are absent)."""
        ids = list(ids)
        found: dict[str, np.ndarray] = {}
        table = paper_vectors_table
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                query = select(table.c.paper_id, table.c.vector).where(table.c.model == model, self._among(table.c.paper_id, chunk))
                for paper_id, blob in conn.execute(query):
                    found[paper_id] = np.frombuffer(blob, dtype=np.float32)
        return found

    def papers_without_vectors(self, model: str, limit: int | None = None) -> list[tuple[str, str, str]]:
        """(id, title, abstract) of stored papers that have no vector under `model`."""
        vectors = paper_vectors_table
        joined = papers_table.outerjoin(vectors, and_(vectors.c.paper_id == papers_table.c.id, vectors.c.model == model))
        query = (
            select(papers_table.c.id, papers_table.c.title, papers_table.c.abstract)
            .select_from(joined)
            .where(vectors.c.paper_id.is_(None))
            .order_by(self._sorted(papers_table.c.id))
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def count_vectors(self, model: str) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            query = select(func.count()).select_from(paper_vectors_table).where(paper_vectors_table.c.model == model)
            return conn.execute(query).scalar_one()
