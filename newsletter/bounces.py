"""Bounces: read delivery status notifications, suppress the addresses that cannot be mailed.

Reports come from an IMAP mailbox (imapclient), a Maildir or an mbox (the
Return-Path / bounce address of the newsletter delivers there). Each report is
read as an RFC 3464 DSN when it is one (per recipient: Action, Status,
Diagnostic-Code); otherwise flufl.bounce's detectors recognise the common
non-standard ones (Exim, qmail, Postfix, Yahoo, Exchange, …).

A hard bounce (the address does not exist: 5.1.x, 5.2.1 disabled, 5.4.4 no
route, 5.0.0) suppresses the address at once, with the reason. Anything else
that failed (4.x.x, mailbox full 5.2.2, policy 5.7.x: about the message or the
sender, not the address) is soft: `soft_limit` soft-bounced editions in a row
suppress it. "Delayed" warnings are not bounces. A report read twice counts once.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import logging
import mailbox
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flufl.bounce import all_failures

from newsletter.store import BounceRecord, Store

log = logging.getLogger("newsletter.bounces")

HARD_STATUS = re.compile(r"5\.(?:1\.\d+|2\.1|4\.4|0\.0)$")
STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
ADDRESS = re.compile(r"[^\s<>;@]+@[^\s<>;@]+\.[A-Za-z0-9-]+")


@dataclass(frozen=True)
class Bounce:
    """One failed recipient of one report."""

    email: str
    kind: str  # hard | soft
    reason: str


@dataclass
class Report:
    """What one message said: its id, the bounces in it, and the Message-ID of the mail it returns."""

    report_id: str
    bounces: list[Bounce] = field(default_factory=list)
    original_message_id: str | None = None


def classify(status: str) -> str:
    """`hard` for statuses that say the address itself is bad, else `soft`."""
    return "hard" if HARD_STATUS.match(status) else "soft"


def parse_report(data: bytes) -> Report:
    """The bounces in one message (none when it is not a bounce, or only a delay warning)."""
    message = email.message_from_bytes(data)
    report_id = (message.get("Message-ID") or "").strip() or "sha256:" + hashlib.sha256(data).hexdigest()
    report = Report(report_id, original_message_id=_original_message_id(message))
    dsn = _dsn_part(message)
    if dsn is not None:
        report.bounces = _dsn_bounces(dsn)
        return report
    try:
        temporary, permanent = all_failures(message)
    except Exception as error:  # a detector choking on an odd message must not stop the others
        log.warning("%s: the bounce detectors failed: %s", report_id, error)
        return report
    text = _plain_text(message) or str(message.get_payload())
    status = STATUS.search(text)  # the remote server's reply line, where the report quotes one
    line = text[text.rfind("\n", 0, status.start()) + 1 : text.find("\n", status.end()) % (len(text) + 1)] if status else ""
    for kind, addresses in (("hard", permanent), ("soft", set(temporary) - set(permanent))):
        for raw in sorted(addresses):
            address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if ADDRESS.fullmatch(address.strip()):
                reason = " ".join(line.split())[:300] or f"{'permanent' if kind == 'hard' else 'temporary'} failure"
                report.bounces.append(Bounce(address.strip().lower(), kind, reason + " (non-standard report)"))
    return report


def _dsn_part(message: email.message.Message) -> email.message.Message | None:
    """The message/delivery-status part of an RFC 3464 report, if this is one."""
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            return part
    return None


def _dsn_bounces(part: email.message.Message) -> list[Bounce]:
    """Per-recipient fields of a delivery-status part: failed ones become bounces."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses the field groups as header blocks
        groups = payload
    else:
        groups = [email.message_from_string(block) for block in re.split(r"\r?\n\s*\r?\n", str(payload)) if block.strip()]
    bounces = []
    for group in groups[1:] if len(groups) > 1 else groups:
        recipient = group.get("Final-Recipient") or group.get("Original-Recipient") or ""
        address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
        action = (group.get("Action") or "").strip().lower()
        if not ADDRESS.fullmatch(address) or action not in ("failed", ""):
            continue  # delayed, delivered, relayed, expanded: not a bounce
        status = (STATUS.search(group.get("Status") or "") or [None, ""])[1]
        if not status or status.startswith("2."):
            continue
        diagnostic = " ".join((group.get("Diagnostic-Code") or "").split())
        diagnostic = diagnostic.split(";", 1)[-1].strip() if ";" in diagnostic[:12] else diagnostic
        reason = (diagnostic if status in diagnostic else f"{status} {diagnostic}").strip()[:300]
        bounces.append(Bounce(address, classify(status), reason))
    return bounces


