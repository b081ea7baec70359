"""A subscriber's paper library: the papers they already care about, read from a reference manager's export.

Formats, by file extension: BibTeX (`.bib`), RIS (`.ris`), CSL-JSON or Zotero
JSON (`.json`), and plain text (`.txt`: one arXiv id, DOI or title a line,
looked up in the store). An entry needs a title; the abstract is used when
present. A bad entry is reported as `file:line: problem` and the rest are used.
Parsed libraries are cached by file content, so a file shared by many
subscribers, or read again by the scheduler, is parsed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.models import normalise_title, paper_id

if TYPE_CHECKING:
    from newsletter.store import Store

FORMATS = {".bib": "bibtex", ".bibtex": "bibtex", ".ris": "ris", ".json": "json", ".txt": "txt"}
ARXIV_IN_TEXT = re.compile(r"(?:arxiv\.org/(?:abs|pdf)/|arxiv:\s*|10\.48550/arxiv\.)?(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?$", re.I)
DOI = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|doi:\s*)?(10\.\d{4,9}/\S+)$", re.I)
SHORT_TITLE = 60


@dataclass(slots=True)
class LibraryItem:
    """One paper of a library: what the ranking compares new papers with."""

    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    doi: str | None = None
    added: date | None = None  # when it entered the library, where the export says so
    line: int = 0
    stored_id: str | None = None  # the store's paper id, for entries looked up there

    @property
    def text(self) -> str:
        return f"{self.title}. {self.abstract}" if self.abstract else self.title

    @property
    def short_title(self) -> str:
        """The title as a reason quotes it: cut at a word near `SHORT_TITLE` characters."""
        if len(self.title) <= SHORT_TITLE:
            return self.title
        return self.title[:SHORT_TITLE].rsplit(" ", 1)[0].rstrip(",;:-") + "…"

    def paper_ids(self) -> set[str]:
        """The store ids this entry may have: its arXiv id, the store's id, its title's hash."""
        ids = {paper_id(None, self.title)}
        if self.arxiv_id:
            ids.add(self.arxiv_id)
        if self.stored_id:
            ids.add(self.stored_id)
        return ids


@dataclass
class Library:
    """The usable entries of one library file, the problems of the others, and the content's digest."""

    path: Path
    items: list[LibraryItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    digest: str = ""
    _keys: tuple[frozenset[str], frozenset[str]] | None = field(default=None, repr=False, compare=False)

    def paper_ids(self) -> frozenset[str]:
        return self._blocking()[0]

    def title_keys(self) -> frozenset[str]:
        return self._blocking()[1]

    def _blocking(self) -> tuple[frozenset[str], frozenset[str]]:
        """The entries' paper ids and normalised titles, found once per parsed file (every reader of it asks)."""
        if self._keys is None:
            ids = frozenset().union(*(item.paper_ids() for item in self.items))
            self._keys = (ids, frozenset(normalise_title(item.title) for item in self.items))
        return self._keys


class LibraryError(Exception):
    """The file cannot be read at all (missing, unknown format, not the format it says)."""


def _clean(text) -> str:
    """A field value as plain text: BibTeX braces and escapes dropped, whitespace collapsed."""
    if isinstance(text, list):
        text = " ".join(str(part) for part in text)
    text = str(text or "")
    text = re.sub(r"\\(?:emph|textit|textbf|mathrm|text)\s*", "", text)
    text = text.replace("\\&", "&").replace("\\%", "%").replace("\\_", "_").replace("~", " ")
    text = re.sub(r"[{}]", "", text)
    return " ".join(text.split())


def _day(value) -> date | None:
    """A date from an export's 'added' field (ISO dates and timestamps; anything else is ignored)."""
    if isinstance(value, dict):  # CSL date: {"date-parts": [[2024, 5, 1]]}
        parts = (value.get("date-parts") or [[]])[0]
        try:
            return date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
        except (ValueError, TypeError, IndexError):
            return None
    match = re.match(r"\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})", str(value or ""))
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _arxiv(*values) -> str | None:
    for value in values:
        for part in value if isinstance(value, list) else [value]:
            match = ARXIV_IN_TEXT.search(str(part or "").strip())
            if match:
                return match[1]
    return None


def _item(shown: str, line: int, title, abstract="", *, arxiv=None, doi=None, added=None, problems: list[str]) -> LibraryItem | None:
    title = _clean(title)
    if not title:
        problems.append(f"{shown}:{line}: entry has no title; skipped")
        return None
    doi = _clean(doi) or None
    return LibraryItem(
        title=title,
        abstract=_clean(abstract),
        arxiv_id=arxiv or _arxiv(doi),
        doi=doi,
        added=_day(added),
        line=line,
    )


def _parse_bibtex(shown: str, text: str, problems: list[str]) -> list[LibraryItem]:
    import bibtexparser

    logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)  # its failures are reported below, once
    parsed = bibtexparser.parse_string(text)
    items = []
    for block in parsed.failed_blocks:
        error = " ".join(str(getattr(block, "error", "") or "").split()) or "cannot parse this entry (unbalanced braces or quotes?)"
        problems.append(f"{shown}:{block.start_line + 1}: {error}; skipped")
    for entry in parsed.entries:
        fields = {key.lower(): value.value for key, value in entry.fields_dict.items()}
        arxiv = None
        if str(fields.get("archiveprefix", "")).lower() == "arxiv" or "eprint" in fields:
            arxiv = _arxiv(fields.get("eprint"))
        arxiv = arxiv or _arxiv(fields.get("url"), fields.get("journal"))
        added = fields.get("date-added") or fields.get("timestamp") or fields.get("added-at")
        item = _item(shown, entry.start_line + 1, fields.get("title"), fields.get("abstract", ""),
                     arxiv=arxiv, doi=fields.get("doi"), added=added, problems=problems)
        if item:
            items.append(item)
    return sorted(items, key=lambda item: item.line)


