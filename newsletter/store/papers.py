"""The papers table: de-duplicated papers, merged across sightings.

Papers are de-duplicated by their stable id (arXiv id, else a title hash); a
title-only record and an arXiv record with the same normalised title become one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from newsletter.models import Paper, normalise_title
from newsletter.store.schema import (
    _as_utc,
    _chunks,
    _now,
    _plain,
    _to_json,
    paper_vectors_table,
    papers_table,
    sent_papers_table,
)


@dataclass
class IngestStats:
    """What one `add_papers` call did."""

    parsed: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0



def merge_papers(old: Paper, new: Paper) -> Paper:
    """One record from two sightings of the same paper; never loses known data.

    Highest upvotes win; missing authors, organisation, date, url and ids are
    filled; sources and keywords are united; first/last seen widen.
    """

    def first(a, b):
        return a if a not in (None, "", []) else b

    def highest(a, b):
        return b if a is None else a if b is None else max(a, b)

    def earliest(a, b):
        return b if a is None else a if b is None else min(a, b)

    return replace(
        old,
        id=old.id if old.arxiv_id or not new.arxiv_id else new.id,
        title=first(old.title, new.title),
        abstract=old.abstract if len(old.abstract) >= len(new.abstract) else new.abstract,
        authors=old.authors if len(old.authors) >= len(new.authors) else new.authors,
        author_count=highest(old.author_count, new.author_count),
        organization=first(old.organization, new.organization),
        published=first(old.published, new.published),
        upvotes=highest(old.upvotes, new.upvotes),
        url=first(old.url, new.url),
        arxiv_id=first(old.arxiv_id, new.arxiv_id),
        github_repo=first(old.github_repo, new.github_repo),
        github_stars=highest(old.github_stars, new.github_stars),
        ai_keywords=list(dict.fromkeys([*old.ai_keywords, *new.ai_keywords])),
        sources=list(dict.fromkeys([*old.sources, *new.sources])),
        first_seen=earliest(old.first_seen, new.first_seen),
        last_seen=highest(old.last_seen, new.last_seen),
    )



def _paper_row(paper: Paper, title_key: str | None = None) -> dict:
    first_seen = _as_utc(paper.first_seen)
    return {
        "id": paper.id,
        "title": _plain(paper.title),
        "title_key": _plain(title_key or normalise_title(paper.title)),
        "abstract": _plain(paper.abstract),
        "authors": _to_json(paper.authors),
        "author_count": paper.author_count,
        "organization": _plain(paper.organization),
        "published": paper.published,
        "upvotes": paper.upvotes,
        "url": _plain(paper.url),
        "arxiv_id": paper.arxiv_id,
        "github_repo": _plain(paper.github_repo),
        "github_stars": paper.github_stars,
        "ai_keywords": _to_json(paper.ai_keywords),
        "sources": _to_json(paper.sources),
        "first_seen": first_seen,
        "last_seen": _as_utc(paper.last_seen),
        "dated": paper.published or (first_seen.date() if first_seen else None),
    }


def _paper_from_row(row) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=json.loads(row.authors),
        author_count=row.author_count,
        organization=row.organization,
        published=row.published,
        upvotes=row.upvotes,
        url=row.url,
        arxiv_id=row.arxiv_id,
        github_repo=row.github_repo,
        github_stars=row.github_stars,
        ai_keywords=json.loads(row.ai_keywords),
        sources=json.loads(row.sources),
        first_seen=_as_utc(row.first_seen),
        last_seen=_as_utc(row.last_seen),
    )



class PaperSet:
    """Papers keyed by id and by normalised title, merging sightings of the same paper."""

    def __init__(self, papers: Iterable[Paper] = ()):
        self._by_id: dict[str, Paper] = {}
        self._id_by_title: dict[str, str] = {}
        self.title_key: dict[str, str] = {}
        for paper in papers:
            self.add(paper)

    def match(self, paper: Paper, title_key: str | None = None) -> Paper | None:
        """The held paper that is the same as `paper` (same id, or same normalised title)."""
        found = self._by_id.get(paper.id)
        if found is None:
            held_id = self._id_by_title.get(title_key or normalise_title(paper.title))
            found = self._by_id.get(held_id) if held_id else None
            if found is not None and found.arxiv_id and paper.arxiv_id and found.arxiv_id != paper.arxiv_id:
                return None
        return found

    def add(self, paper: Paper) -> None:
        key = normalise_title(paper.title)
        old = self.match(paper, key)
        if old is not None:
            paper = merge_papers(old, paper)
            if paper.id != old.id:
                del self._by_id[old.id]
            key = self.title_key[old.id] if paper.title == old.title else normalise_title(paper.title)
        self._by_id[paper.id] = paper
        self._id_by_title[key] = paper.id
        self.title_key[paper.id] = key

    def papers(self) -> list[Paper]:
        return list(self._by_id.values())


def _content(paper: Paper) -> dict:
    row = _paper_row(paper)
    del row["last_seen"]
    return row



class PapersMixin:
    """Store methods for the papers table."""

    def add_papers(self, papers: Iterable[Paper], *, seen_at: datetime | None = None) -> IngestStats:
        """Upsert papers in one transaction, merging with what the store already holds.

        Papers without first/last seen times are stamped with `seen_at` (default now).
        """
        seen_at = seen_at or _now()
        stats = IngestStats()
        batch = PaperSet()
        for paper in papers:
            stats.parsed += 1
            paper.first_seen = paper.first_seen or seen_at
            paper.last_seen = paper.last_seen or seen_at
            batch.add(paper)
        with self._writes.begin() as conn:
            stored = PaperSet(self._load_matches(conn, batch))
            inserts, updates, renamed, stale = [], [], {}, []  # stale: papers whose embedded text changed
            seen_again: dict[datetime, list[str]] = {}  # unchanged papers: only last_seen moves
            for paper in batch.papers():
                title_key = batch.title_key[paper.id]
                old = stored.match(paper, title_key)
                if old is None:
                    inserts.append(_paper_row(paper, title_key))
                    stats.new += 1
                    continue
                merged = merge_papers(old, paper)
                if merged.id != old.id:
                    renamed[old.id] = merged.id
                    inserts.append(_paper_row(merged))
                    stats.updated += 1
                elif _content(merged) != _content(old):
                    updates.append(_paper_row(merged))
                    stats.updated += 1
                    if (merged.title, merged.abstract) != (old.title, old.abstract):
                        stale.append(merged.id)
                else:
                    stats.unchanged += 1
                    if merged.last_seen != old.last_seen:
                        seen_again.setdefault(merged.last_seen, []).append(merged.id)
            if renamed:
                self._rename_papers(conn, renamed)
            if inserts:
                self._insert_many(conn, papers_table, inserts)
            if updates:
                columns = {name: bindparam(f"v_{name}") for name in updates[0] if name != "id"}
                statement = update(papers_table).where(papers_table.c.id == bindparam("v_id")).values(columns)
                conn.execute(statement, [{f"v_{k}": v for k, v in row.items()} for row in updates])
            for chunk in _chunks(stale + list(renamed)):
                conn.execute(delete(paper_vectors_table).where(self._among(paper_vectors_table.c.paper_id, chunk)))
            for last_seen, ids in seen_again.items():
                for chunk in _chunks(ids):
                    conn.execute(update(papers_table).where(papers_table.c.id.in_(chunk)).values(last_seen=last_seen))
        return stats

    def _load_matches(self, conn: Connection, batch: PaperSet) -> list[Paper]:
        """Stored papers that share an id or a normalised title with the batch."""
        found: dict[str, Paper] = {}
        ids = list(batch.title_key)
        keys = list(batch.title_key.values())
        for column, values in ((papers_table.c.id, ids), (papers_table.c.title_key, keys)):
            for chunk in _chunks(values):
                for row in conn.execute(select(papers_table).where(self._among(column, chunk))):
                    found[row.id] = _paper_from_row(row)
        return list(found.values())

    def _rename_papers(self, conn: Connection, renamed: dict[str, str]) -> None:
        """Title-only records that turned out to have an arXiv id: drop the old row, keep its history."""
        for old_id, new_id in renamed.items():
            conn.execute(
                update(sent_papers_table).where(sent_papers_table.c.paper_id == old_id).values(paper_id=new_id)
            )
        for chunk in _chunks(list(renamed)):
            conn.execute(delete(papers_table).where(self._among(papers_table.c.id, chunk)))

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        """Papers by id (ids that are not stored are simply absent)."""
        ids = list(ids)
        found: dict[str, Paper] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(select(papers_table).where(self._among(papers_table.c.id, chunk))):
                    found[row.id] = _paper_from_row(row)
        return found

    def papers(self, *, since: date | None = None, until: date | None = None, limit: int | None = None) -> list[Paper]:
        """Stored papers dated `since`..`until` (published, else first seen), newest first."""
        newest = papers_table.c.dated
        query = select(papers_table).order_by(newest.desc(), self._sorted(papers_table.c.id))
        if since is not None:
            query = query.where(newest >= since)
        if until is not None:
            query = query.where(newest <= until)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_paper_from_row(row) for row in conn.execute(query)]

    def count_papers(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(papers_table)).scalar_one()

    def find_papers(self, *, arxiv_ids=(), dois=(), title_keys=()) -> dict[tuple[str, str], Paper]:
        """Stored papers by arXiv id, DOI (found in a paper's url) or normalised title.

        Keys are ("arxiv", id), ("doi", doi) and ("title", key); what is not stored is absent.
        """
        found: dict[tuple[str, str], Paper] = {}
        table = papers_table
        with self.engine.connect() as conn:
            for kind, column, values in (("arxiv", table.c.arxiv_id, list(arxiv_ids)), ("title", table.c.title_key, list(title_keys))):
                for chunk in _chunks(values):
                    for row in conn.execute(select(table).where(self._among(column, chunk))):
                        found[kind, row.arxiv_id if kind == "arxiv" else row.title_key] = _paper_from_row(row)
            for doi in dois:
                row = conn.execute(select(table).where(func.lower(table.c.url).contains(doi.lower())).limit(1)).first()
                if row is not None:
                    found["doi", doi] = _paper_from_row(row)
        return found
