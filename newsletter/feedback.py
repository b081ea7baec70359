"""Signed "more like this" / "fewer like this" links: subscriber, paper and choice plus their HMAC-SHA256.

A token names one subscriber, one paper and one choice, so a link can only ever
record that choice, for that reader, on that paper: changing any part breaks the
signature. The key is the unsubscribe signing key; a distinct purpose prefix keeps
a feedback signature from ever passing as an unsubscribe one, and the reverse.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

PURPOSE = b"newsletter-feedback\n"
KINDS = ("more", "fewer")
LABELS = {"more": "More like this", "fewer": "Fewer like this"}
BLOCK = 64  # SHA-256's block size in bytes
IPAD, OPAD = bytes(b ^ 0x36 for b in range(256)), bytes(b ^ 0x5C for b in range(256))  # as translate tables


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=65536)
def _b64_text(text: str) -> str:
    """`text` as UTF-8 in URL-safe base64; cached: an address or a paper id comes in many links of a run."""
    return _b64(text.encode("utf-8"))


def make_feedback_token(email: str, paper_id: str, kind: str, key: bytes) -> str:
    """A URL-safe token for one subscriber's `kind` ("more" or "fewer") click on one paper."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return _signed(_reader(email, key), email, paper_id, kind)


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple:
    """SHA-256 over the key's inner and outer pads (RFC 2104), taken once per key: copying them makes
    an HMAC without `hmac`'s Python wrapper, half the cost of a token."""
    key = (hashlib.sha256(key).digest() if len(key) > BLOCK else key).ljust(BLOCK, b"\0")
    return hashlib.sha256(key.translate(IPAD)), hashlib.sha256(key.translate(OPAD))


def _reader(email: str, key: bytes) -> tuple:
    """The inner hash over a token's first part (the purpose and the reader), to copy for each of their links,
    and the outer pad's hash."""
    inner, outer = _pads(key)
    inner = inner.copy()
    inner.update(PURPOSE + email.encode("utf-8") + b"\n")
    return inner, outer


def _signed(reader: tuple, email: str, paper_id: str, kind: str) -> str:
    """The token: reader, paper and choice, then the HMAC-SHA256 of PURPOSE + "email\npaper\nkind"."""
    inner, outer = reader[0].copy(), reader[1].copy()
    inner.update(paper_id.encode("utf-8") + b"\n" + kind.encode("ascii"))
    outer.update(inner.digest())
    return f"{_b64_text(email)}.{_b64_text(paper_id)}.{kind}.{_b64(outer.digest())}"


def verify_feedback_token(token: str, key: bytes) -> tuple[str, str, str] | None:
    """(email, paper id, kind) if `token` is exactly what `make_feedback_token` writes for them, else None."""
    parts = token.split(".")
    if len(parts) != 4 or parts[2] not in KINDS:
        return None
    try:
        email, paper_id = _unb64(parts[0]).decode("utf-8"), _unb64(parts[1]).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    expected = make_feedback_token(email, paper_id, parts[2], key)
    return (email, paper_id, parts[2]) if hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")) else None


def feedback_url(base_url: str, email: str, paper_id: str, kind: str, key: bytes) -> str:
    """The link for one click: `{base_url}/feedback?token=…` (a confirmation page, then a POST)."""
    return f"{base_url.rstrip('/')}/feedback?token={make_feedback_token(email, paper_id, kind, key)}"  # URL-safe already


def feedback_links(base_url: str, email: str, paper_ids: list[str], key: bytes) -> list[tuple[str, str]]:
    """Each paper's ("more like this", "fewer like this") links for one reader: the `feedback_url`s,
    with the HMAC over the reader's part of the message taken once and copied for each link."""
    start, reader = f"{base_url.rstrip('/')}/feedback?token=", _reader(email, key)
    return [(start + _signed(reader, email, paper_id, "more"), start + _signed(reader, email, paper_id, "fewer"))
            for paper_id in paper_ids]
