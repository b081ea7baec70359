"""arXiv Atom feeds -> `Paper`s: export API responses and the daily listing feed.

The listing feed (`rss.arxiv.org/atom/<category>`) puts "arXiv:<id> Announce Type:
<type> Abstract:" before each abstract and the authors, comma-separated, in
`dc:creator`; the export API uses `<author><name>`. Both are handled. DOCTYPE and
ENTITY declarations are refused (no entity expansion attacks), and the feed is
read with a pull parser fed line by line so each warning names the entry's line.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

from newsletter.models import Paper
from newsletter.sources.hf_api import join_lines
from newsletter.sources.problems import Warnings

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
ABS_URL = "https://arxiv.org/abs/{}"
ARXIV_ID = re.compile(r"(?:abs/|arXiv\.org:|^)(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Za-z-]+)?/\d{7})(?:v\d+)?$")
ANNOUNCE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*Abstract:\s*", re.IGNORECASE)
DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse(text: str, *, name: str) -> tuple[list[Paper], list[str]]:
    """Parse an Atom feed; returns (papers, warnings). Bad entries are skipped, the rest kept."""
    declaration = DECLARATION.search(text)
    if declaration:
        line = text.count("\n", 0, declaration.start()) + 1
        return [], [f"{name}:{line}: {declaration[1].upper()} declarations are not accepted in a feed; skipped"]
    papers: list[Paper] = []
    warnings = Warnings()
    parser = ET.XMLPullParser(events=("start", "end"))
    entry_line = 0
    seen_feed = False
    try:
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            parser.feed(line + "\n" if number < len(lines) else line)
            for event, element in parser.read_events():
                if event == "start" and element.tag == f"{ATOM}feed":
                    seen_feed = True
                elif event == "start" and element.tag == f"{ATOM}entry":
                    entry_line = number
                elif event == "end" and element.tag == f"{ATOM}entry":
                    paper = _entry(element, f"{name}:{entry_line}", warnings)
                    if paper is not None:
                        papers.append(paper)
                    element.clear()
        parser.close()
    except ET.ParseError as error:
        line, column = error.position
        message = str(error).split(":")[0]
        warnings.append(f"{name}:{line}: malformed XML ({message}, column {column + 1}); entries after it skipped")
    if not seen_feed and not papers:
        warnings.append(f"{name}: not an Atom feed (no <feed> element)")
    return papers, warnings


def _entry(entry: ET.Element, where: str, warnings: list[str]) -> Paper | None:
    raw_id = _text(entry, f"{ATOM}id")
    if "/api/errors" in raw_id:
        warnings.append(f"{where}: arXiv API error: {_text(entry, f'{ATOM}summary') or raw_id}")
        return None
    title = _text(entry, f"{ATOM}title")
    if not title:
        warnings.append(f"{where}: entry without a title; skipped")
        return None
    match = ARXIV_ID.search(raw_id)
    if not match:
        warnings.append(f"{where}: entry without an arXiv id ({raw_id or 'no <id>'}) for {title[:60]!r}")
    arxiv_id = match[1] if match else None
    authors = [_squash(a.findtext(f"{ATOM}name") or "") for a in entry.findall(f"{ATOM}author")]
    for creator in entry.findall(f"{DC}creator"):
        authors.extend(_squash(n) for n in (creator.text or "").split(","))
    published = None
    stamp = _text(entry, f"{ATOM}published") or _text(entry, f"{ATOM}updated")
    if stamp:
        try:
            published = date.fromisoformat(stamp[:10])
        except ValueError:
            warnings.append(f"{where}: published: not a date: {stamp!r}")
    url = ABS_URL.format(arxiv_id) if arxiv_id else _alternate_link(entry)
    return Paper.create(
        title,
        arxiv_id=arxiv_id,
        abstract=join_lines(ANNOUNCE.sub("", _text(entry, f"{ATOM}summary"))),
        authors=[a for a in authors if a],
        published=published,
        url=url,
        sources=["arxiv"],
    )


def _text(entry: ET.Element, tag: str) -> str:
    return (entry.findtext(tag) or "").strip()


def _squash(text: str) -> str:
    return " ".join(text.split())


def _alternate_link(entry: ET.Element) -> str | None:
    for link in entry.findall(f"{ATOM}link"):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link.get("href")
    return None
