"""`smtp` backend: several reused connections at once, under a rate limit, with retries.

`open()` starts an asyncio event loop in a background thread; the SMTP
connections (aiosmtplib) live on that loop, so they survive from one
`send_messages` call to the next until `close()`. Each call puts its messages
on a queue that `concurrency` workers drain, one connection per worker.

Failures: a 5xx reply is permanent for that message only; a 4xx reply, a
timeout or a dropped connection is retried with exponential backoff and jitter,
on a fresh connection when the old one is gone, up to `max_attempts`. A
connection that cannot be used at all (authentication refused, bad
certificate, 5xx greeting) fails the rest of the call without retries.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import Field, model_validator

from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, SendResult


class SMTPSettings(BackendSettings):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(30.0, gt=0)
    max_per_connection: int = Field(100, ge=1)
    concurrency: int = Field(4, ge=1, le=100)
    rate_limit: float | None = Field(None, ge=0)
    max_attempts: int = Field(4, ge=1)
    validate_certs: bool = True
    ca_file: Path | None = None
    backoff_base: float = Field(1.0, ge=0)
    local_hostname: str | None = None

    @model_validator(mode="after")
    def _auth_needs_both(self) -> SMTPSettings:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (password_env names the environment variable)")
        return self


class RateLimiter:
    """A token bucket holding one token, refilled `rate` times a second, shared by all workers."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0

    async def wait(self) -> None:
        """Return when the caller may send its next message."""
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        at = max(now, self.next_at)
        self.next_at = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class Transient(Exception):
    """A failure worth retrying (4xx, timeout, lost connection)."""


class Fatal(Exception):
    """A connection that cannot work (authentication, TLS, refused greeting): give up on the call."""


def describe(exc: BaseException) -> str:
    """An SMTP reply as `code text`, anything else as its type and message."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return describe(exc.recipients[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def mail_options(client: aiosmtplib.SMTP, message: OutgoingMessage) -> list[str]:
    """BODY=8BITMIME for 8-bit data, SMTPUTF8 for non-ASCII addresses."""
    options = []
    if not message.data.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if not (message.sender + message.recipient).isascii():
        options.append("SMTPUTF8")
    return options


@dataclass
class Batch:
    """The state of one `send_messages` call inside the event loop."""

    messages: list[OutgoingMessage]
    results: list[SendResult | None]
    queue: asyncio.Queue[tuple[int, int]] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    left: int = 0
    fatal: str | None = None

    def finish(self, index: int, ok: bool, reply: str, permanent: bool = False) -> None:
        self.results[index] = SendResult(self.messages[index].message_id, ok, reply, permanent)
        self.left -= 1
        if not self.left:
            self.done.set()


class SMTPBackend(Backend):
    """Sends over SMTP; see the module docstring for the retry rules."""

    name = "smtp"
    Settings = SMTPSettings

    def __init__(self, settings: SMTPSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._call_lock = threading.Lock()
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._clients: list[aiosmtplib.SMTP | None] = []
        self._used: list[int] = []
        self._limiter = RateLimiter(settings.rate_limit)

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        if self._loop is not None:
            return
        settings = self.settings
        if settings.password_env:
            self._password = os.environ.get(settings.password_env)
            if self._password is None:
                raise DeliveryError(
                    f"delivery.smtp.password_env: the environment variable {settings.password_env} is not set"
                )
        if settings.security != "none":
            self._tls = self._tls_context()
        self._local_hostname = settings.local_hostname or socket.getfqdn()
        self._clients = [None] * settings.concurrency
        self._used = [0] * settings.concurrency
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="newsletter-smtp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self._disconnect_all())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = self._thread = None
            self._password = None

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not messages:
            return []
        with self._call_lock:
            opened_here = self._loop is None
            self.open()
            try:
                return self._run(self._send_all(list(messages)))
            finally:
                if opened_here:
                    self.close()

    def _run(self, coro):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _tls_context(self) -> ssl.SSLContext:
        settings = self.settings
        try:
            context = ssl.create_default_context(cafile=self.resolve(settings.ca_file) if settings.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"delivery.smtp.ca_file: cannot load {settings.ca_file}: {exc}") from exc
        if not settings.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # -- inside the event loop -------------------------------------------------

    async def _send_all(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        batch = Batch(messages, [None] * len(messages), left=len(messages))
        for index in range(len(messages)):
            batch.queue.put_nowait((index, 1))
        workers = [
            asyncio.create_task(self._work(slot, batch))
            for slot in range(min(self.settings.concurrency, len(messages)))
        ]
        try:
            await batch.done.wait()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return batch.results

    async def _work(self, slot: int, batch: Batch) -> None:
        while True:
            index, attempt = await batch.queue.get()
            if batch.fatal:
                batch.finish(index, False, batch.fatal)
                continue
            await self._limiter.wait()
            try:
                reply = await self._send_one(slot, batch.messages[index])
            except Fatal as exc:
                batch.fatal = str(exc)
                batch.finish(index, False, batch.fatal)
            except Transient as exc:
                if attempt >= self.settings.max_attempts:
                    batch.finish(index, False, str(exc))
                else:
                    delay = self.settings.backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                    asyncio.get_running_loop().call_later(delay, batch.queue.put_nowait, (index, attempt + 1))
            except aiosmtplib.SMTPException as exc:
                batch.finish(index, False, describe(exc), permanent=True)
            except ValueError as exc:  # an address aiosmtplib cannot put in an envelope
                batch.finish(index, False, f"invalid address: {exc}", permanent=True)
            else:
                batch.finish(index, True, reply)

    async def _send_one(self, slot: int, message: OutgoingMessage) -> str:
        """Send on this worker's connection; 5xx raise SMTPException, retryable failures raise Transient."""
        client = await self._connection(slot)
        self._used[slot] += 1
        try:
            _, reply = await client.sendmail(
                message.sender, [message.recipient], message.data, mail_options=mail_options(client, message)
            )
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else exc.recipients[0].code
            if code == 421:  # the server is closing this connection
                self._drop(slot)
            if code < 500:
                raise Transient(describe(exc)) from exc
            raise
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            self._drop(slot)
            raise Transient(describe(exc)) from exc
        return f"250 {reply}"

    async def _connection(self, slot: int) -> aiosmtplib.SMTP:
        client = self._clients[slot]
        if client is not None and client.is_connected and self._used[slot] < self.settings.max_per_connection:
            return client
        if client is not None:
            await self._quit(client)
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout,
            use_tls=settings.security == "ssl",
            start_tls=settings.security == "starttls",
            tls_context=self._tls,
            local_hostname=self._local_hostname,
            username=settings.username,
            password=self._password,
        )
        self._clients[slot] = None
        try:
            await client.connect()
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPNotSupported, ssl.SSLError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code < 500:
                raise Transient(describe(exc)) from exc
            raise Fatal(f"{settings.host}:{settings.port}: {describe(exc)}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise Transient(f"{settings.host}:{settings.port}: {describe(exc)}") from exc
        self._clients[slot] = client
        self._used[slot] = 0
        return client

    def _drop(self, slot: int) -> None:
        client, self._clients[slot] = self._clients[slot], None
        if client is not None:
            client.close()

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        if not client.is_connected:
            client.close()
            return
        try:
            await client.quit(timeout=min(self.settings.timeout, 5.0))
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def _disconnect_all(self) -> None:
        clients = [client for client in self._clients if client is not None]
        self._clients = [None] * len(self._clients)
        await asyncio.gather(*(self._quit(client) for client in clients))
