"""Format detection and the file-level rules: never raise for bad content."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.sources import FORMATS, UnknownFormat, detect_format, parse_bytes, parse_file

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("feed.xml", b"<?xml version='1.0'?>\n<feed xmlns='http://www.w3.org/2005/Atom'>", "arxiv"),
        ("listing", b"\xef\xbb\xbf  <feed>", "arxiv"),
        ("day.json", b"[{\"paper\": {}}]", "hf-api"),
        ("weekend.json", b"[]", "hf-api"),
        ("papers.jsonl", b"{\"title\": \"x\"}\n", "jsonl"),
        ("papers.json", b"{\"title\": \"x\"}\n{\"title\": \"y\"}", "jsonl"),
        ("page.txt", b"new\n\nGet trending papers", "hf-page"),
        ("page", b"Some Title\nSome abstract", "hf-page"),
    ],
)
def test_detect_format(name, head, expected):
    assert detect_format(Path(name), head) == expected


@pytest.mark.parametrize(
    ("name", "head", "message"),
    [
        ("x.html", b"<!doctype html><html>", "not an Atom <feed>"),
        ("x.json", b"hello", "the extension says .json but the content is plain text"),
        ("x.bin", b"\x89PNG\r\n\x1a\n\x00\x00", r"not a papers file \(binary\?\)"),
        ("x.txt", b"  \n", "empty"),
    ],
)
def test_detect_format_refuses_with_a_clear_message(name, head, message):
    with pytest.raises(UnknownFormat, match=message):
        detect_format(Path(name), head)


def test_every_fixture_is_detected():
    formats = {"hf-pages": "hf-page", "hf-api": "hf-api", "arxiv": "arxiv"}
    for folder, expected in formats.items():
        for path in (FIXTURES / folder).iterdir():
            assert parse_file(path).format == expected, path


def test_unknown_format_name_is_a_caller_error():
    with pytest.raises(UnknownFormat, match="use one of: auto, hf-page, hf-api, arxiv, jsonl"):
        parse_file(FIXTURES / "hf-api" / "daily_papers.json", "csv")
    assert FORMATS == ("hf-page", "hf-api", "arxiv", "jsonl")


def test_unreadable_empty_binary_and_undetectable_files_become_warnings(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "image.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    html = tmp_path / "page.html"
    html.write_text("<html><body>hi</body></html>")
    missing = tmp_path / "missing.txt"
    results = [parse_file(p) for p in (empty, binary, html, missing, tmp_path)]
    assert all(r.papers == [] and len(r.warnings) == 1 for r in results)
    warnings = [r.warnings[0] for r in results]
    assert warnings[0] == f"{empty}: empty, no papers"
    assert warnings[1] == f"{binary}: not a papers file (binary?); nothing stored from it"
    assert warnings[2].startswith(f"{html}: XML/HTML but not an Atom <feed>")
    assert warnings[2].endswith("give the format explicitly (hf-page, hf-api, arxiv, jsonl)")
    assert warnings[3] == f"{missing}: cannot read: No such file or directory"
    assert warnings[4].startswith(f"{tmp_path}: cannot read: ")
    assert parse_file(binary, "jsonl").warnings == [f"{binary}: not a papers file (binary?); nothing stored from it"]


def test_invalid_utf8_warns_with_the_line_and_keeps_good_records(tmp_path):
    page = tmp_path / "page.txt"
    shutil.copy(FIXTURES / "hf-pages" / "003_a438dea69ce54d15.txt", page)
    data = page.read_bytes().split(b"\n")
    data[5] = data[5].replace(b"a", b"\xff", 1)    # line 6, an abstract
    data[9] = b"\xc3" + data[9]                     # line 10, a truncated sequence
    page.write_bytes(b"\n".join(data))
    result = parse_file(page)
    assert len(result.papers) == 131
    assert result.warnings == [
        f"{page}:6: invalid UTF-8, replaced with \ufffd",
        f"{page}:10: invalid UTF-8, replaced with \ufffd",
    ]
    assert "\ufffd" in result.papers[1].abstract


def test_invalid_utf8_in_json_lines(tmp_path):
    data = b'{"title": "Good"}\n{"title": "Caf\xe9"}\n{"title": "Also good"}\n'
    result = parse_bytes(data, "auto", name="p.jsonl")
    assert [p.title for p in result.papers] == ["Good", "Caf\ufffd", "Also good"]
    assert result.warnings == ["p.jsonl:2: invalid UTF-8, replaced with \ufffd"]


def test_many_invalid_lines_are_summarised():
    data = b"".join(b'{"title": "T\xff%d"}\n' % n for n in range(25))
    result = parse_bytes(data, "jsonl", name="p")
    assert len(result.papers) == 25
    assert len(result.warnings) == 11
    assert result.warnings[-1] == "p: invalid UTF-8 on 15 more lines"


def test_byte_order_mark_is_dropped():
    result = parse_bytes(b'\xef\xbb\xbf{"title": "T"}\n', "auto", name="p.jsonl")
    assert (result.format, result.warnings, result.papers[0].title) == ("jsonl", [], "T")
