"""A real aiosmtpd server on a free loopback port, with knobs for failure cases.

Import the fixtures into a test module:
`from tests.smtp_fixtures import smtp_factory, smtp_server, tls_cert  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)

    @property
    def message_id(self) -> str:
        return email.message_from_bytes(self.data)["Message-ID"]


@dataclass
class Sink:
    """The aiosmtpd handler: stores what it accepts; failure knobs are set by tests."""

    received: list[Received] = field(default_factory=list)
    connections: int = 0
    reject: dict[str, str] = field(default_factory=dict)  # recipient -> reply at RCPT, e.g. "550 no such user"
    defer_once: set[str] = field(default_factory=set)  # Message-IDs answered "451" at their first DATA
    drop_at: set[int] = field(default_factory=set)  # DATA numbers (1-based) that drop the connection after ".", storing nothing
    drop_after_storing: set[int] = field(default_factory=set)  # DATA numbers that store the message, then drop
    late_at: dict[int, float] = field(default_factory=dict)  # DATA number -> seconds before the 250 (stored first)
    late_all: float = 0.0  # seconds before every 250 after "." (stored first)
    drop_at_rcpt: set[int] = field(default_factory=set)  # RCPT numbers that drop the connection (before DATA)
    data_count: int = 0
    rcpt_count: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_count += 1
        if self.rcpt_count in self.drop_at_rcpt:
            server.transport.abort()
            return "421 dropped"
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_count += 1
        number = self.data_count
        if number in self.drop_at:
            server.transport.abort()
            return "421 dropped"
        message_id = email.message_from_bytes(envelope.content)["Message-ID"]
        if message_id in self.defer_once:
            self.defer_once.discard(message_id)
            return "451 4.3.0 try again later"
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, list(envelope.mail_options))
        )
        if number in self.drop_after_storing:
            server.transport.abort()
            return "421 dropped"
        delay = self.late_at.get(number, self.late_all)
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 queued"

    def ids(self) -> list[str]:
        return [item.message_id for item in self.received]


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        self.event_handler.connections += 1
        super().connection_made(transport)


class SinkController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


class check_password:
    """An aiosmtpd authenticator accepting one (login, password); counts the login attempts it sees."""

    def __init__(self, expected: tuple[str, str]) -> None:
        self.expected = expected
        self.attempts = 0
        self.failures = 0

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.attempts += 1
        given = (auth_data.login.decode(), auth_data.password.decode()) if isinstance(auth_data, LoginPassword) else None
        ok = given == self.expected
        self.failures += not ok
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@dataclass
class Server:
    host: str
    port: int
    sink: Sink


def start_server(**options) -> tuple[Server, SinkController]:
    """Start a sink server with aiosmtpd SMTP options (tls_context, authenticator, auth_require_tls…)."""
    sink = Sink()
    controller = SinkController(sink, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    sink.connections = 0  # forget the controller's own readiness probe
    return Server("127.0.0.1", controller.port, sink), controller


@pytest.fixture
def smtp_factory():
    """`smtp_factory(**aiosmtpd_options) -> Server`; every server is stopped after the test."""
    controllers = []

    def start(**options) -> Server:
        server, controller = start_server(**options)
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(smtp_factory) -> Server:
    """A plain sink server (no TLS, no AUTH)."""
    return smtp_factory()


@dataclass
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_cert(directory: Path) -> Cert:
    """A self-signed certificate for localhost and 127.0.0.1 (cryptography, else the openssl command)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        import subprocess

        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key_path, "-out", cert_path, "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        return Cert(cert_path, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Cert(cert_path, key_path)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"))
