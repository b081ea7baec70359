"""Hugging Face papers page dumps: the three layouts, meta blocks, the year rule."""

from __future__ import annotations

import os
import shutil
from datetime import date, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from newsletter.sources import hf_page, parse_file
from newsletter.sources.hf_api import PAPER_URL

PAGES = Path(__file__).parent / "fixtures" / "hf-pages"
PAGE_DATE = date(2025, 12, 8)   # the date line at the top of 000 and 004 ("Dec 8")
FILES = {
    "000": PAGES / "000_14173d72b6ea1fef.txt",
    "001": PAGES / "001_ddbafe0247bcf0d6.txt",
    "003": PAGES / "003_a438dea69ce54d15.txt",
    "004": PAGES / "004_ed59a9bbcd138c3e.txt",
}


def parse(key: str, page_date: date = PAGE_DATE):
    result = parse_file(FILES[key], "hf-page", page_date=page_date)
    assert result.warnings == []
    return result.papers


def by_title(papers, start: str):
    found = [p for p in papers if p.title.startswith(start)]
    assert len(found) == 1, [p.title for p in found]
    return found[0]


@pytest.mark.parametrize(("key", "count"), [("000", 56), ("001", 120), ("003", 131), ("004", 60)])
def test_entry_counts(key, count):
    papers = parse(key)
    assert len(papers) == count
    assert all(p.title and p.abstract for p in papers)
    assert all(p.sources == ["hf-page"] for p in papers)


def test_distinct_papers_across_the_four_pages():
    ids = {p.id for key in FILES for p in parse(key)}
    assert len(ids) == 347


def test_first_entry_with_authors_and_full_date():
    paper = parse("000")[0]
    assert paper.title == (
        "ChiMed-GPT: A Chinese Medical Large Language Model with Full Training Regime "
        "and Better Alignment to Human Preferences"
    )
    assert paper.abstract.startswith("Recently, the increasing demand for superior medical services")
    assert paper.author_count == 5
    assert paper.authors == []
    assert paper.organization is None
    assert paper.published == date(2023, 11, 10)
    assert paper.upvotes is None
    assert paper.id.startswith("t:")


@pytest.mark.parametrize(
    ("key", "title", "authors", "published", "upvotes"),
    [
        ("000", "Angles Don't Lie", 9, date(2025, 6, 2), 2),          # "Jun 2 2"
        ("000", "VideoCrafter2", 7, date(2024, 1, 17), 2),            # "Jan 17, 2024 2"
        ("000", "GaLore", 6, date(2024, 3, 6), 15),                    # "Mar 6, 2024 15"
        ("000", "FORGE", 16, date(2025, 9, 25), None),                 # "Sep 25"
        ("000", "2 OLMo 2 Furious", 40, date(2024, 12, 31), None),    # a title starting with a number
        ("000", "MiniMax-M1", 127, date(2025, 6, 16), 5),
        ("000", "Bone: Block Affine", 1, date(2024, 9, 19), None),     # "• 1 authors"
        ("004", "Sorted LLaMA", 6, date(2023, 9, 16), 1),              # "Sep 16, 2023 1"
        ("004", "Qwen2.5 Technical Report", 42, date(2024, 12, 19), 11),
    ],
)
def test_meta_blocks(key, title, authors, published, upvotes):
    paper = by_title(parse(key), title)
    assert (paper.author_count, paper.published, paper.upvotes) == (authors, published, upvotes)
    assert paper.organization is None


@pytest.mark.parametrize(
    ("key", "title", "organization", "published", "upvotes"),
    [
        ("000", "Z-Image", "Tongyi-MAI", date(2025, 11, 27), 3),       # "Tongyi-MAI Tongyi-MAI"
        ("000", "Winning the Pruning Gamble", "alibabagroup", date(2025, 9, 28), 3),
        ("004", "GroupRank", "AQ-MedAI", date(2025, 11, 10), 7),
    ],
)
def test_organisation_instead_of_authors(key, title, organization, published, upvotes):
    paper = by_title(parse(key), title)
    assert paper.organization == organization
    assert paper.author_count is None
    assert (paper.published, paper.upvotes) == (published, upvotes)


def test_entries_without_meta_block_are_unknown_not_zero():
    paper = by_title(parse("000"), "TwinFlow")
    assert paper.abstract.startswith("Recent advances in large multi-modal generative models")
    assert (paper.author_count, paper.organization, paper.published, paper.upvotes) == (None, None, None, None)
    following = by_title(parse("000"), "Navigating Data Heterogeneity")
    assert (following.author_count, following.published) == (5, date(2023, 10, 25))
    assert all(p.upvotes is None and p.author_count is None for p in parse("001"))


def test_furniture_is_not_a_paper():
    furniture = {"new", "Subscribe", "Daily Papers", "byAK and the research community", "Dec 8", "Mar 14"}
    for key in FILES:
        for paper in parse(key):
            assert paper.title not in furniture
            assert not paper.title.startswith(("Get trending papers", "Subscribe"))


