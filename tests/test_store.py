"""The SQLite store: one record per paper, merged faithfully; the ledger; the suppression list."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from newsletter.models import Paper, Pick
from newsletter.store import Store


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'papers.db'}") as store:
        yield store


def test_file_is_wal_and_versioned(tmp_path: Path, store: Store):
    store.add_papers([Paper.create("A paper")])
    with sqlite3.connect(tmp_path / "papers.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(papers)")}
    assert any("dated" in name for name in indexes) and any("upvotes" in name for name in indexes)


def test_same_paper_twice_is_one_record_with_the_best_of_both(store: Store):
    first = Paper.create("Sorted LLaMA", upvotes=1, author_count=6, sources=["hf-page"])
    second = Paper.create("Sorted  LLaMA", upvotes=5, organization="Huawei", published=date(2023, 9, 16), sources=["jsonl"])
    assert store.add_papers([first]).new == 1
    stats = store.add_papers([second])
    assert (stats.new, stats.updated) == (0, 1)
    [paper] = store.papers()
    assert (paper.upvotes, paper.author_count, paper.organization, paper.published) == (5, 6, "Huawei", date(2023, 9, 16))
    assert paper.sources == ["hf-page", "jsonl"]


def test_emptier_data_never_overwrites(store: Store):
    store.add_papers([Paper.create("T", abstract="A long abstract.", upvotes=9, authors=["A", "B"], organization="Org")])
    store.add_papers([Paper.create("T", upvotes=None, abstract="")])
    [paper] = store.papers()
    assert (paper.abstract, paper.upvotes, paper.authors, paper.organization) == ("A long abstract.", 9, ["A", "B"], "Org")


def test_arxiv_id_revealed_later_merges_the_title_only_record(store: Store):
    store.add_papers([Paper.create("Compact 3D Scene Representation", upvotes=3, sources=["hf-page"])])
    title_only_id = store.papers()[0].id
    assert title_only_id.startswith("t:")
    store.record_pending([("a@example.org", date(2026, 1, 1), "<m@x>", [Pick(store.papers()[0], 1.0)], "s")])
    stats = store.add_papers([Paper.create("Compact 3D scene representation!", arxiv_id="2312.13299v2", sources=["arxiv"])])
    assert stats.new == 0
    [paper] = store.papers()
    assert paper.id == "2312.13299" and paper.upvotes == 3 and paper.sources == ["hf-page", "arxiv"]
    assert store.sent_paper_ids(["a@example.org"]) == {"a@example.org": {"2312.13299"}}


def test_different_arxiv_papers_with_the_same_title_stay_apart(store: Store):
    store.add_papers([Paper.create("Attention", arxiv_id="1111.11111"), Paper.create("Attention", arxiv_id="2222.22222")])
    assert store.count_papers() == 2


def test_duplicates_inside_one_batch_are_merged(store: Store):
    stats = store.add_papers([Paper.create("X", upvotes=1), Paper.create("x", upvotes=4), Paper.create("Y")])
    assert (stats.parsed, stats.new) == (3, 2)
    assert {p.title: p.upvotes for p in store.papers()}["X"] == 4


def test_papers_since_until_and_limit(store: Store):
    store.add_papers([Paper.create(f"P{d}", published=date(2024, 1, d)) for d in range(1, 11)])
    assert [p.title for p in store.papers(since=date(2024, 1, 8))] == ["P10", "P9", "P8"]
    assert [p.title for p in store.papers(until=date(2024, 1, 2))] == ["P2", "P1"]
    assert len(store.papers(limit=4)) == 4


def test_first_and_last_seen(store: Store):
    early = datetime(2026, 1, 1, tzinfo=timezone.utc)
    late = datetime(2026, 2, 1, tzinfo=timezone.utc)
    store.add_papers([Paper.create("P")], seen_at=late)
    store.add_papers([Paper.create("P")], seen_at=early)
    [paper] = store.papers()
    assert (paper.first_seen, paper.last_seen) == (early, late)


def test_ledger_moves_through_states_and_remembers_papers(store: Store):
    paper = Paper.create("P", arxiv_id="2401.00001")
    day = date(2026, 11, 25)
    store.record_pending([("a@example.org", day, "<id@x>", [Pick(paper, 2.5, ["trending #1"])], "Subject")])
    store.record_pending([("a@example.org", day, "<other@x>", [], "Again")])  # existing row is kept
    [entry] = store.ledger_entries(day).values()
    assert (entry.state, entry.message_id, entry.paper_ids, entry.picks[0]["reasons"]) == (
        "pending", "<id@x>", ["2401.00001"], ["trending #1"])
    store.mark(day, [("a@example.org", "sending", None)])
    store.mark(day, [("a@example.org", "sent", "250 OK")], count_attempt=True)
    entry = store.ledger_entries(day)["a@example.org"]
    assert (entry.state, entry.reply, entry.attempts) == ("sent", "250 OK", 1)
    assert store.ledger_counts(day)["sent"] == 1
    assert store.sent_paper_ids(["a@example.org"], before=day) == {}
    assert store.sent_paper_ids(["a@example.org"], before=date(2026, 11, 26)) == {"a@example.org": {"2401.00001"}}
    with pytest.raises(ValueError):
        store.mark(day, [("a@example.org", "lost", None)])


def test_suppression_list(store: Store):
    assert store.suppress("Ada@Example.org") is True
    assert store.suppress("ada@example.org") is False
    assert store.suppressed() == {"ada@example.org"}
    assert store.unsuppress("ADA@example.org") is True
    assert store.suppressed() == set()


def test_a_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(f"sqlite:///{path}")
