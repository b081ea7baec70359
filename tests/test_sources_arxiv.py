"""arXiv Atom: export API responses and the daily listing feed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from newsletter.sources import arxiv, parse_file

FEEDS = Path(__file__).parent / "fixtures" / "arxiv"


def test_export_api_response():
    result = parse_file(FEEDS / "api_query_testing.xml")
    assert (result.format, result.warnings) == ("arxiv", [])
    assert len(result.papers) == 10
    first = result.papers[0]
    assert first.id == first.arxiv_id == "2202.12139"
    assert first.title == "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    assert first.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert first.author_count == 3
    assert first.published == date(2022, 2, 24)
    assert first.url == "https://arxiv.org/abs/2202.12139"
    assert first.abstract.startswith("Deep Learning (DL) has revolutionized")
    assert first.upvotes is None
    assert first.sources == ["arxiv"]
    # versions are stripped: the feed says 2005.14124v2
    assert result.papers[2].id == "2005.14124"
    assert result.papers[4].title == "ChatGPT and Software Testing Education: Promises & Perils"


def test_listing_feed():
    result = parse_file(FEEDS / "rss_listing.xml")
    assert result.warnings == []
    assert [p.id for p in result.papers] == [
        "2508.13426", "2508.13428", "2508.13429", "2508.13434", "2508.13435", "2508.14001", "2508.14002",
    ]
    first = result.papers[0]
    assert first.authors == ["Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang"]
    assert first.abstract.startswith("As large language models (LLMs) increasingly mediate")
    assert "Announce Type" not in first.abstract and not first.abstract.startswith("arXiv:")
    assert first.published == date(2025, 8, 20)
    assert first.url == "https://arxiv.org/abs/2508.13426"
    assert result.papers[5].abstract == "We propose a neural architecture search method for efficient transformers."


def feed(*entries: str) -> str:
    return "\n".join([
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        *entries,
        "</feed>",
    ])


ENTRY = "<entry><id>oai:arXiv.org:{id}v3</id><title>{title}</title><summary>S</summary><dc:creator>A B, C D</dc:creator></entry>"


def test_entry_missing_title_warns_with_its_line_and_the_rest_parse():
    text = feed(
        ENTRY.format(id="2501.00001", title="First"),
        "<entry>",
        "  <id>oai:arXiv.org:2501.00002v1</id>",
        "</entry>",
        ENTRY.format(id="2501.00003", title="Third"),
    )
    papers, warnings = arxiv.parse(text, name="f.xml")
    assert [p.id for p in papers] == ["2501.00001", "2501.00003"]
    assert papers[1].authors == ["A B", "C D"]
    assert warnings == ["f.xml:4: entry without a title; skipped"]


def test_malformed_xml_reports_the_parser_line_and_keeps_earlier_entries():
    text = feed(ENTRY.format(id="2501.00001", title="First"), "<entry><title>Broken</entry>")
    papers, warnings = arxiv.parse(text, name="f.xml")
    assert [p.title for p in papers] == ["First"]
    assert warnings == ["f.xml:4: malformed XML (mismatched tag, column 23); entries after it skipped"]


def test_doctype_and_entities_are_refused():
    text = '<?xml version="1.0"?>\n<!DOCTYPE feed [\n<!ENTITY lol "lol">\n]>\n<feed xmlns="http://www.w3.org/2005/Atom"/>'
    assert arxiv.parse(text, name="evil.xml") == ([], ["evil.xml:2: DOCTYPE declarations are not accepted in a feed; skipped"])


def test_api_error_entry_and_non_feed():
    error = feed(
        "<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>"
        "<title>Error</title><summary>incorrect id format for 1234</summary></entry>"
    )
    assert arxiv.parse(error, name="q") == ([], ["q:3: arXiv API error: incorrect id format for 1234"])
    assert arxiv.parse("<rss><channel/></rss>", name="r") == ([], ["r: not an Atom feed (no <feed> element)"])


def test_old_style_ids_and_entries_without_id():
    text = feed(
        '<entry><id>http://arxiv.org/abs/hep-th/9901001v2</id><title>Old</title></entry>',
        '<entry><title>No Id</title><link href="https://example.org/x" rel="alternate"/></entry>',
    )
    papers, warnings = arxiv.parse(text, name="f")
    assert papers[0].id == "hep-th/9901001"
    assert papers[1].id.startswith("t:") and papers[1].url == "https://example.org/x"
    assert warnings == ["f:4: entry without an arXiv id (no <id>) for 'No Id'"]