def _parse_ris(shown: str, text: str, problems: list[str]) -> list[LibraryItem]:
    import rispy

    items, record, start = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if not record and not line.strip():
            continue
        if not record:
            start = number
        record.append(line)
        if re.match(r"ER\s{2}-", line):
            items.extend(_ris_record(shown, start, record, problems, rispy))
            record = []
    if record and any(line.strip() for line in record):
        problems.append(f"{shown}:{start}: record has no end (ER  - ); skipped")
    return items


def _ris_record(shown: str, start: int, lines: list[str], problems: list[str], rispy) -> list[LibraryItem]:
    if not re.match(r"TY\s{2}-", lines[0].lstrip("\ufeff")):
        problems.append(f"{shown}:{start}: record does not start with 'TY  - '; skipped")
        return []
    try:
        entries = rispy.loads("\n".join(lines) + "\n")
    except Exception as error:  # rispy raises bare IOError/ValueError on malformed tags
        problems.append(f"{shown}:{start}: {error}; skipped")
        return []
    found = []
    for entry in entries:
        title = entry.get("title") or entry.get("primary_title") or entry.get("translated_title")
        urls = entry.get("urls") or []
        item = _item(shown, start, title, entry.get("abstract") or entry.get("notes_abstract", ""),
                     arxiv=_arxiv(urls, entry.get("doi")), doi=entry.get("doi"),
                     added=entry.get("access_date") or entry.get("date"), problems=problems)
        if item:
            found.append(item)
    return found


def _json_elements(text: str) -> list[tuple[int, object]]:
    """The elements of a top-level JSON array (or of its "items"), each with its line number."""
    decoder = json.JSONDecoder()
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return [(1, element) for element in data["items"]]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of items (CSL-JSON or a Zotero export)")
    found, at = [], text.index("[") + 1
    for _ in data:
        while text[at] in " \t\r\n,":
            at += 1
        element, end = decoder.raw_decode(text, at)
        found.append((text.count("\n", 0, at) + 1, element))
        at = end
    return found


def _parse_json(shown: str, text: str, problems: list[str]) -> list[LibraryItem]:
    try:
        elements = _json_elements(text)
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            raise LibraryError(f"{shown}:{error.lineno}: not JSON: {error.msg}") from None
        raise LibraryError(f"{shown}: {error}") from None
    items = []
    for line, element in elements:
        if not isinstance(element, dict):
            problems.append(f"{shown}:{line}: expected an object with a title; skipped")
            continue
        data = element.get("data") if isinstance(element.get("data"), dict) else element  # Zotero API items
        if data.get("itemType") in ("attachment", "note"):
            continue
        item = _item(
            shown, line, data.get("title"), data.get("abstract") or data.get("abstractNote") or "",
            arxiv=_arxiv(data.get("URL"), data.get("url"), data.get("number"), data.get("archive_location")),
            doi=data.get("DOI") or data.get("doi"),
            added=data.get("dateAdded") or data.get("accessed"),
            problems=problems,
        )
        if item:
            items.append(item)
    return items


