"""Signed one-click unsubscribe tokens (RFC 8058): the address plus its HMAC-SHA256."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PURPOSE = b"newsletter-unsubscribe\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(email: str, key: bytes) -> str:
    """A URL-safe token naming `email`, signed with `key`."""
    address = email.encode("utf-8")
    mac = hmac.new(key, PURPOSE + address, hashlib.sha256).digest()
    return f"{_b64(address)}.{_b64(mac)}"


def verify_token(token: str, key: bytes) -> str | None:
    """The address in `token` if its signature is good, else None (forged, altered or malformed).

    The token must be exactly what `make_token` writes: any other spelling is refused.
    """
    try:
        email = _unb64(token.partition(".")[0]).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return email if hmac.compare_digest(token.encode("utf-8"), make_token(email, key).encode("utf-8")) else None


def unsubscribe_url(base_url: str, email: str, key: bytes) -> str:
    """The one-click link for `email`: `{base_url}/unsubscribe?token=…`."""
    return f"{base_url.rstrip('/')}/unsubscribe?token={make_token(email, key)}"