def _original_message_id(message: email.message.Message) -> str | None:
    """The Message-ID of the returned message (its headers come back in the report)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, email.message.Message) and inner.get("Message-ID"):
                return inner["Message-ID"].strip()
        elif kind == "text/rfc822-headers":
            headers = email.message_from_string(part.get_payload(decode=True).decode("utf-8", "replace"))
            if headers.get("Message-ID"):
                return headers["Message-ID"].strip()
    text = _plain_text(message)
    found = re.search(r"^Message-ID:\s*(<[^>\s]+>)", text, re.M | re.I)
    return found[1] if found else None


def _plain_text(message: email.message.Message) -> str:
    parts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)


@dataclass
class BounceRun:
    """What one `newsletter bounces` pass did."""

    messages: int = 0
    reports: int = 0
    already_seen: int = 0
    hard: list[tuple[str, str]] = field(default_factory=list)
    soft: list[tuple[str, str, int]] = field(default_factory=list)  # (email, reason, streak)
    suppressed: list[tuple[str, str]] = field(default_factory=list)


def process(store: Store, messages: Iterator[bytes], *, soft_limit: int) -> BounceRun:
    """Record the bounces in `messages` and suppress the addresses they condemn."""
    run = BounceRun()
    for data in messages:
        run.messages += 1
        report = parse_report(data)
        if report.bounces:
            run.reports += 1
        for bounce in report.bounces:
            edition = store.edition_of(bounce.email, report.original_message_id) if report.original_message_id else None
            if not store.record_bounce(BounceRecord(report.report_id, bounce.email, bounce.kind, bounce.reason, edition)):
                run.already_seen += 1
                continue
            if bounce.kind == "hard":
                run.hard.append((bounce.email, bounce.reason))
                reason = f"hard bounce: {bounce.reason}"
            else:
                streak = store.soft_bounce_streak(bounce.email)
                run.soft.append((bounce.email, bounce.reason, streak))
                if streak < soft_limit:
                    continue
                reason = f"{streak} soft bounces in a row, last: {bounce.reason}"
            if store.suppress(bounce.email, reason=reason[:500]):
                run.suppressed.append((bounce.email, reason))
                log.warning("%s: suppressed (%s)", bounce.email, reason)
    return run


# --- where reports are read from -------------------------------------------------


class BounceSourceError(Exception):
    """The mailbox cannot be read; the message says which and why."""


def read_maildir(path: Path) -> Iterator[bytes]:
    """Every message in a Maildir (new and cur); they stay where they are (a report counts once)."""
    if not (path / "cur").is_dir() and not (path / "new").is_dir():
        raise BounceSourceError(f"{path}: not a Maildir (no cur/ or new/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in box.iterkeys():
        with box.get_file(key) as handle:
            yield handle.read()


def read_mbox(path: Path) -> Iterator[bytes]:
    """Every message in an mbox file."""
    if not path.is_file():
        raise BounceSourceError(f"{path}: no such mbox file")
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def read_imap(settings, *, mark_seen: bool = True) -> Iterator[bytes]:
    """The unseen messages of an IMAP folder, marked seen once read (settings: the `[bounces]` table)."""
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError

    password = os.environ.get(settings.password_env or "", "") if settings.password_env else ""
    if settings.password_env and not password:
        raise BounceSourceError(f"{settings.password_env} is not set: it must hold the IMAP password for {settings.username}")
    context = ssl.create_default_context()
    where = f"imap://{settings.host}:{settings.port}/{settings.folder}"
    try:
        client = IMAPClient(settings.host, port=settings.port, ssl=settings.security == "ssl", ssl_context=context,
                            timeout=settings.timeout)
    except (OSError, IMAPClientError) as error:
        raise BounceSourceError(f"{where}: cannot connect: {error}") from None
    try:
        if settings.security == "starttls":
            client.starttls(context)
        if settings.username:
            client.login(settings.username, password)
        client.select_folder(settings.folder, readonly=not mark_seen)
        ids = client.search(["UNSEEN"])
        for start in range(0, len(ids), 100):
            batch = ids[start : start + 100]
            fetched = client.fetch(batch, ["BODY.PEEK[]"])
            for message_id in batch:
                data = fetched.get(message_id, {}).get(b"BODY[]")
                if data:
                    yield data
            if mark_seen:
                client.add_flags(batch, [b"\\Seen"])
    except (OSError, IMAPClientError) as error:
        raise BounceSourceError(f"{where}: {error}") from None
    finally:
        try:
            client.logout()
        except Exception:  # the connection may already be gone; nothing left to tidy
            pass


def read_configured(config, store: Store, *, maildir: Path | None = None, mbox: Path | None = None) -> BounceRun:
    """One pass over the bounce mailbox: `--maildir`/`--mbox` if given, else the `[bounces]` source."""
    from newsletter.config import BouncesSection

    settings = config.model.bounces
    if settings is None and (maildir or mbox):
        settings = BouncesSection(source="maildir" if maildir else "mbox", path=maildir or mbox)
    if settings is None:
        raise BounceSourceError("no [bounces] table in the config and no --maildir or --mbox given")
    if maildir is not None:
        messages = read_maildir(maildir)
    elif mbox is not None:
        messages = read_mbox(mbox)
    elif settings.source == "maildir":
        messages = read_maildir(config.resolve(settings.path))
    elif settings.source == "mbox":
        messages = read_mbox(config.resolve(settings.path))
    else:
        messages = read_imap(settings)
    return process(store, messages, soft_limit=settings.soft_limit)
