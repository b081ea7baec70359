"""Turn input files and downloaded bytes into `Paper`s: one parser module per format.

`parse_file` and `parse_bytes` never raise for bad content; every problem becomes a
warning `path:line: problem` (or `path: problem`) and the good records are kept.
A file keeps its first `MAX_WARNINGS` warnings and counts the rest; a file that is
not text (binary, or mostly invalid UTF-8 or control bytes) yields nothing.
Network fetching lives in `fetch.py`, so everything here works offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from newsletter.models import Paper
from newsletter.sources.problems import MAX_WARNINGS, Warnings

FORMATS = ("hf-page", "hf-api", "arxiv", "jsonl")
MAX_DECODE_WARNINGS = 10
BINARY_SAMPLE = 65536      # bytes looked at to tell text from binary
BINARY_SHARE = 0.2         # more than this share of control bytes or invalid UTF-8: not text
TEXT_CONTROLS = b"\t\n\r\f\v"
CONTROL_BYTES = bytes(b for b in range(32) if b not in TEXT_CONTROLS) + b"\x7f"


class UnknownFormat(ValueError):
    """The format name is not one of FORMATS, or the content does not look like any of them."""


@dataclass
class ParseResult:
    """The papers read from one file or response, and what was wrong with it."""

    path: str
    format: str
    papers: list[Paper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0  # beyond the first MAX_WARNINGS: counted, and `warnings` ends with a line saying so

    @property
    def warning_count(self) -> int:
        """All the warnings, shown or only counted."""
        return len(self.warnings) - 1 + self.more_warnings if self.more_warnings else len(self.warnings)


def looks_binary(data: bytes) -> bool:
    """Whether `data` is not text: a NUL, or many control bytes or invalid UTF-8 sequences
    near the start (a binary file need not have a NUL; Latin-1 text has few bad bytes)."""
    sample = data[:BINARY_SAMPLE]
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, CONTROL_BYTES))
    if len(sample) == BINARY_SAMPLE:  # do not count a character cut at the sample's end
        sample = sample[:-3]
    invalid = sample.decode("utf-8", "replace").count("\ufffd") if not sample.isascii() else 0
    return controls + invalid > BINARY_SHARE * max(len(sample), 1)


def detect_format(path: Path, head: bytes) -> str:
    """Guess the format from the first bytes, using the file extension where content is ambiguous."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    suffix = Path(path).suffix.lower()
    if not text:
        raise UnknownFormat(f"{path}: empty, cannot tell its format")
    if looks_binary(head):
        raise UnknownFormat(f"{path}: not a papers file (binary?)")
    if text.startswith(b"<"):
        if b"<feed" in text:
            return "arxiv"
        raise UnknownFormat(f"{path}: XML/HTML but not an Atom <feed>; expected an arXiv feed")
    if text.startswith(b"["):
        return "hf-api"
    if text.startswith(b"{"):
        return "jsonl"
    if suffix in (".json", ".jsonl", ".ndjson", ".xml", ".atom"):
        raise UnknownFormat(f"{path}: the extension says {suffix} but the content is plain text")
    return "hf-page"


def parse_file(path: Path, format: str = "auto", *, page_date: date | None = None) -> ParseResult:
    """Read and parse one file; unreadable, empty or binary files give a warning and no papers.

    For Hugging Face pages, dates without a year are resolved against `page_date`,
    else the page's own date line, else the file's modification date.
    """
    path = Path(path)
    _check_format(format)
    name = str(path)
    try:
        data = path.read_bytes()
        seen_on = datetime.fromtimestamp(path.stat().st_mtime).date()
    except OSError as error:
        return ParseResult(name, format, [], [f"{name}: cannot read: {error.strerror or error}"])
    return parse_bytes(data, format, name=name, page_date=page_date, seen_on=seen_on)


def parse_bytes(
    data: bytes, format: str, *, name: str, page_date: date | None = None, seen_on: date | None = None
) -> ParseResult:
    """Parse bytes already in memory (a file's content or a download); `name` prefixes warnings.

    `seen_on` is when the data was saved (default today): the year reference for
    page dates without a year when neither `page_date` nor the page itself says.
    """
    _check_format(format)
    if not data or data.isspace():
        return ParseResult(name, format, [], [f"{name}: empty, no papers"])
    if looks_binary(data):
        return ParseResult(name, format, [], [f"{name}: not a papers file (binary?); nothing stored from it"])
    if format == "auto":
        try:
            format = detect_format(Path(name), data[:4096])
        except UnknownFormat as error:
            return ParseResult(name, format, [], [f"{error}; give the format explicitly ({', '.join(FORMATS)})"])
    # the parsers and the LaTeX decoder load here: the commands that parse nothing (`send`) never import them
    from newsletter.sources import arxiv, hf_api, hf_page, jsonl
    from newsletter.tex import decode_paper

    text, decode_warnings = decode(data, name)
    if format == "hf-page":
        papers, problems = hf_page.parse(text, name=name, page_date=page_date, seen_on=seen_on)
    else:
        papers, problems = {"hf-api": hf_api.parse, "arxiv": arxiv.parse, "jsonl": jsonl.parse}[format](text, name=name)
    warnings = Warnings(MAX_WARNINGS)
    warnings.extend(decode_warnings)
    warnings.extend(problems)
    return ParseResult(name, format, [decode_paper(paper) for paper in papers], warnings.lines(name), warnings.more)


def decode(data: bytes, name: str) -> tuple[str, list[str]]:
    """Decode UTF-8 (dropping a BOM); invalid bytes become U+FFFD with a warning per line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    bad_lines: list[int] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            parts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            parts.append(raw.decode("utf-8", "replace"))
            bad_lines.append(number)
    warnings = [f"{name}:{line}: invalid UTF-8, replaced with \ufffd" for line in bad_lines[:MAX_DECODE_WARNINGS]]
    if len(bad_lines) > MAX_DECODE_WARNINGS:
        warnings.append(f"{name}: invalid UTF-8 on {len(bad_lines) - MAX_DECODE_WARNINGS} more lines")
    return "\n".join(parts), warnings


def _check_format(format: str) -> None:
    if format != "auto" and format not in FORMATS:
        raise UnknownFormat(f"unknown format {format!r}; use one of: auto, {', '.join(FORMATS)}")
