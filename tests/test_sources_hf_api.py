"""Hugging Face daily papers API JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from newsletter.sources import hf_api, parse_bytes, parse_file

API = Path(__file__).parent / "fixtures" / "hf-api"


def load():
    result = parse_file(API / "daily_papers.json")
    assert result.format == "hf-api"
    assert result.warnings == []
    return {p.id: p for p in result.papers}


def test_all_items_parse():
    papers = load()
    assert list(papers) == ["2609.24984", "2412.20138", "2503.11576", "2609.24981"]
    assert all(p.sources == ["hf-api"] for p in papers.values())


def test_fields_of_an_item_with_organisation():
    paper = load()["2609.24984"]
    assert paper.title == "WorldCrafter: Consistent Video World Model with Implicit 3D-aware Memory"
    assert paper.arxiv_id == "2609.24984"
    assert paper.url == "https://huggingface.co/papers/2609.24984"
    assert paper.authors == ["Wangbo Yu", "Kunhao Liu", "Chaoran Feng", "Ying Shan"]
    assert paper.author_count == 4
    assert paper.published == date(2026, 9, 21)
    assert paper.upvotes == 148
    assert paper.github_repo == "https://github.com/TencentARC/WorldCrafter"
    assert paper.github_stars == 346
    assert paper.organization == "ARC Lab, Tencent"
    assert paper.ai_keywords == []


def test_embedded_newline_and_hard_line_breaks():
    papers = load()
    smol = papers["2503.11576"]
    assert smol.title == (
        "SmolDocling: An ultra-compact vision-language model for end-to-end multi-modal document conversion"
    )
    assert "\n" not in smol.abstract
    assert smol.abstract.startswith("We introduce SmolDocling, an ultra-compact vision-language model targeting end-to-end")
    assert smol.organization == "IBM Granite"
    trading = papers["2412.20138"]
    assert "using societies of agents" in trading.abstract
    assert trading.organization is None
    assert trading.ai_keywords[:3] == ["large language models", "LLM", "multi-agent systems"]
    assert (trading.upvotes, trading.github_stars) == (144, 108509)


def test_weekend_empty_list_is_not_an_error():
    result = parse_file(API / "daily_papers_weekend.json")
    assert (result.format, result.papers, result.warnings) == ("hf-api", [], [])


def test_missing_title_names_the_index_and_keeps_the_rest():
    items = json.loads((API / "daily_papers.json").read_text())
    del items[1]["paper"]["title"], items[1]["title"]
    items[2]["paper"]["upvotes"] = "many"
    items.insert(0, "not an object")
    result = parse_bytes(json.dumps(items).encode(), "hf-api", name="day.json")
    assert [p.id for p in result.papers] == ["2609.24984", "2503.11576", "2609.24981"]
    assert result.papers[1].upvotes is None
    assert result.warnings == [
        "day.json: item 0: expected an object, got str",
        "day.json: item 2: missing title; skipped",
        "day.json: item 3: upvotes: expected a count, got 'many'",
    ]


def test_paper_without_optional_fields_stays_unknown():
    papers, warnings = hf_api.parse('[{"paper": {"id": "2501.00001v2", "title": "T"}}]', name="x")
    (paper,) = papers
    assert warnings == []
    assert paper.id == "2501.00001"
    assert (paper.upvotes, paper.author_count, paper.github_stars, paper.published) == (None, None, None, None)


def test_not_a_list_or_not_json():
    assert hf_api.parse('{"error": "Invalid date"}', name="x") == ([], ["x: the API answered with an error: Invalid date"])
    assert hf_api.parse("[\n{oops", name="x") == ([], ["x:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)"])
