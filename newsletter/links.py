"""Signed links to a subscriber's editions on the web: "View in browser" (one edition) and "Past editions".

A link carries the subscriber's address and an HMAC-SHA256 over (purpose, address,
and for one edition its date) under the same key as the unsubscribe links, so it
cannot be altered to show someone else's mail or another day's, and needs no
database to check.
"""

from __future__ import annotations

import binascii
import hmac
from datetime import date

from newsletter.unsubscribe import _b64, _unb64

VIEW = b"newsletter-view\n"
ARCHIVE = b"newsletter-archive\n"


def _token(purpose: bytes, email: str, key: bytes, day: date | None = None) -> str:
    address = email.encode("utf-8")
    signed = purpose + address + (b"\n" + day.isoformat().encode("ascii") if day else b"")
    return f"{_b64(address)}.{_b64(hmac.digest(key, signed, 'sha256'))}"


def _verify(purpose: bytes, token: str, key: bytes, day: date | None = None) -> str | None:
    try:
        email = _unb64(token.partition(".")[0]).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    good = _token(purpose, email, key, day)
    return email if hmac.compare_digest(token.encode("utf-8"), good.encode("utf-8")) else None


def view_path(email: str, day: date, key: bytes) -> str:
    """`view/YYYY-MM-DD?token=…`: the "View in browser" link relative to the site's root."""
    return f"view/{day.isoformat()}?token={_token(VIEW, email, key, day)}"


def view_url(base_url: str, email: str, day: date, key: bytes) -> str:
    """The "View in browser" link of `email`'s edition dated `day`: `{base_url}/view/YYYY-MM-DD?token=…`."""
    return f"{base_url.rstrip('/')}/{view_path(email, day, key)}"


def verify_view(token: str, day: date, key: bytes) -> str | None:
    """The address a view link for `day` was made for, or None when the token or the date was altered."""
    return _verify(VIEW, token, key, day)


def archive_url(base_url: str, email: str, key: bytes) -> str:
    """The "Past editions" link of `email`: `{base_url}/archive?token=…`."""
    return f"{base_url.rstrip('/')}/archive?token={_token(ARCHIVE, email, key)}"


def verify_archive(token: str, key: bytes) -> str | None:
    """The address an archive link was made for, or None when it was altered."""
    return _verify(ARCHIVE, token, key)
