"""The store on SQLite and on a real PostgreSQL: one record per paper, merged faithfully;
the ledger and its claims; the suppression list; schema versions and migrations."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.models import Paper, Pick
from newsletter.store import SCHEMA_VERSION, EditionRecord, Outcome, State, Store, engine_url
from tests.pg_server import pg_server, pg_url  # noqa: F401 (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'papers.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str):
    with Store(store_url) as store:
        yield store


def _sql(url: str, *statements: str) -> list[tuple]:
    """Run SQL straight through the driver (not the Store); the last statement's rows."""
    rows: list[tuple] = []
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) as conn:
            for statement in statements:
                rows = conn.execute(statement).fetchall()
        return rows
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
    return rows


def test_file_is_wal_and_versioned(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'papers.db'}") as store:
        store.add_papers([Paper.create("A paper")])
    with sqlite3.connect(tmp_path / "papers.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(papers)")}
    assert any("dated" in name for name in indexes) and any("upvotes" in name for name in indexes)


def test_postgresql_keeps_the_version_in_a_table(pg_url: str):
    with Store(pg_url) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert _sql(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    indexes = {name for (name,) in _sql(pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'papers'")}
    assert any("dated" in name for name in indexes) and any("upvotes" in name for name in indexes)
    with Store(pg_url) as store:  # opening again changes nothing
        assert store.schema_version() == SCHEMA_VERSION
    assert _sql(pg_url, "SELECT count(*) FROM schema_version") == [(1,)]


def test_store_urls_map_to_psycopg():
    assert engine_url("postgresql://u@db.example:5433/news").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@db.example/news").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg://u@db.example/news").drivername == "postgresql+psycopg"
    assert engine_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(ValueError, match="unsupported store"):
        engine_url("mysql://u@db.example/news")


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
    store.record_pending([EditionRecord("a@example.org", date(2026, 1, 1), "<m@x>", [Pick(store.papers()[0], 1.0)], "s")])
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
    later = datetime(2026, 3, 1, tzinfo=timezone.utc)
    stats = store.add_papers([Paper.create("P")], seen_at=later)  # nothing new but the sighting
    [paper] = store.papers()
    assert (stats.unchanged, paper.first_seen, paper.last_seen) == (1, early, later)


def test_ledger_moves_through_states_and_remembers_papers(store: Store):
    paper = Paper.create("P", arxiv_id="2401.00001")
    day = date(2026, 11, 25)
    store.record_pending([EditionRecord("a@example.org", day, "<id@x>", [Pick(paper, 2.5, ["trending #1"])], "Subject")])
    store.record_pending([EditionRecord("a@example.org", day, "<other@x>", [], "Again")])  # existing row is kept
    [entry] = store.ledger_entries(day).values()
    assert (entry.state, entry.message_id, entry.paper_ids, entry.picks[0]["reasons"]) == (
        "pending", "<id@x>", ["2401.00001"], ["trending #1"])
    assert store.claim(day, ["a@example.org"], owner="me", lease_seconds=60).emails == ["a@example.org"]
    store.record_outcomes(day, [Outcome("a@example.org", State.SENT, "250 OK")])
    store.record_outcomes(day, [Outcome("a@example.org", State.FAILED, "late report")])  # sent stays sent
    entry = store.ledger_entries(day)["a@example.org"]
    assert (entry.state, entry.reply, entry.attempts, entry.claimed_by, entry.lease_until) == ("sent", "250 OK", 1, "me", None)
    assert store.ledger_counts(day)["sent"] == 1
    assert store.sent_paper_ids(["a@example.org"], before=day) == {}
    assert store.sent_paper_ids(["a@example.org"], before=date(2026, 11, 26)) == {"a@example.org": {"2401.00001"}}
    with pytest.raises(ValueError):
        store.record_outcomes(day, [Outcome("a@example.org", "lost")])


def test_suppression_list(store: Store):
    assert store.suppress("Ada@Example.org") is True
    assert store.suppress("ada@example.org") is False
    assert store.suppressed() == {"ada@example.org"}
    assert store.unsuppress("ADA@example.org") is True
    assert store.suppressed() == set()


def test_a_newer_schema_is_refused(store_url: str):
    Store(store_url).close()
    if store_url.startswith("sqlite"):
        _sql(store_url, "PRAGMA user_version=99")
    else:
        _sql(store_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(store_url)


V1_SQLITE_SCHEMA = """
CREATE TABLE papers (id VARCHAR NOT NULL, title TEXT NOT NULL, title_key TEXT NOT NULL, abstract TEXT NOT NULL,
    authors TEXT NOT NULL, author_count INTEGER, organization TEXT, published DATE, upvotes INTEGER, url TEXT,
    arxiv_id VARCHAR, github_repo TEXT, github_stars INTEGER, ai_keywords TEXT NOT NULL, sources TEXT NOT NULL,
    first_seen DATETIME, last_seen DATETIME, dated DATE, PRIMARY KEY (id));
CREATE INDEX ix_papers_upvotes ON papers (upvotes);
CREATE INDEX ix_papers_title_key ON papers (title_key);
CREATE INDEX ix_papers_dated ON papers (dated);
CREATE TABLE deliveries (subscriber_email VARCHAR NOT NULL, edition_date DATE NOT NULL, state VARCHAR NOT NULL,
    message_id TEXT NOT NULL, picks TEXT NOT NULL, subject TEXT NOT NULL, reply TEXT, attempts INTEGER NOT NULL,
    updated_at DATETIME NOT NULL, PRIMARY KEY (subscriber_email, edition_date));
CREATE INDEX ix_deliveries_edition_date ON deliveries (edition_date);
CREATE TABLE sent_papers (subscriber_email VARCHAR NOT NULL, paper_id VARCHAR NOT NULL, edition_date DATE NOT NULL,
    PRIMARY KEY (subscriber_email, paper_id));
CREATE TABLE suppressions (email VARCHAR NOT NULL, reason TEXT NOT NULL, created_at DATETIME NOT NULL,
    PRIMARY KEY (email));
INSERT INTO deliveries VALUES ('a@example.org', '2026-11-25', 'pending', '<m@x>', '[]', 'S', NULL, 0,
    '2026-11-25 06:00:00.000000');
INSERT INTO deliveries VALUES ('b@example.org', '2026-11-25', 'sent', '<n@x>', '[]', 'S', '250 OK', 1,
    '2026-11-25 06:00:00.000000');
PRAGMA user_version = 1;
"""


def test_a_version_1_sqlite_file_upgrades_in_place(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SQLITE_SCHEMA)
    with Store(f"sqlite:///{path}") as store:
        assert store.schema_version() == SCHEMA_VERSION
        entries = store.ledger_entries(date(2026, 11, 25))
        assert {e.email: (e.state, e.claimed_by, e.lease_until) for e in entries.values()} == {
            "a@example.org": ("pending", None, None), "b@example.org": ("sent", None, None)}
        assert entries["a@example.org"].updated_at == datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
        assert store.claim(date(2026, 11, 25), ["a@example.org", "b@example.org"], owner="w", lease_seconds=60).emails == [
            "a@example.org"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {"claimed_by", "lease_until"} <= {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}


def test_a_version_1_store_upgrades_in_place(store_url: str):
    day = date(2026, 11, 25)
    with Store(store_url) as store:
        store.record_pending([EditionRecord("a@example.org", day, "<m@x>", [], "S")])
    # back to version 1: the deliveries table as it was before the claim columns
    version = "PRAGMA user_version=1" if store_url.startswith("sqlite") else "UPDATE schema_version SET version = 1"
    _sql(store_url, "ALTER TABLE deliveries DROP COLUMN claimed_by", "ALTER TABLE deliveries DROP COLUMN lease_until", version)
    with Store(store_url) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.claim(day, ["a@example.org"], owner="w", lease_seconds=60).emails == ["a@example.org"]
        assert store.ledger_entries(day)["a@example.org"].message_id == "<m@x>"


def test_times_come_back_as_aware_utc_and_dates_as_dates(store: Store):
    plus_two = timezone(timedelta(hours=2))
    store.add_papers([Paper.create("Aware", published=date(2025, 3, 1))], seen_at=datetime(2026, 1, 1, 1, 30, tzinfo=plus_two))
    store.add_papers([Paper.create("Naive")], seen_at=datetime(2026, 1, 1, 1, 30))
    papers = {p.title: p for p in store.papers()}
    aware, naive = papers["Aware"], papers["Naive"]
    assert aware.first_seen == datetime(2025, 12, 31, 23, 30, tzinfo=timezone.utc)
    assert aware.first_seen.utcoffset() == timedelta(0) and aware.last_seen.utcoffset() == timedelta(0)
    assert type(aware.published) is date and aware.published == date(2025, 3, 1)
    assert naive.first_seen == datetime(2026, 1, 1, 1, 30, tzinfo=timezone.utc)
    # undated papers are dated by the UTC day they were first seen
    assert [p.title for p in store.papers(since=date(2026, 1, 1))] == ["Naive"]
    store.record_pending([EditionRecord("a@example.org", date(2026, 1, 1), "<m@x>", [], "S")])
    updated = store.ledger_entries(date(2026, 1, 1))["a@example.org"].updated_at
    assert updated.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - updated) < timedelta(minutes=1)


def test_text_round_trips_lists_are_json_and_nul_characters_are_dropped(store: Store):
    awkward = 'tab\there\nnew line\r\n \\N back\\slash "quoted" , ; | 李 🙂'
    odd = Paper.create(awkward, abstract=awkward, organization=awkward, url="https://x.org/?a=1&b=\\N", authors=[awkward])
    store.add_papers([Paper.create("T\x00itle", abstract="a\x00b", authors=["Zoë", "李"], ai_keywords=["k"], sources=["s"]), odd])
    papers = {p.title: p for p in store.papers()}
    paper = papers["Title"]
    assert (paper.abstract, paper.authors, paper.ai_keywords) == ("ab", ["Zoë", "李"], ["k"])
    odd = papers[odd.title]
    assert (odd.abstract, odd.organization, odd.url, odd.authors) == (awkward, awkward, "https://x.org/?a=1&b=\\N", [awkward])


def test_ordering_is_byte_wise_on_both(store: Store):
    day = date(2026, 1, 1)
    emails = ["b@example.org", "B@example.org", "a@example.org", "_@example.org"]
    store.record_pending([EditionRecord(email, day, f"<{n}@x>", [], "S") for n, email in enumerate(emails)])
    assert [e.email for e in store.ledger_rows(edition_date=day)] == sorted(emails)


def test_long_id_lists_stay_within_parameter_limits(store: Store):
    day = date(2026, 1, 1)
    store.add_papers([Paper.create(f"P{n}", arxiv_id=f"2501.{n:05d}") for n in range(3)])
    store.record_pending([EditionRecord("a@example.org", day, "<m@x>", [], "S")])
    many = [f"x{n}@example.org" for n in range(70_000)] + ["a@example.org"]
    assert set(store.get_papers([f"2501.{n:05d}" for n in range(70_000)])) == {"2501.00000", "2501.00001", "2501.00002"}
    assert list(store.ledger_entries(day, many)) == ["a@example.org"]
    assert store.sent_paper_ids(many) == {}
    assert store.claim(day, many, owner="w", lease_seconds=60).emails == ["a@example.org"]


def _pending(store: Store, day: date, emails: list[str]) -> None:
    store.record_pending([EditionRecord(email, day, f"<{email}>", [], "S") for email in emails])


def test_claim_takes_pending_rows_once(store: Store):
    day, other_day = date(2026, 11, 25), date(2026, 11, 26)
    _pending(store, day, ["a@x.org", "b@x.org", "c@x.org", "d@x.org"])
    _pending(store, other_day, ["a@x.org"])
    store.claim(day, ["c@x.org", "d@x.org"], owner="w0", lease_seconds=60)  # c: held by a live run
    store.record_outcomes(day, [Outcome("d@x.org", State.SENT, "250 OK")])
    before = datetime.now(timezone.utc)
    got = store.claim(day, ["b@x.org", "a@x.org", "c@x.org", "d@x.org", "nobody@x.org"], owner="w1", lease_seconds=60)
    assert got.emails == ["b@x.org", "a@x.org"]
    assert (got.held_elsewhere, got.settled, got.taken_over) == ({"c@x.org"}, {"d@x.org"}, set())
    assert store.claim(day, ["a@x.org", "b@x.org"], owner="w2", lease_seconds=60).emails == []
    entry = store.ledger_entries(day)["a@x.org"]
    assert (entry.state, entry.claimed_by) == ("sending", "w1")
    assert before + timedelta(seconds=59) < entry.lease_until < datetime.now(timezone.utc) + timedelta(seconds=61)
    assert store.ledger_entries(other_day)["a@x.org"].state == "pending"
    assert store.ledger_counts(day) == {"pending": 0, "sending": 3, "sent": 1, "failed": 0, "uncertain": 0, "review": 0, "queued": 0}
    assert store.claim(day, [], owner="w1", lease_seconds=60).emails == []


def test_an_expired_lease_is_claimed_again(store: Store):
    day = date(2026, 11, 25)
    _pending(store, day, ["a@x.org", "b@x.org"])
    assert store.claim(day, ["a@x.org"], owner="w1", lease_seconds=0.05).emails == ["a@x.org"]
    assert store.claim(day, ["b@x.org"], owner="w1", lease_seconds=60).emails == ["b@x.org"]
    time.sleep(0.1)
    assert store.claim(day, ["a@x.org", "b@x.org"], owner="w2", lease_seconds=60).emails == ["a@x.org"]
    assert store.ledger_entries(day)["a@x.org"].claimed_by == "w2"
    store.record_outcomes(day, [Outcome("a@x.org", State.SENT, "250 OK")])
    time.sleep(0.1)
    assert store.claim(day, ["a@x.org"], owner="w3", lease_seconds=60).emails == []


def test_concurrent_claimers_get_disjoint_sets_covering_everything(store: Store, store_url: str):
    day = date(2026, 11, 25)
    emails = [f"r{n:04d}@x.org" for n in range(1000)]
    _pending(store, day, emails)
    start = threading.Barrier(2)
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        order = emails[:]
        random.Random(name).shuffle(order)
        mine = []
        with Store(store_url) as own:
            start.wait()
            for n in range(0, len(order), 50):
                mine += own.claim(day, order[n : n + 50], owner=name, lease_seconds=60).emails
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(got) == {"w1", "w2"}
    assert not set(got["w1"]) & set(got["w2"])
    assert sorted(got["w1"] + got["w2"]) == emails
    holders = {e.email: e.claimed_by for e in store.ledger_rows(edition_date=day, state="sending")}
    assert holders == {**dict.fromkeys(got["w1"], "w1"), **dict.fromkeys(got["w2"], "w2")}


def test_postgresql_claim_skips_rows_locked_by_another_claimer(pg_url: str):
    import psycopg

    day = date(2026, 11, 25)
    with Store(pg_url) as store:
        _pending(store, day, ["a@x.org", "b@x.org"])
        with psycopg.connect(pg_url) as other:  # a claimer in the middle of its transaction
            other.execute("SELECT 1 FROM deliveries WHERE subscriber_email = 'a@x.org' FOR UPDATE")
            result: list[list[str]] = []
            claimer = threading.Thread(
                target=lambda: result.append(store.claim(day, ["a@x.org", "b@x.org"], owner="w", lease_seconds=60).emails))
            claimer.start()
            claimer.join(timeout=10)
            blocked = claimer.is_alive()
            other.rollback()
        claimer.join()
        assert not blocked and result == [["b@x.org"]]
        assert store.claim(day, ["a@x.org", "b@x.org"], owner="w", lease_seconds=60).emails == ["a@x.org"]


def test_postgresql_plans_each_query_for_its_own_values(pg_url: str):
    # a generic plan cached while the papers table was empty would scan 100k rows per lookup later
    from sqlalchemy import text

    with Store(pg_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"


def test_messages_never_show_the_database_password(pg_url: str):
    Store(pg_url).close()
    _sql(pg_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="newer than this program") as refused:
        Store(pg_url.replace("postgres@", "postgres:s3cret@"))
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)
    with pytest.raises(ValueError) as unsupported:
        engine_url("mysql://u:s3cret@db.example/news")
    assert "s3cret" not in str(unsupported.value)


def test_a_version_2_store_gets_the_summaries_and_fetch_tables(store_url: str):
    with Store(store_url) as store:
        store.add_summaries({"2411.00001": "A TL;DR."})
    version = "PRAGMA user_version=2" if store_url.startswith("sqlite") else "UPDATE schema_version SET version = 2"
    _sql(store_url, "DROP TABLE summaries", "DROP TABLE fetch_status", version)
    with Store(store_url) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.summaries(["2411.00001"]) == {}
        store.add_summaries({"2411.00001": "First."})
        store.add_summaries({"2411.00001": "Second."})  # made once: the first one stays
        assert store.summaries(["2411.00001", "nope"]) == {"2411.00001": "First."}
        store.record_fetch("hf", error="HTTP 503")
        store.record_fetch("hf", error="timed out")
        failing = store.fetch_statuses()["hf"]
        assert failing.last_error == "timed out" and failing.failing_since is not None and failing.last_ok_at is None
        store.record_fetch("hf")
        ok = store.fetch_statuses()["hf"]
        assert ok.failing_since is None and ok.last_ok_at is not None
    _sql(store_url, version.replace("2", "2"))  # opening an up-to-date store again: the steps are safe to repeat
    with Store(store_url) as store:
        assert store.schema_version() == SCHEMA_VERSION and store.summaries(["2411.00001"]) == {"2411.00001": "First."}
