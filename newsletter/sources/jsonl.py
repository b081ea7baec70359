"""JSON Lines, one paper per line, with the fields of `newsletter papers --json` -> `Paper`s.

Fields: id, title, abstract, authors, author_count, organization, published
(YYYY-MM-DD or null), upvotes, url, sources, and optionally arxiv_id, github_repo,
github_stars, ai_keywords. A line that is not JSON or has no title is skipped with a
warning; a field of the wrong type is dropped (left unknown) with a warning.
"""

from __future__ import annotations

import json
from datetime import date

from newsletter.models import ARXIV_ID, Paper, paper_id, strip_arxiv_version

TEXT_FIELDS = ("abstract", "organization", "url", "github_repo")
COUNT_FIELDS = ("author_count", "upvotes", "github_stars")
LIST_FIELDS = ("authors", "ai_keywords", "sources")


def parse(text: str, *, name: str) -> tuple[list[Paper], list[str]]:
    """Parse JSON Lines; returns (papers, warnings). Blank lines are ignored."""
    papers: list[Paper] = []
    warnings: list[str] = []
    decode = json.JSONDecoder().decode
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
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
    title = record.get("title")
    if type(title) is not str or not title.strip():
        warnings.append(f"{where}: missing title; skipped")
        return None
    title = " ".join(title.split())
    fields: dict = {}
    for key in TEXT_FIELDS:
        value = record.get(key)
        if value is None or type(value) is str:
            fields[key] = value
        else:
            warnings.append(f"{where}: {key}: expected text, got {value!r:.40}")
    for key in COUNT_FIELDS:
        value = record.get(key)
        if value is None or (type(value) is int and value >= 0):
            fields[key] = value
        else:
            warnings.append(f"{where}: {key}: expected a count or null, got {value!r:.40}")
    for key in LIST_FIELDS:
        value = record.get(key)
        if value is None:
            continue
        if type(value) is list and all(type(item) is str for item in value):
            fields[key] = value
        else:
            warnings.append(f"{where}: {key}: expected a list of strings, got {value!r:.40}")
    if fields.get("abstract") is None:
        fields["abstract"] = ""
    published = record.get("published")
    if published is not None:
        try:
            fields["published"] = date.fromisoformat(published)
        except (TypeError, ValueError):
            warnings.append(f"{where}: published: expected YYYY-MM-DD or null, got {published!r:.40}")
    arxiv_id = record.get("arxiv_id")
    given_id = record.get("id")
    if type(arxiv_id) is str and arxiv_id:
        arxiv_id = strip_arxiv_version(arxiv_id)
    elif type(given_id) is str and ARXIV_ID.fullmatch(given_id):
        arxiv_id = strip_arxiv_version(given_id)
    else:
        arxiv_id = None
    if type(given_id) is not str or not given_id:
        given_id = paper_id(arxiv_id, title)
    if "sources" not in fields:
        fields["sources"] = ["jsonl"]
    if fields.get("author_count") is None and fields.get("authors"):
        fields["author_count"] = len(fields["authors"])
    return Paper(id=given_id, title=title, arxiv_id=arxiv_id, **fields)
