"""The compiled batch selection (keyword_batch, keyword_kernel) makes the very picks `select` makes.

tests/test_selection.py runs every one of its tests both ways too (its `ranking_way` fixture); here
many assorted profiles are compared at once, and a big `send` is checked to take the compiled way.
"""

import os
import random
import re
from datetime import timedelta
from pathlib import Path

from newsletter import keyword_batch, parallel_find, pipeline
from newsletter.delivery.memory import MemoryBackend
from newsletter.models import Paper, Pick, Subscriber
from newsletter.pipeline import run_edition
from newsletter.selection import PaperIndex, select, select_many
from tests.conftest import DAY
from tests.test_selection import PAGE, TODAY, load_page, paper


def key(picks: list[Pick]) -> list[tuple]:
    return [(p.paper.id, p.score, p.reasons) for p in picks]


def assorted(rng: random.Random, papers: list[Paper], pairs, count: int):
    """Profiles of every kind: weights, exclusions (some profiles of exclusions only), phrases, repeated
    keywords, filters, limits, papers already sent (some not in the index), followed authors, similar picks."""
    words = sorted({w for title, abstract in pairs for w in re.findall(r"[a-z]{5,}", f"{title} {abstract}".lower())})
    phrases = [" ".join(pair) for title, _ in pairs for pair in zip(title.lower().split(), title.lower().split()[1:])]
    subscribers, sent, similar = [], {}, {}
    for n in range(count):
        keywords = []
        for _ in range(rng.randint(1, 7)):
            text = rng.choice(phrases) if rng.random() < 0.3 else rng.choice(words)
            roll = rng.random()
            text = "-" + text if roll < 0.12 else text + rng.choice(["^2", "^0.5"]) if roll < 0.3 else text
            keywords.append(text)
        if n % 23 == 0:
            keywords.append(keywords[0])  # the same keyword twice counts twice
        email = f"r{n}@example.org"
        mode = rng.choice(["keywords", "keywords", "mixed", "trending", "similar"])
        subscribers.append(Subscriber.model_construct(  # unchecked: a profile of exclusions only is kept too
            email=email, mode=mode, keywords=keywords, max_items=rng.choice([1, 3, 10, 20, 100]),
            max_age_days=rng.choice([1, 3, 7, 30]), min_upvotes=rng.choice([None, None, 2, 10]),
            trending_share=rng.choice([0.0, 0.3, 0.5, 1.0]), weekly=n % 13 == 0,
            authors=["Author 3"] if n % 17 == 0 else [], **({"library": Path("x.bib")} if mode == "similar" else {}),
        ))
        sent[email] = {p.id for p in rng.sample(papers, rng.randint(0, 25))} | {"2611.99999"}
        if n % 4 == 0:
            similar[email] = [Pick(p, 1.0, ["close"]) for p in rng.sample(papers, 8)]
    return subscribers, sent, similar


def test_select_many_compiled_picks_exactly_what_select_picks_for_every_kind_of_profile():
    """Papers, scores (bit for bit), order and reasons, on a real page with undated papers, equal
    scores (repeated texts) and unknown upvote counts, selected in batches of 150."""
    pairs = load_page(PAGE)
    rng = random.Random(7)
    papers = [
        paper(title, abstract, days=None if n % 11 == 0 else n % 9, upvotes=None if n % 5 == 0 else n % 40,
              authors=[f"Author {n % 13}"])
        for n, (title, abstract) in enumerate(pairs)
    ]
    papers += [paper(p.title, p.abstract, days=n % 4, upvotes=3, arxiv_id=f"2611.9{n:04d}") for n, p in enumerate(papers[:30])]
    subscribers, sent, similar = assorted(rng, papers, pairs, 900)
    positives = {s.email for s in subscribers[::3]}
    one_at_a_time = PaperIndex(papers, TODAY)
    expected = [
        select(s, one_at_a_time, already_sent=sent[s.email], similar=similar.get(s.email), has_positives=s.email in positives)
        for s in subscribers
    ]
    batched = PaperIndex(papers, TODAY)
    got = []
    for start in range(0, len(subscribers), 150):
        got += select_many(batched, subscribers[start : start + 150], sent, similar, positives, compiled=True)
    table = batched._table
    assert table is not None and len(table.number) > 500, "the compiled loop did not select"
    assert sum(keyword_batch.batchable(s, similar.get(s.email)) for s in subscribers) > 500
    assert [key(picks) for picks in got] == [key(picks) for picks in expected]
    reasons = [reason for picks in expected for p in picks for reason in p.reasons]
    assert sum(map(len, expected)) > 3000 and any("; " in reason for reason in reasons)
    assert any(reason.startswith("trending") for reason in reasons)


