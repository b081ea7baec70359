"""JSON Lines with the fields of `newsletter papers --json`."""

from __future__ import annotations

import json
from datetime import date

from newsletter.sources import jsonl, parse_bytes

FULL = {
    "id": "2412.20138",
    "title": "TradingAgents:  Multi-Agents LLM\nFinancial Trading Framework",
    "abstract": "Agents trade.",
    "authors": ["Yijia Xiao", "Edward Sun"],
    "author_count": 4,
    "organization": None,
    "published": "2024-12-28",
    "upvotes": 144,
    "url": "https://huggingface.co/papers/2412.20138",
    "sources": ["hf-api", "arxiv"],
    "arxiv_id": "2412.20138",
    "github_repo": "https://github.com/tauricresearch/tradingagents",
    "github_stars": 108509,
    "ai_keywords": ["LLM"],
}
TITLE_ONLY = {"id": "t:0123456789abcdef", "title": "A Page Paper", "abstract": "x", "authors": [],
              "author_count": 5, "organization": "Tongyi-MAI", "published": None, "upvotes": None,
              "url": None, "sources": ["hf-page"]}


def lines(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def test_round_trip_of_all_fields():
    papers, warnings = jsonl.parse(lines(FULL, TITLE_ONLY), name="p.jsonl")
    assert warnings == []
    full, page = papers
    assert full.id == full.arxiv_id == "2412.20138"
    assert full.title == "TradingAgents: Multi-Agents LLM Financial Trading Framework"
    assert (full.author_count, full.upvotes, full.github_stars) == (4, 144, 108509)
    assert full.published == date(2024, 12, 28)
    assert full.sources == ["hf-api", "arxiv"]
    assert full.ai_keywords == ["LLM"]
    assert page.id == "t:0123456789abcdef" and page.arxiv_id is None
    assert (page.organization, page.author_count, page.upvotes, page.published) == ("Tongyi-MAI", 5, None, None)


def test_minimal_line_derives_id_and_defaults_to_unknown():
    papers, warnings = jsonl.parse('{"title": "Just A Title"}\n{"title": "X", "id": "2501.00001v2"}', name="p")
    assert warnings == []
    bare, versioned = papers
    assert bare.id.startswith("t:") and bare.abstract == "" and bare.sources == ["jsonl"]
    assert (bare.upvotes, bare.author_count, bare.published) == (None, None, None)
    assert versioned.arxiv_id == "2501.00001"


def test_bad_lines_warn_with_line_numbers_and_the_rest_are_kept():
    text = lines(
        FULL,                                           # 1
        "{not json",                                    # 2
        {"abstract": "no title"},                       # 3
        "",                                             # 4 blank: ignored
        "[1, 2]",                                       # 5
        {**TITLE_ONLY, "upvotes": -3, "published": "12/28/2024", "authors": "Ann"},  # 6
        TITLE_ONLY,                                     # 7
    )
    result = parse_bytes(text.encode(), "jsonl", name="p.jsonl")
    assert len(result.papers) == 3
    assert result.papers[1].upvotes is None and result.papers[1].published is None
    assert result.warnings == [
        "p.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "p.jsonl:3: missing title; skipped",
        "p.jsonl:5: expected a JSON object, got list",
        "p.jsonl:6: upvotes: expected a count or null, got -3",
        "p.jsonl:6: authors: expected a list of strings, got 'Ann'",
        "p.jsonl:6: published: expected YYYY-MM-DD or null, got '12/28/2024'",
    ]


def test_windows_line_endings():
    papers, warnings = jsonl.parse(lines(FULL, TITLE_ONLY).replace("\n", "\r\n"), name="p")
    assert (len(papers), warnings) == (2, [])