def _parse_txt(shown: str, text: str, problems: list[str], store: Store | None) -> list[LibraryItem]:
    """One arXiv id, DOI or title a line ('#' starts a comment), each looked up in the store."""
    wanted: list[tuple[int, str, str, str]] = []  # (line, kind, lookup value, as written)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        arxiv = _arxiv(line)
        doi = DOI.match(line)
        if arxiv:
            wanted.append((number, "arxiv", arxiv, arxiv))
        elif doi:
            wanted.append((number, "doi", doi[1].rstrip(".").lower(), doi[1]))
        else:
            wanted.append((number, "title", normalise_title(line), line))
    if store is None:
        raise LibraryError(f"{shown}: a .txt library is looked up in the store; open one first")
    found = store.find_papers(
        arxiv_ids=[value for _, kind, value, _ in wanted if kind == "arxiv"],
        dois=[value for _, kind, value, _ in wanted if kind == "doi"],
        title_keys=[value for _, kind, value, _ in wanted if kind == "title"],
    )
    items = []
    for number, kind, value, written in wanted:
        paper = found.get((kind, value))
        if paper is None:
            what = {"arxiv": "arXiv id", "doi": "DOI", "title": "title"}[kind]
            problems.append(f"{shown}:{number}: {what} {written!r} is not in the store; skipped")
            continue
        items.append(
            LibraryItem(paper.title, paper.abstract, arxiv_id=paper.arxiv_id, line=number, stored_id=paper.id,
                        added=None, doi=value if kind == "doi" else None)
        )
    return items


def parse_library(path: Path, text: str, *, shown: str | None = None, store: Store | None = None) -> Library:
    """Parse library `text` (the content of `path`); raises LibraryError when nothing can be read."""
    from newsletter.config import display_path

    shown = shown or display_path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise LibraryError(f"{shown}: unknown library format {path.suffix!r} (use .bib, .ris, .json or .txt)")
    library = Library(path=path, digest=hashlib.sha256(text.encode("utf-8")).hexdigest())
    if kind == "bibtex":
        library.items = _parse_bibtex(shown, text, library.problems)
    elif kind == "ris":
        library.items = _parse_ris(shown, text, library.problems)
    elif kind == "json":
        library.items = _parse_json(shown, text, library.problems)
    else:
        library.items = _parse_txt(shown, text, library.problems, store)
    return library


def read_library(path: Path, *, store: Store | None = None) -> Library:
    """Read and parse a library file; raises LibraryError when it cannot be read at all."""
    from newsletter.config import display_path

    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LibraryError(f"{shown}: library file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LibraryError(f"{shown}: cannot read: {error}") from None
    return parse_library(path, text, shown=shown, store=store)


class LibraryCache:
    """Parsed libraries by path, re-read only when the file's size or modification time changes."""

    def __init__(self, store: Store | None = None):
        self.store = store
        self._by_path: dict[Path, tuple[tuple[int, int], Library | LibraryError]] = {}

    def get(self, path: Path) -> Library:
        """The library at `path`; raises LibraryError (cached too) when it cannot be read."""
        try:
            stat = path.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            signature = (0, -1)
        cached = self._by_path.get(path)
        if cached is None or cached[0] != signature:
            try:
                result: Library | LibraryError = read_library(path, store=self.store)
            except LibraryError as error:
                result = error
            cached = self._by_path[path] = (signature, result)
        if isinstance(cached[1], LibraryError):
            raise cached[1]
        return cached[1]


def recency_weights(items: list[LibraryItem], today: date | None = None, half_life_days: float = 365.0) -> list[float]:
    """More weight to recently added entries (as zotero-arxiv-daily): halved every `half_life_days`.

    Entries with no date get the weight of the oldest dated one (1.0 when none is dated).
    """
    today = today or datetime.now().date()
    ages = [(today - item.added).days if item.added else None for item in items]
    known = [age for age in ages if age is not None]
    oldest = max(known) if known else 0
    return [0.5 ** (max(oldest if age is None else age, 0) / half_life_days) for age in ages]
