"""SMTP sending speed: the smtp backend against smtplib with one connection per message.

An aiosmtpd sink runs in a separate process on a loopback port and counts what
it accepts. Run from the repository root:

    python benchmarks/bench_smtp.py [--messages 5000] [--size 20000] [--concurrency 4] [--naive 1000] [--starttls]

The naive way is timed on `--naive` messages (a sample) and its rate compared
with the backend's. `--starttls` makes both use STARTTLS with a self-signed
certificate, as real submission servers require: then the naive way pays a TLS
handshake per message.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import smtplib
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.delivery import OutgoingMessage, create_backend  # noqa: E402
from tests.smtp_fixtures import Cert, make_cert  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CountingSink:
    def __init__(self, counter) -> None:
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 2.0.0 queued"


def run_sink(port: int, counter, ready, stop, cert: Cert | None) -> None:
    """The sink process: an aiosmtpd server until `stop` is set."""
    from aiosmtpd.controller import Controller

    tls = {"tls_context": cert.server_context(), "require_starttls": True} if cert else {}
    controller = Controller(CountingSink(counter), hostname="127.0.0.1", port=port, **tls)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def make_messages(count: int, size: int) -> list[OutgoingMessage]:
    """`count` multipart-free messages of about `size` bytes: headers plus a base64 body in 76-column lines."""
    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    messages = []
    for n in range(count):
        message_id = f"<bench{n}@example.org>"
        recipient = f"reader{n}@example.org"
        head = (
            f"From: Papers <papers@example.org>\r\nTo: {recipient}\r\nSubject: Digest {n}\r\n"
            f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        messages.append(OutgoingMessage(message_id, "papers@example.org", recipient, head + body))
    return messages


def send_backend(port: int, messages: list[OutgoingMessage], concurrency: int, cert: Cert | None) -> float:
    options = {"host": "127.0.0.1", "port": port, "concurrency": concurrency, "max_per_connection": 1000}
    if cert:
        options.update(security="starttls", ca_file=str(cert.cert))
    backend = create_backend("smtp", options, base_dir=Path("."))
    start = time.perf_counter()
    with backend:
        results = backend.send_messages(messages)
    elapsed = time.perf_counter() - start
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} messages failed, first: {failed[0].reply}")
    return elapsed


def send_naive(port: int, messages: list[OutgoingMessage], cert: Cert | None) -> float:
    context = ssl.create_default_context(cafile=cert.cert) if cert else None
    start = time.perf_counter()
    for message in messages:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.local") as client:
            if context:
                client.starttls(context=context)
            client.sendmail(message.sender, [message.recipient], message.data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per message")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--naive", type=int, default=1000, help="messages sent the naive way (a sample)")
    parser.add_argument("--starttls", action="store_true", help="both ways use STARTTLS")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        cert = make_cert(Path(tmp)) if args.starttls else None
        port = free_port()
        counter, ready, stop = multiprocessing.Value("l", 0), multiprocessing.Event(), multiprocessing.Event()
        sink = multiprocessing.Process(target=run_sink, args=(port, counter, ready, stop, cert), daemon=True)
        sink.start()
        ready.wait(10)
        try:
            messages = make_messages(args.messages, args.size)
            fast = send_backend(port, messages, args.concurrency, cert)
            received_fast = counter.value
            sample = messages[: min(args.naive, len(messages))]
            naive = send_naive(port, sample, cert)
            received_naive = counter.value - received_fast
        finally:
            stop.set()
            sink.join(10)

    if received_fast != len(messages) or received_naive != len(sample):
        raise SystemExit(f"sink counted {received_fast}+{received_naive}, expected {len(messages)}+{len(sample)}")
    fast_rate, naive_rate = len(messages) / fast, len(sample) / naive
    security = "STARTTLS" if cert else "plain"
    print(f"messages: {len(messages)} x {len(messages[0].data)} bytes, {security}, concurrency {args.concurrency}")
    print(f"smtp backend: {fast_rate:8.0f} msg/s  ({fast:.2f} s)")
    print(f"naive smtplib, one connection per message: {naive_rate:8.0f} msg/s  "
          f"({naive:.2f} s for {len(sample)}; {len(messages) / naive_rate:.1f} s extrapolated for {len(messages)})")
    print(f"ratio: {fast_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
