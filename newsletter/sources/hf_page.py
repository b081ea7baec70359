"""Text dumps of Hugging Face papers pages (copied from a browser) -> `Paper`s.

Three layouts occur, all handled by one pass over the non-blank lines:
- title, abstract, then optionally a meta block of three lines: `• N authors`
  (or an organisation line in its place), `·`, and a date line such as `Dec 3`,
  `Nov 26, 2024`, `Jun 2 2` (June 2, 2 upvotes) or `Sep 16, 2023 1`;
- title and abstract only;
- the same with no blank lines at all and `Subscribe` glued to the first title.
Page furniture at the top (`new`, `Subscribe`, `Daily Papers`, the page's own
date, ...) is skipped. A title without an abstract is not taken for a paper (a
stray line of text, `hello world`, is not one): it is skipped with a warning.
"""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import quote_plus

from newsletter.models import Paper
from newsletter.sources.hf_api import PAPER_URL
from newsletter.sources.problems import Warnings

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
DATE_LINE = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?")
AUTHORS_LINE = re.compile(r"•\s*(\d+) authors?")
DOT = "·"
FURNITURE = {"new", "Subscribe", "Daily Papers", "byAK and the research community"}
FURNITURE_PREFIXES = ("Get trending papers in your email inbox",)
GLUED = re.compile(r"Subscribe(?=[A-Z0-9(\"'])")


def parse(
    text: str, *, name: str, page_date: date | None = None, seen_on: date | None = None
) -> tuple[list[Paper], list[str]]:
    """Parse one page dump; returns (papers, warnings).

    A date without a year is in the page's year, or the year before if it would
    otherwise lie after the page date. The page date is `page_date`, else the
    page's own date line (its year taken from `seen_on`), else `seen_on`, else today.
    """
    lines = [(number, line.strip()) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    warnings = Warnings()
    start, own_date = _skip_furniture(lines)
    reference = seen_on or date.today()
    if page_date is not None:
        reference = page_date
    elif own_date is not None:
        reference = _resolve(*own_date, None, reference) or reference

    papers: list[Paper] = []
    title: tuple[int, str] | None = None   # a title still waiting for its abstract
    last: Paper | None = None              # the last paper, while it may still get a meta block
    i = start
    while i < len(lines):
        number, line = lines[i]
        if i + 1 < len(lines) and lines[i + 1][1] == DOT:
            if title is not None:  # a page entry without an abstract is not a paper; its meta block goes with it
                warnings.append(f"{name}:{title[0]}: no abstract after the title {title[1][:60]!r}; skipped")
                title = None
            elif last is None:
                warnings.append(f"{name}:{number}: author/date block without a paper before it; skipped")
            else:
                _apply_meta(last, line, lines[i + 2] if i + 2 < len(lines) else None, reference, name, warnings)
                last = None
            i += 3 if i + 2 < len(lines) and DATE_LINE.fullmatch(lines[i + 2][1]) else 2
            continue
        if line == DOT:
            warnings.append(f"{name}:{number}: stray '·' line; skipped")
        elif title is None:
            title = (number, line)
            last = None
        else:
            last = _paper(title[1], line)
            papers.append(last)
            title = None
        i += 1
    if title is not None:
        warnings.append(f"{name}:{title[0]}: no abstract after the title {title[1][:60]!r}; skipped")
    return papers, warnings


def _paper(title: str, abstract: str) -> Paper:
    # the dump has no paper links; the Hugging Face search for the title finds the paper page
    url = PAPER_URL.format("").rstrip("/") + "?q=" + quote_plus(" ".join(title.split()))
    return Paper.create(title, abstract=abstract, url=url, sources=["hf-page"])


def _skip_furniture(lines: list[tuple[int, str]]) -> tuple[int, tuple[int, int] | None]:
    """Index of the first real line (unglueing `Subscribe`), and the page's own (month, day) if shown."""
    own_date = None
    for i, (number, line) in enumerate(lines):
        match = DATE_LINE.fullmatch(line)
        if line in FURNITURE or line.startswith(FURNITURE_PREFIXES):
            continue
        if match and not match[3] and not match[4]:
            own_date = (MONTHS[match[1]], int(match[2]))
            continue
        glued = GLUED.match(line)
        if glued:
            lines[i] = (number, line[glued.end():].strip())
        return i, own_date
    return len(lines), own_date


def _apply_meta(
    paper: Paper, who: str, when: tuple[int, str] | None, reference: date, name: str, warnings: list[str]
) -> None:
    """Fill author count or organisation, date and upvotes from a meta block."""
    authors = AUTHORS_LINE.fullmatch(who)
    if authors:
        paper.author_count = int(authors[1])
    else:
        paper.organization = _organization(who)
    match = DATE_LINE.fullmatch(when[1]) if when else None
    if match is None:
        where = f"{name}:{when[0]}" if when else name
        warnings.append(f"{where}: expected a date like 'Dec 3' or 'Nov 26, 2024 5' after '·' for {paper.title[:60]!r}")
        return
    month, day = MONTHS[match[1]], int(match[2])
    year = int(match[3]) if match[3] else None
    paper.published = _resolve(month, day, year, reference)
    if paper.published is None:
        warnings.append(f"{name}:{when[0]}: no such date {when[1]!r}")
    if match[4]:
        paper.upvotes = int(match[4])


def _organization(line: str) -> str:
    """`Tongyi-MAI Tongyi-MAI` -> `Tongyi-MAI`; otherwise the first word, the organisation's handle."""
    words = line.split()
    half = len(words) // 2
    if len(words) % 2 == 0 and words[:half] == words[half:]:
        return " ".join(words[:half])
    return words[0]


def _resolve(month: int, day: int, year: int | None, reference: date) -> date | None:
    """The date, with a missing year taken from `reference` (the year before if that is later)."""
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return None
    try:
        guess: date | None = date(reference.year, month, day)
    except ValueError:
        guess = None
    if guess is not None and guess <= reference:
        return guess
    try:
        return date(reference.year - 1, month, day)
    except ValueError:
        return None
