"""The hand-judged relevance fixture (tests/fixtures/relevance/) and its measures, for the tests and
benchmarks/bench_relevance.py. Every variant runs through the real selection code and a real store."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from newsletter.models import Paper, Subscriber
from newsletter.relevance import Relevance
from newsletter.selection import PaperIndex, select
from newsletter.store import Feedback, Store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "relevance"
TODAY = date(2026, 12, 1)
LIBRARIES = {
    "quantization": "quantization.bib", "peft": "peft.ris", "data": "data.json",
    "testing": "testing.bib", "ranking": "ranking.json", "systems": "systems.ris",
}


@dataclass
class Topic:
    name: str
    keywords: list[str]
    library: Path
    relevant: dict[str, int]  # paper id -> grade (2 on topic, 1 partly)


def topics() -> list[Topic]:
    judged = tomllib.loads((FIXTURE / "judgments.toml").read_text(encoding="utf-8"))["topics"]
    return [Topic(name, data["keywords"], FIXTURE / "libraries" / LIBRARIES[name], data["relevant"]) for name, data in judged.items()]


def fixture_papers() -> list[Paper]:
    from newsletter.sources import parse_file

    parsed = parse_file(FIXTURE / "papers.jsonl", "jsonl")
    seen = datetime(2026, 12, 1, tzinfo=timezone.utc)
    for paper in parsed.papers:
        paper.first_seen = paper.last_seen = seen
    return parsed.papers


def open_fixture_store(url: str) -> Store:
    store = Store(url)
    if not store.count_papers():
        store.add_papers(fixture_papers())
    return store


def precision_at(ids: list[str], relevant: dict[str, int], k: int = 10) -> float:
    return sum(1 for paper_id in ids[:k] if paper_id in relevant) / k


def ndcg_at(ids: list[str], relevant: dict[str, int], k: int = 10) -> float:
    gain = sum((2 ** relevant.get(paper_id, 0) - 1) / math.log2(rank + 2) for rank, paper_id in enumerate(ids[:k]))
    ideal = sum((2 ** grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(sorted(relevant.values(), reverse=True)[:k]))
    return gain / ideal if ideal else 0.0


def subscriber(topic: Topic, mode: str, **fields) -> Subscriber:
    values = {"email": f"{topic.name}@example.org", "mode": mode, "max_items": 10, "max_age_days": 100000}
    if mode in ("keywords", "mixed"):
        values["keywords"] = topic.keywords
    if mode in ("similar", "mixed"):
        values["library"] = topic.library
    return Subscriber(**{**values, **fields})


VARIANTS = {
    # name: (mode, extra subscriber fields, embedding weight of the similar ranking)
    "keywords": ("keywords", {}, None),
    "similar (hybrid)": ("similar", {}, 0.5),
    "similar, tf-idf only": ("similar", {}, 0.0),
    "similar, embedding only": ("similar", {}, 1.0),
    "mixed (keywords + similar)": ("mixed", {"trending_share": 0.0}, 0.5),
    "mixed (default shares, 30% trending)": ("mixed", {}, 0.5),
}


def run_variant(store: Store, name: str, *, editions: int = 1, clicks: bool = False) -> dict[str, tuple[float, float]]:
    """(P@10, nDCG@10) per topic of the last of `editions` editions (earlier picks are sent, so not picked
    again, and measured against the relevant papers not sent yet). With `clicks`, every earlier pick is
    clicked "more like this" when judged relevant, "fewer like this" when not."""
    mode, fields, weight = VARIANTS[name]
    relevance = Relevance(store, embedding_weight=0.5 if weight is None else weight)
    index = PaperIndex(store.papers(), TODAY)
    results = {}
    for topic in topics():
        reader = subscriber(topic, mode, **fields)
        sent: set[str] = set()
        feedback: list = []
        for number in range(editions):
            picks = _edition(relevance, reader, index, sent, feedback)
            if number == editions - 1:
                break
            if clicks:
                feedback += [Feedback(reader.email, p.paper.id, "more" if p.paper.id in topic.relevant else "fewer", None)
                             for p in picks]
            sent |= {p.paper.id for p in picks}
        ids = [pick.paper.id for pick in picks]
        remaining = {k: v for k, v in topic.relevant.items() if k not in sent}
        results[topic.name] = (precision_at(ids, remaining), ndcg_at(ids, remaining))
    return results


def _edition(relevance: Relevance, reader: Subscriber, index: PaperIndex, sent: set[str], feedback: list):
    clicks = {reader.email: feedback} if feedback else {}
    similar = relevance.similar_picks([reader], index, {reader.email: sent}, clicks).get(reader.email)
    return select(reader, index, already_sent=sent, similar=similar, has_positives=any(f.kind == "more" for f in feedback))