def test_keywords_resolved_for_workers_are_laid_out_once_and_select_alike():
    """`resolve(..., compiled=True)` (what a parent does before forking) lays every keyword out; the
    workers' batches then add nothing to the table and pick as `select` does."""
    pairs = load_page(PAGE)
    papers = [paper(title, abstract, days=n % 5, upvotes=n % 30) for n, (title, abstract) in enumerate(pairs)]
    subscribers, sent, _ = assorted(random.Random(3), papers, pairs, 200)
    index = PaperIndex(papers, TODAY)
    index.resolve((raw for s in subscribers for raw in s.keywords), compiled=True)
    learned = len(index._table.number)
    assert learned == len({raw for s in subscribers for raw in s.keywords})
    got = select_many(index, subscribers, sent, compiled=True)
    assert len(index._table.number) == learned
    assert [key(picks) for picks in got] == [key(select(s, index, already_sent=sent[s.email])) for s in subscribers]


def test_resolving_on_several_cores_finds_the_same_matches_even_when_a_child_dies(monkeypatch):
    """`resolve(..., processes=3)` finds the keywords in two forked children (one scores the words,
    both share the phrases): the very arrays the index finds itself; a child that dies leaves its
    share to this process, nothing lost."""
    pairs = load_page(PAGE)
    papers = [paper(title, abstract, days=n % 5, upvotes=n % 30) for n, (title, abstract) in enumerate(pairs)]
    subscribers, sent, _ = assorted(random.Random(5), papers, pairs, 300)
    raws = [raw for s in subscribers for raw in s.keywords]
    alone = PaperIndex(papers, TODAY)
    alone.resolve(raws)

    def matches(index):
        return {raw: (m.docs.tolist(), m.scores.tolist(), m.hits.tolist(), m.where) for raw, (_, m) in index._keywords.items()}

    monkeypatch.setattr(parallel_find, "ASIDE_TERMS", 1)
    here = []  # terms found by this process (a child's finds are not counted here)
    real_find, real_words = PaperIndex._find, PaperIndex._find_words
    monkeypatch.setattr(PaperIndex, "_find", lambda self, terms: here.append(terms) or real_find(self, terms))
    monkeypatch.setattr(PaperIndex, "_find_words", lambda self, single: here.extend(single) or real_words(self, single))
    phrases = {terms for terms in alone._matches if len(terms) > 1}
    assert len(phrases) > 50
    together = PaperIndex(papers, TODAY)
    together.resolve(raws, compiled=True, processes=3)
    assert not here, "the children did not find the keywords"
    assert matches(together) == matches(alone)
    assert [key(picks) for picks in select_many(together, subscribers, sent, compiled=True)] == [
        key(select(s, alone, already_sent=sent[s.email])) for s in subscribers
    ]

    here.clear()
    monkeypatch.setattr(parallel_find, "_write_found", lambda *args: os._exit(1))
    orphaned = PaperIndex(papers, TODAY)
    orphaned.resolve(raws, processes=2)
    assert set(alone._matches) <= set(here)
    assert matches(orphaned) == matches(alone)


def test_a_big_send_selects_with_the_compiled_loop_and_records_the_same_picks(config, store, monkeypatch):
    """A run with BATCH_PROFILES keyword and trending readers takes the compiled way, chunk after chunk,
    and its ledger holds the very picks (papers, scores, reasons) the numpy way makes."""
    pairs = load_page(PAGE)[:60]
    store.add_papers(
        Paper.create(title, abstract=abstract, arxiv_id=f"2411.{100 + n:05d}", upvotes=n % 17, published=DAY - timedelta(days=n % 3))
        for n, (title, abstract) in enumerate(pairs)
    )
    profiles = [("keywords", ["diffusion", "-survey", "video generation^2"]), ("mixed", ["language model", "agent"]),
                ("trending", ["-diffusion"]), ("keywords", ["reinforcement learning", "reasoning^0.5"])]
    readers = [
        Subscriber(email=f"reader{n}@example.org", mode=mode, keywords=keywords, max_items=3 + n % 5, trending_share=0.4)
        for n, (mode, keywords) in enumerate(profiles * 4)
    ]
    builder = pipeline.EditionBuilder(config, store)
    expected = builder.select_many(readers, DAY, {})
    calls = []
    real = keyword_batch.select_batch
    monkeypatch.setattr(keyword_batch, "select_batch", lambda *args: calls.append(len(args[1])) or real(*args))
    monkeypatch.setattr(pipeline, "BATCH_PROFILES", len(readers))
    config.model.delivery.chunk_size = 5
    MemoryBackend.outbox.clear()
    summary = run_edition(config, store, readers, day=DAY, backend=MemoryBackend(MemoryBackend.Settings(), base_dir=Path(".")))
    assert summary.sent == len(readers)
    assert len(calls) == 4 and sum(calls) == len(readers)  # every chunk, every reader
    recorded = store.ledger_entries(DAY)
    for reader in readers:
        picks = expected[reader.email]
        assert [(p["id"], p["score"], p["reasons"]) for p in recorded[reader.email].picks] == [
            (p.paper.id, p.score, p.reasons) for p in picks
        ], reader.keywords
    assert any("; " in p.reasons[0] for picks in expected.values() for p in picks)
