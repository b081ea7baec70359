"""DKIM: sign every message once it is built, make keys, and check a signature offline.

Receivers (Gmail and Yahoo for bulk senders) want a DKIM signature aligned with
the From domain, and RFC 8058 wants it to cover `List-Unsubscribe` and
`List-Unsubscribe-Post`. The key is a PEM file (RSA, at least 1024 bits, or
Ed25519, as `newsletter dkim keygen` writes them); the key type chooses the
algorithm. Headers that must not gain a second copy in transit are signed one
more time than they occur ("oversigning"), so an added From or Subject breaks
the signature.

Signing is RFC 6376 relaxed/relaxed done here, with the private-key operation in
OpenSSL (`cryptography`): dkimpy's `sign` re-parses each message and does RSA in
pure Python, ~14 ms an email against ~1 ms here (benchmarks/bench_render.py).
dkimpy is the independent check: `verify` (and the tests) use it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from newsletter.config import Config, DkimSection, display_path

if TYPE_CHECKING:  # cryptography is imported where a key is read or made (~60 ms a start without [dkim] need not pay)
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

# what the signature covers, in this order; the MIME headers with them
SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
    "Feedback-ID", "MIME-Version", "Content-Type",
)
OVERSIGNED = ("From", "To", "Subject", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post")
RSA_BITS = 2048
WSP_RUN = re.compile(rb"[ \t]+")
TRAILING_WSP = re.compile(rb"[ \t]+\r\n")


class DkimError(Exception):
    """The DKIM key cannot be read or used; the message says which setting to fix."""


@dataclass(frozen=True)
class DkimKey:
    """A private key as dkimpy takes it, with its algorithm and the public half for DNS."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    private: bytes  # RSA: PKCS#1 PEM; Ed25519: the base64 seed (dkimpy's forms)
    public: str  # the p= value of the DNS record
    handle: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = field(repr=False, compare=False, default=None)

    def sign_digest_input(self, data: bytes) -> bytes:
        """The signature over the canonical header data (RFC 6376 3.7; Ed25519 signs its SHA-256, RFC 8463)."""
        if self.algorithm == b"rsa-sha256":
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            return self.handle.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.handle.sign(hashlib.sha256(data).digest())

    @property
    def kind(self) -> str:
        return "rsa" if self.algorithm == b"rsa-sha256" else "ed25519"

    def dns_record(self) -> str:
        """The TXT record's text (`v=DKIM1; k=…; p=…`)."""
        return f"v=DKIM1; k={self.kind}; p={self.public}"


def parse_key(data: bytes, where: str) -> DkimKey:
    """A PEM private key (RSA or Ed25519), or dkimpy's base64 Ed25519 seed, as a `DkimKey`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    text = data.strip()
    if not text.startswith(b"-----BEGIN"):
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise DkimError(f"{where}: not a PEM private key (make one with `newsletter dkim keygen`)")
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    else:
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as error:
            raise DkimError(f"{where}: cannot read the private key: {error}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise DkimError(f"{where}: an RSA key of {key.key_size} bits is too short (use {RSA_BITS})")
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return DkimKey(b"rsa-sha256", private, base64.b64encode(public).decode("ascii"), key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return DkimKey(b"ed25519-sha256", base64.b64encode(seed), base64.b64encode(public).decode("ascii"), key)
    raise DkimError(f"{where}: DKIM keys are RSA or Ed25519, not {type(key).__name__}")


def generate_key(kind: str) -> bytes:
    """A new private key as PKCS#8 PEM: RSA-2048 or Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DkimError(f"--type: expected rsa or ed25519, got {kind!r}")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_key(config: Config) -> DkimKey:
    """The configured key, from its file or its environment variable."""
    section = config.dkim
    if section.private_key_env:
        value = os.environ.get(section.private_key_env)
        if not value:
            raise DkimError(f"{section.private_key_env} is not set: it must hold the DKIM private key (PEM), see [dkim]")
        return parse_key(value.encode("utf-8"), section.private_key_env)
    path = config.resolve(section.private_key_file)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DkimError(f"{display_path(path)}: cannot read the DKIM key: {error.strerror or error}") from None
    return parse_key(data, display_path(path))


