"""Signed one-click unsubscribe tokens (RFC 8058) that do not show the address.

A token is the address encrypted and authenticated with keys derived from the
signing secret (deterministic authenticated encryption in the SIV style, built
from HMAC-SHA256 alone): `iv = HMAC(mac_key, address)[:16]`, the ciphertext is
the address XOR an HMAC-SHA256 keystream over `iv`, and the token is
base64url(`iv` + ciphertext). Only the holder of the secret can read the
address or make a token that verifies; a changed character fails the `iv`
check. The same address always gets the same token, so every edition carries
the same link.

Links written before this scheme (base64 of the address, a dot, its HMAC) are
still accepted: they are already in people's mailboxes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

PURPOSE = b"newsletter-unsubscribe\n"
IV_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=16)
def _subkey(key: bytes, use: bytes) -> bytes:
    """The key for one use (cached: a run derives the same two for every address)."""
    return hmac.digest(key, PURPOSE + b"key:" + use, "sha256")


def _keystream(key: bytes, iv: bytes, length: int) -> bytes:
    enc_key = _subkey(key, b"enc")
    blocks = [hmac.digest(enc_key, iv + n.to_bytes(4, "big"), "sha256") for n in range(length // 32 + 1)]
    return b"".join(blocks)[:length]


def _iv(key: bytes, address: bytes) -> bytes:
    return hmac.digest(_subkey(key, b"mac"), address, "sha256")[:IV_BYTES]


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def make_token(email: str, key: bytes) -> str:
    """An opaque URL-safe token for `email`, readable and verifiable only with `key`."""
    address = email.encode("utf-8")
    iv = _iv(key, address)
    cipher = _xor(address, _keystream(key, iv, len(address)))
    return _b64(iv + cipher)


def _legacy_token(email: str, key: bytes) -> str:
    address = email.encode("utf-8")
    mac = hmac.new(key, PURPOSE + address, hashlib.sha256).digest()
    return f"{_b64(address)}.{_b64(mac)}"


def verify_token(token: str, key: bytes) -> str | None:
    """The address in `token` if it was made with `key`, else None (forged, altered or malformed).

    The token must be exactly what `make_token` writes (or an older link's
    exact spelling): any other spelling is refused.
    """
    legacy = "." in token
    try:
        raw = _unb64(token.partition(".")[0] if legacy else token)
        if legacy:
            email = raw.decode("utf-8")
            expected = _legacy_token(email, key)
        else:
            if len(raw) <= IV_BYTES:
                return None
            iv, cipher = raw[:IV_BYTES], raw[IV_BYTES:]
            email = _xor(cipher, _keystream(key, iv, len(cipher))).decode("utf-8")
            expected = make_token(email, key)
    except (binascii.Error, ValueError):
        return None
    return email if hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")) else None


def unsubscribe_url(base_url: str, email: str, key: bytes) -> str:
    """The one-click link for `email`: `{base_url}/unsubscribe?token=…`."""
    return f"{base_url.rstrip('/')}/unsubscribe?token={make_token(email, key)}"
