"""Hugging Face daily papers API JSON (`/api/daily_papers?date=...`) -> `Paper`s."""

from __future__ import annotations

import json
import re
from datetime import date

from newsletter.models import Paper
from newsletter.sources.problems import Warnings

PAPER_URL = "https://huggingface.co/papers/{}"
PARAGRAPH = re.compile(r"\n\s*\n")


def parse(text: str, *, name: str) -> tuple[list[Paper], list[str]]:
    """Parse one API response (a JSON list of items); returns (papers, warnings).

    An empty list (a weekend) is 0 papers and no warning.
    """
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        return [], [f"{name}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})"]
    except RecursionError:
        return [], [f"{name}: invalid JSON: nested too deeply"]
    if isinstance(items, dict) and "error" in items:
        return [], [f"{name}: the API answered with an error: {items['error']}"]
    if not isinstance(items, list):
        return [], [f"{name}: expected a JSON list of daily papers, got {type(items).__name__}"]
    papers, warnings = [], Warnings()
    for index, item in enumerate(items):
        paper, problems = _item(item, f"{name}: item {index}")
        warnings.extend(problems)
        if paper is not None:
            papers.append(paper)
    return papers, warnings


def _item(item: object, where: str) -> tuple[Paper | None, list[str]]:
    if not isinstance(item, dict):
        return None, [f"{where}: expected an object, got {type(item).__name__}"]
    raw = item.get("paper")
    record = raw if isinstance(raw, dict) else item
    title = record.get("title") or item.get("title")
    if not isinstance(title, str) or not title.strip():
        return None, [f"{where}: missing title; skipped"]
    warnings: list[str] = []
    arxiv_id = record.get("id")
    if not isinstance(arxiv_id, str) or not arxiv_id.strip():
        warnings.append(f"{where}: missing paper id (arXiv id)")
        arxiv_id = None
    summary = record.get("summary") or item.get("summary") or ""
    published = _date(record.get("publishedAt") or item.get("publishedAt"), where, warnings)
    paper = Paper.create(
        title,
        arxiv_id=arxiv_id,
        abstract=join_lines(summary) if isinstance(summary, str) else "",
        authors=_authors(record.get("authors")),
        organization=_organization(record.get("organization") or item.get("organization")),
        published=published,
        upvotes=_int(record.get("upvotes"), "upvotes", where, warnings),
        github_repo=record.get("githubRepo") if isinstance(record.get("githubRepo"), str) else None,
        github_stars=_int(record.get("githubStars"), "githubStars", where, warnings),
        ai_keywords=_strings(record.get("ai_keywords")),
        sources=["hf-api"],
    )
    if paper.arxiv_id:
        paper.url = PAPER_URL.format(paper.arxiv_id)
    return paper, warnings


def join_lines(text: str) -> str:
    """Join hard-wrapped lines; keep blank-line paragraph breaks."""
    return "\n\n".join(" ".join(part.split()) for part in PARAGRAPH.split(text.strip()) if part.strip())


def _authors(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names = (a.get("name") if isinstance(a, dict) else a for a in value)
    return [" ".join(n.split()) for n in names if isinstance(n, str) and n.strip()]


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _organization(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("fullname") or value.get("name")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _int(value: object, field: str, where: str, warnings: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    warnings.append(f"{where}: {field}: expected a count, got {value!r}")
    return None


def _date(value: object, where: str, warnings: list[str]) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        warnings.append(f"{where}: publishedAt: not a date: {value!r}")
        return None