class Signer:
    """Adds a DKIM-Signature header to built messages."""

    def __init__(self, section: DkimSection, key: DkimKey):
        self.domain = section.domain.encode("ascii")
        self.selector = section.selector.encode("ascii")
        self.key = key

    @classmethod
    def from_config(cls, config: Config) -> Signer | None:
        """The signer the config asks for, or None without a `[dkim]` table."""
        return cls(config.dkim, load_key(config)) if config.dkim else None

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF line endings, as `build_message` writes it) with its DKIM-Signature header in front."""
        head, _, body = message.partition(b"\r\n\r\n")
        fields = parse_header_block(head)
        present = [name for name in SIGNED_HEADERS if name.lower().encode() in fields]
        names = [name.lower() for name in present + [name for name in OVERSIGNED if name in present]]
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        header = (
            f"DKIM-Signature: v=1; a={self.key.algorithm.decode()}; c=relaxed/relaxed; d={self.domain.decode()};"
            f" s={self.selector.decode()};\r\n t={int(time.time())}; h={fold_names(names)};\r\n bh={body_hash};\r\n b="
        ).encode("ascii")
        used: dict[bytes, int] = {}
        signed = []
        for name in names:  # each name takes the next instance from the bottom; none left: it signs absence
            key = name.encode()
            instances = fields.get(key, [])
            count = used.get(key, 0)
            used[key] = count + 1
            if count < len(instances):
                signed.append(relaxed_header(instances[-1 - count]) + b"\r\n")
        signed.append(relaxed_header(header))
        signature = base64.b64encode(self.key.sign_digest_input(b"".join(signed)))
        folded = b"\r\n ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
        return header + folded + b"\r\n" + message


def parse_header_block(head: bytes) -> dict[bytes, list[bytes]]:
    """Each header field (with its folds) under its lower-case name, in message order."""
    fields: dict[bytes, list[bytes]] = {}
    for raw in _unfold_fields(head):
        name = raw.split(b":", 1)[0].strip().lower()
        fields.setdefault(name, []).append(raw)
    return fields


def _unfold_fields(head: bytes) -> list[bytes]:
    lines = head.split(b"\r\n")
    fields: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields


def relaxed_header(raw: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value with whitespace runs as one space, none at the ends."""
    name, _, value = raw.partition(b":")
    value = WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: no trailing whitespace, whitespace runs as one space, no empty lines at the end."""
    if b"\t" in body or b"  " in body or b" \r\n" in body:  # bytes searches: ~50x faster than one regex
        body = WSP_RUN.sub(b" ", TRAILING_WSP.sub(b"\r\n", body))
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if body == b"\r\n":
        return b""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def fold_names(names: list[str]) -> str:
    """The h= list, folded after a colon so no line passes ~78 characters."""
    lines, line = [], ""
    for name in names:
        if line and len(line) + len(name) > 56:
            lines.append(line)
            line = ""
        line += name + ":"
    lines.append(line)
    return "\r\n ".join(lines).rstrip(":")


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify`: whether it passed, what was checked or what failed, the signed headers."""

    ok: bool
    detail: str
    signed: tuple[str, ...] = ()


def verify(message: bytes, key: DkimKey, domain: str, selector: str) -> Verification:
    """Verify `message`'s DKIM signature against `key` with no DNS: the record is served from memory."""
    wanted = f"{selector}._domainkey.{domain}".lower()
    asked: list[str] = []

    def local_dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name.decode("ascii", "replace").rstrip(".").lower())
        return key.dns_record().encode("ascii") if asked[-1] == wanted else None

    import dkim  # dkimpy (with dnspython) is only for checking: signing a run's mail never needs it

    checker = dkim.DKIM(message, minkey=1024)
    if not checker.present():
        return Verification(False, "no DKIM-Signature header")
    try:
        ok = checker.verify(dnsfunc=local_dns)
    except dkim.DKIMException as error:
        return Verification(False, str(error))
    if asked and asked[0] != wanted:
        return Verification(False, f"signed for {asked[0]}, but the key is for {wanted}")
    if not ok:
        return Verification(False, f"the signature does not match the key (d={domain}, s={selector})")
    signed = tuple(dict.fromkeys(h.decode().lower() for h in checker.include_headers))
    algorithm = checker.signature_fields[b"a"].decode()
    return Verification(True, f"{algorithm} d={domain} s={selector}, signed: {', '.join(signed)}", signed)