def test_glued_subscribe_and_no_blank_lines():
    papers = parse("003")
    assert papers[0].title == "Train Small, Infer Large: Memory-Efficient LoRA Training for Large Language Models"
    assert papers[0].abstract.startswith("Large Language Models (LLMs) have significantly advanced")
    assert papers[-1].title == "Large Batch Training of Convolutional Networks"
    assert papers[-1].abstract.endswith("without loss in accuracy.")
    # the same paper in the blank-line layout parses to the same record
    same = by_title(parse("001"), "Train Small, Infer Large")
    assert (same.id, same.abstract) == (papers[0].id, papers[0].abstract)


def test_glued_subscribe_only_at_the_top():
    text = "Subscribe\nSubscribers Churn: A Study\nWe study churn.\nSubscribeX is not glued here\nAbstract two.\n"
    papers, warnings = hf_page.parse(text, name="p.txt", page_date=PAGE_DATE)
    assert [p.title for p in papers] == ["Subscribers Churn: A Study", "SubscribeX is not glued here"]
    assert warnings == []


@pytest.mark.parametrize(
    ("page_date", "expected"),
    [
        (date(2025, 12, 8), {"Z-Image": date(2025, 11, 27), "Are Reasoning Models": date(2025, 5, 29)}),
        # "Nov 27" would be after a page dated Nov 1, 2025: it is Nov 27, 2024
        (date(2025, 11, 1), {"Z-Image": date(2024, 11, 27), "Are Reasoning Models": date(2025, 5, 29)}),
        # on the day itself it is this year's
        (date(2025, 11, 27), {"Z-Image": date(2025, 11, 27)}),
    ],
)
def test_year_rule(page_date, expected):
    papers = parse("000", page_date=page_date)
    for title, published in expected.items():
        assert by_title(papers, title).published == published
    # dates with a year are never moved
    assert by_title(papers, "ChiMed-GPT").published == date(2023, 11, 10)


def test_year_from_page_date_line_and_file_time(tmp_path):
    """Without page_date the page's own "Dec 8" line, dated by the file's mtime, is the reference."""
    copy = tmp_path / "page.txt"
    shutil.copy(FILES["000"], copy)
    stamp = datetime(2026, 11, 25, 12, 0).timestamp()
    os.utime(copy, (stamp, stamp))
    papers = parse_file(copy).papers
    # "Dec 8" seen on 2026-11-25 is Dec 8, 2025; so "Nov 20" is 2025-11-20, not 2026-11-20
    assert by_title(papers, "Multidimensional Rubric").published == date(2025, 11, 20)
    assert by_title(papers, "Z-Image").published == date(2025, 11, 27)


def test_year_from_file_time_when_page_has_no_date_line(tmp_path):
    page = tmp_path / "page.txt"
    page.write_text("A Paper\nAn abstract.\n\n  • 2 authors\n·\nDec 20 4\n\nB Paper\nOther.\n  • 1 author\n·\nJan 3\n")
    stamp = datetime(2026, 1, 10, 12, 0).timestamp()
    os.utime(page, (stamp, stamp))
    a, b = parse_file(page).papers
    assert (a.published, a.upvotes, a.author_count) == (date(2025, 12, 20), 4, 2)
    assert (b.published, b.upvotes, b.author_count) == (date(2026, 1, 3), None, 1)


def test_problems_are_warnings_with_line_numbers():
    text = "\n".join([
        "Daily Papers",                  # 1
        "Dec 8",                         # 2
        "Lonely Title",                  # 3  no abstract before its meta block
        "  • 3 authors",                 # 4
        "·",                             # 5
        "Nov 2, 2024 3",                 # 6
        "Good Title",                    # 7
        "Good abstract.",                # 8
        "  • 2 authors",                 # 9
        "·",                             # 10
        "Feb 30, 2024",                  # 11 no such date
        "Leap Title",                    # 12
        "Leap abstract.",                # 13
        "  • 1 authors",                 # 14
        "·",                             # 15
        "Feb 29",                        # 16 not in 2025: the year before that is a leap year
        "Last Title",                    # 17 no abstract at the end
    ])
    papers, warnings = hf_page.parse(text, name="p.txt", page_date=date(2025, 3, 1))
    assert [p.title for p in papers] == ["Good Title", "Leap Title"]  # entries without an abstract are not papers
    assert papers[0].published is None and papers[0].author_count == 2
    assert papers[1].published == date(2024, 2, 29)
    assert warnings == [
        "p.txt:3: no abstract after the title 'Lonely Title'; skipped",
        "p.txt:11: no such date 'Feb 30, 2024'",
        "p.txt:17: no abstract after the title 'Last Title'; skipped",
    ]


def test_entries_link_to_the_hugging_face_search_for_their_title():
    papers, _ = hf_page.parse("Title: with & odd chars\nAn abstract.\n", name="x.txt", page_date=date(2024, 12, 8))
    [paper] = papers
    parts = urlsplit(paper.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PAPER_URL.format("").rstrip("/")
    assert parse_qs(parts.query) == {"q": ["Title: with & odd chars"]}
