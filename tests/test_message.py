"""The fast MIME path, read back with the email package and compared with an EmailMessage-built reference."""

import base64
import email
import re
from datetime import date
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from newsletter.message import base64_lines, build_message, make_message_id

DATE = "Wed, 25 Nov 2026 07:30:00 +0000"
HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Unsubscribe", "List-Unsubscribe-Post")


def fields(**overrides) -> dict:
    values = dict(
        sender="Papers Daily <news@example.org>",
        to_name="Ada Lovelace",
        to_email="ada@example.org",
        subject="3 new papers on attention · 25 Nov 2026",
        html="<html><body><p>Héllo – “papers”</p>" + "<p>filler text</p>" * 500 + "</body></html>",
        text="Héllo – “papers”\n" + "filler text\n" * 200,
        message_id=make_message_id("ada@example.org", date(2026, 11, 25), "example.org"),
        unsubscribe_url="https://news.example.org/unsubscribe?token=abc.def",
        date_header=DATE,
    )
    values.update(overrides)
    return values


def reference(values: dict) -> bytes:
    message = EmailMessage()
    message["From"] = values["sender"]
    message["To"] = Address(values["to_name"], addr_spec=values["to_email"])
    message["Subject"] = values["subject"]
    message["Date"] = values["date_header"]
    message["Message-ID"] = values["message_id"]
    message["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(values["text"])
    message.add_alternative(values["html"], subtype="html")
    return message.as_bytes(policy=policy.SMTP)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def assert_same_message(raw: bytes, values: dict):
    ours, theirs = parse(raw), parse(reference(values))
    for name in HEADERS:
        assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in ours.iter_parts()] == ["text/plain", "text/html"]
    for kind in ("plain", "html"):
        content = ours.get_body((kind,)).get_content()
        assert content == theirs.get_body((kind,)).get_content()
        assert content.replace("\r\n", "\n") == values["text" if kind == "plain" else "html"].rstrip("\n") + "\n"
    assert not ours.defects and not any(part.defects for part in ours.walk())


def test_matches_an_email_message_reference():
    values = fields()
    assert_same_message(build_message(**values), values)


def test_non_ascii_names_and_subjects_are_rfc2047_encoded():
    values = fields(
        sender="Zeitschriftenschau Zürich <news@example.org>",
        to_name="Zoë Ångström-Łukasiewicz 山田太郎",
        subject="12 neue Arbeiten über Lernverfahren für Sprachmodelle, Übersetzung und Ähnliches · 25 Nov 2026",
    )
    raw = build_message(**values)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?b?" in head
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"To:"))
    assert_same_message(raw, values)


@pytest.mark.parametrize("subject", ["山田" * 30 + " · 25 Nov 2026", " ".join(["🧪 papers"] * 12), "é" * 120])
def test_multibyte_subjects_split_between_characters(subject):
    values = fields(subject=subject)
    raw = build_message(**values)
    assert parse(raw)["Subject"] == subject
    assert_same_message(raw, values)


def test_long_ascii_subject_is_folded():
    values = fields(subject=" ".join(["papers"] * 40))
    raw = build_message(**values)
    subject_lines = re.search(rb"Subject:.*?\r\n(?=\S)", raw, re.S).group(0).split(b"\r\n")
    assert len(subject_lines) > 2 and all(len(line) <= 78 for line in subject_lines)
    assert_same_message(raw, values)


def test_display_names_with_specials_are_quoted():
    values = fields(to_name='Doe, John "JD" \\ Jr.')
    assert parse(build_message(**values))["To"].addresses[0].display_name == 'Doe, John "JD" \\ Jr.'
    assert_same_message(build_message(**values), values)


def test_only_crlf_line_endings():
    raw = build_message(**fields(text="one\ntwo\r\nthree\rfour"))
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize("field", ["subject", "to_name", "to_email", "sender", "unsubscribe_url", "message_id"])
@pytest.mark.parametrize("attack", ["\r\nBcc: evil@example.net", "\nBcc: evil@example.net", "\rBcc: evil@example.net"])
def test_no_cr_or_lf_reaches_a_header(field, attack):
    values = fields()
    values[field] += attack
    message = parse(build_message(**values))
    assert message["Bcc"] is None
    assert sorted(message.keys()) == sorted(HEADERS + ("Content-Type",))
    for name in HEADERS:
        assert "\r" not in str(message[name]) and "\n" not in str(message[name])
    assert message.get_body(("plain",)).get_content() == values["text"].replace("\n", "\r\n")


def test_default_date_header():
    message = parse(build_message(**fields(date_header=None)))
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None


def test_message_id_is_deterministic():
    first = make_message_id("ada@example.org", date(2026, 11, 25), "example.org")
    assert first == make_message_id("Ada@Example.org", date(2026, 11, 25), "example.org")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", first)
    assert first != make_message_id("ada@example.org", date(2026, 11, 26), "example.org")
    assert first != make_message_id("bob@example.org", date(2026, 11, 25), "example.org")
    assert "\n" not in make_message_id("a@b.org", date(2026, 11, 25), "example.org\r\nBcc: x")


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 113, 114, 171, 4096, 30_001])
def test_base64_lines_match_the_email_package(size):
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    expected = base64.encodebytes(data).replace(b"\n", b"\r\n") or b"\r\n"
    assert base64_lines(data) == expected


def test_list_id_mailto_and_feedback_id():
    raw = build_message(**fields(list_name="Papers · Daily", list_id="news.example.org",
                                 unsubscribe_mailto="unsub@example.org", feedback_id="digest:papers"))
    message = parse(raw)
    assert message["List-Id"] == "Papers · Daily <news.example.org>"
    assert message["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe?token=abc.def>, <mailto:unsub@example.org?subject=unsubscribe>"
    )
    assert message["Feedback-ID"] == "digest:papers"
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    plain = parse(build_message(**fields()))
    assert plain["List-Id"] is None and plain["Feedback-ID"] is None


def test_default_list_id_comes_from_the_from_address():
    from newsletter.config import NewsletterSection

    section = NewsletterSection.model_validate({"from": "Papers <papers@example.org>", "base_url": "https://x.org"})
    assert section.list_identifier == "papers.example.org"
    section = NewsletterSection.model_validate(
        {"from": "p@example.org", "base_url": "https://x.org", "list_id": "<digest.lists.example.org>"})
    assert section.list_identifier == "digest.lists.example.org"
    with pytest.raises(ValueError, match="RFC 2919"):
        NewsletterSection.model_validate({"from": "p@example.org", "base_url": "https://x.org", "list_id": "no spaces.org x"})
