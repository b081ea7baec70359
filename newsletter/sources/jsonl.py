"""JSON Lines, one paper per line, with the fields of `newsletter papers --json` -> `Paper`s.

Fields: id, title, abstract, authors, author_count, organization, published
(YYYY-MM-DD or null), upvotes, url, sources, and optionally arxiv_id, github_repo,
github_stars, ai_keywords. A line that is not JSON or has no title is skipped with a
warning; a field of the wrong type is dropped (left unknown) with a warning.
"""

from __future__ import annotations

import gc
import json
from datetime import date

from newsletter.models import ARXIV_ID, Paper, paper_id, strip_arxiv_version
from newsletter.sources.problems import Warnings



def parse(text: str, *, name: str) -> tuple[list[Paper], list[str]]:
    """Parse JSON Lines; returns (papers, warnings). Blank lines are ignored.

    Garbage costs what parsing costs: past the first warnings, lines are only counted.
    The cyclic garbage collector is paused meanwhile: the records hold no cycles, and
    its passes over hundreds of thousands of fresh dicts would otherwise double the time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, name)
    finally:
        if collecting:
            gc.enable()


def _parse(text: str, name: str) -> tuple[list[Paper], list[str]]:
    papers: list[Paper] = []
    warnings = Warnings()
    decode, shown = json.JSONDecoder().decode, warnings.limit
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue
        if len(warnings) >= shown:
            # past the warnings that are shown, a line that cannot be one JSON object is only
            # counted: the decoder's exception costs more than the parse of a good line
            stripped = line.strip()
            if stripped[:1] != "{" or stripped[-1:] != "}":
                warnings.more += 1
                continue
        try:
            record = decode(line)
        except json.JSONDecodeError as error:
            warnings.append(f"{name}:{number}: invalid JSON: {error.msg} (column {error.colno})")
            continue
        except RecursionError:
            warnings.append(f"{name}:{number}: invalid JSON: nested too deeply")
            continue
        if type(record) is not dict:
            warnings.append(f"{name}:{number}: expected a JSON object, got {type(record).__name__}")
            continue
        paper = _paper(record, f"{name}:{number}", warnings)
        if paper is not None:
            papers.append(paper)
    return papers, warnings


def _paper(record: dict, where: str, warnings: list[str]) -> Paper | None:
    """One record -> Paper; each field is checked inline (this runs 100,000s of times)."""
    get = record.get
    title = get("title")
    if type(title) is not str or not title.strip():
        warnings.append(f"{where}: missing title; skipped")
        return None
    title = " ".join(title.split())
    abstract, organization, url, github_repo = get("abstract"), get("organization"), get("url"), get("github_repo")
    if abstract is None:
        abstract = ""
    elif type(abstract) is not str:
        abstract = _wrong(where, "abstract", "text", abstract, warnings) or ""
    if organization is not None and type(organization) is not str:
        organization = _wrong(where, "organization", "text", organization, warnings)
    if url is not None and type(url) is not str:
        url = _wrong(where, "url", "text", url, warnings)
    if github_repo is not None and type(github_repo) is not str:
        github_repo = _wrong(where, "github_repo", "text", github_repo, warnings)
    author_count, upvotes, github_stars = get("author_count"), get("upvotes"), get("github_stars")
    if author_count is not None and (type(author_count) is not int or author_count < 0):
        author_count = _wrong(where, "author_count", "a count or null", author_count, warnings)
    if upvotes is not None and (type(upvotes) is not int or upvotes < 0):
        upvotes = _wrong(where, "upvotes", "a count or null", upvotes, warnings)
    if github_stars is not None and (type(github_stars) is not int or github_stars < 0):
        github_stars = _wrong(where, "github_stars", "a count or null", github_stars, warnings)
    authors, ai_keywords, sources = get("authors"), get("ai_keywords"), get("sources")
    if authors is None or not _strings(authors):
        authors = [] if authors is None else _wrong(where, "authors", "a list of strings", authors, warnings) or []
    if ai_keywords is None or not _strings(ai_keywords):
        ai_keywords = [] if ai_keywords is None else _wrong(where, "ai_keywords", "a list of strings", ai_keywords, warnings) or []
    if sources is None or not _strings(sources):
        sources = ["jsonl"] if sources is None else _wrong(where, "sources", "a list of strings", sources, warnings) or ["jsonl"]
    published = get("published")
    if published is not None:
        try:
            published = date.fromisoformat(published)
        except (TypeError, ValueError):
            published = _wrong(where, "published", "YYYY-MM-DD or null", published, warnings)
    if author_count is None and authors:
        author_count = len(authors)
    arxiv_id, given_id = get("arxiv_id"), get("id")
    if type(arxiv_id) is str and arxiv_id:
        arxiv_id = strip_arxiv_version(arxiv_id)
    elif type(given_id) is str and ARXIV_ID.fullmatch(given_id):
        arxiv_id = strip_arxiv_version(given_id)
    else:
        arxiv_id = None
    if type(given_id) is not str or not given_id:
        given_id = paper_id(arxiv_id, title)
    return Paper(
        id=given_id, title=title, abstract=abstract, authors=authors, author_count=author_count,
        organization=organization, published=published, upvotes=upvotes, url=url, arxiv_id=arxiv_id,
        github_repo=github_repo, github_stars=github_stars, ai_keywords=ai_keywords, sources=sources,
    )


def _strings(value: object) -> bool:
    return type(value) is list and (not value or set(map(type, value)) == {str})


def _wrong(where: str, key: str, expected: str, value: object, warnings: list[str]) -> None:
    """Warn about a field of the wrong type; the caller then treats the field as unknown."""
    warnings.append(f"{where}: {key}: expected {expected}, got {value!r:.40}")
