"""`smtp` backend: several reused connections at once, under a rate limit, with retries.

Built on `smtplib` and a pool of `concurrency` threads, one connection per
thread (measured: about half the client CPU of aiosmtplib per message, see
benchmarks/bench_smtp.py). Connections are made on first use and kept from one
`send_messages` call to the next until `close()`; a connection is replaced after
`max_per_connection` messages, and one idle for a while is probed with NOOP
before reuse.

Failures: a 5xx reply is permanent for that message only; a 4xx reply, a
timeout or a dropped connection is retried with exponential backoff and jitter,
on a fresh connection when the old one is gone, up to `max_attempts`. A
connection that cannot be used at all (authentication refused, bad
certificate, 5xx greeting) fails the rest of the call without retries.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from newsletter.config import ENV_NAME
from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, SendResult

log = logging.getLogger(__name__)

IDLE_PROBE_SECONDS = 5.0  # a connection idle longer than this gets a NOOP before reuse


class SMTPSettings(BackendSettings):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None
    timeout: float = Field(30.0, gt=0)
    max_per_connection: int = Field(100, ge=1)
    concurrency: int = Field(4, ge=1, le=100)
    rate_limit: float | None = Field(None, ge=0)
    max_attempts: int = Field(4, ge=1)
    validate_certs: bool = True
    ca_file: Path | None = None
    backoff_base: float = Field(1.0, ge=0)
    local_hostname: str | None = None

    @field_validator("password_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(
                "must be the name of an environment variable holding the password (upper case, e.g. SMTP_PASSWORD), "
                "not the password itself"
            )
        return value

    @model_validator(mode="after")
    def _auth_needs_both(self) -> SMTPSettings:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (password_env names the environment variable)")
        return self


class RateLimiter:
    """A token bucket holding one token, refilled `rate` times a second, shared by all threads."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        """Return when the caller may send its next message."""
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


class Transient(Exception):
    """A failure worth retrying (4xx, timeout, lost connection)."""


class Fatal(Exception):
    """A connection that cannot work (authentication, TLS, refused greeting): give up on the call."""


def describe(exc: BaseException) -> str:
    """An SMTP reply as `code text`, anything else as its type and message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return f"{code} {text.decode('utf-8', 'replace')}"
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{exc.smtp_code} {text}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def reply_code(exc: smtplib.SMTPException) -> int | None:
    """The SMTP reply code carried by an smtplib exception, if any."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return next(iter(exc.recipients.values()))[0]
    return getattr(exc, "smtp_code", None)


class Batch:
    """One `send_messages` call: the jobs (ready time, index, attempt) and the results, under one condition."""

    def __init__(self, messages: list[OutgoingMessage]) -> None:
        self.messages = messages
        self.results: list[SendResult | None] = [None] * len(messages)
        self.jobs = [(0.0, index, 1) for index in range(len(messages))]
        self.left = len(messages)
        self.fatal: str | None = None
        self.cond = threading.Condition()

    def take(self) -> tuple[int, int] | None:
        """The next job that is due, waiting for retries to come due; None when all are finished."""
        with self.cond:
            while True:
                if not self.left:
                    return None
                if self.jobs:
                    delay = self.jobs[0][0] - time.monotonic()
                    if delay <= 0 or self.fatal:
                        _, index, attempt = heapq.heappop(self.jobs)
                        return index, attempt
                    self.cond.wait(delay)
                else:
                    self.cond.wait()

    def retry(self, index: int, attempt: int, delay: float) -> None:
        with self.cond:
            heapq.heappush(self.jobs, (time.monotonic() + delay, index, attempt))
            self.cond.notify()

    def finish(self, index: int, ok: bool, reply: str, permanent: bool = False) -> None:
        with self.cond:
            self.results[index] = SendResult(self.messages[index].message_id, ok, reply, permanent)
            self.left -= 1
            if not self.left:
                self.cond.notify_all()

    def give_up(self, reply: str) -> None:
        """Fail everything not yet sent (a fatal connection problem or an interrupt)."""
        with self.cond:
            self.fatal = self.fatal or reply
            self.cond.notify_all()


class Slot:
    """One thread's connection and how much it has been used."""

    def __init__(self) -> None:
        self.client: smtplib.SMTP | None = None
        self.used = 0
        self.last_used = 0.0


class SMTPBackend(Backend):
    """Sends over SMTP; see the module docstring for the retry rules."""

    name = "smtp"
    Settings = SMTPSettings

    def __init__(self, settings: SMTPSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self._pool: ThreadPoolExecutor | None = None
        self._slots: list[Slot] = []
        self._call_lock = threading.RLock()
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._limiter = RateLimiter(settings.rate_limit)

    def destination(self) -> str:
        security = {"none": "", "starttls": ", STARTTLS", "ssl": ", TLS"}[self.settings.security]
        return f"{self.settings.host}:{self.settings.port} (SMTP{security})"

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        if self._pool is not None:
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
        self._slots = [Slot() for _ in range(settings.concurrency)]
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="newsletter-smtp")

    def close(self) -> None:
        with self._call_lock:
            if self._pool is None:
                return
            for slot in self._slots:
                self._quit(slot)
            self._pool.shutdown()
            self._pool = None
            self._password = None

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not messages:
            return []
        with self._call_lock:
            opened_here = self._pool is None
            self.open()
            try:
                batch = Batch(list(messages))
                workers = [self._pool.submit(self._work, slot, batch) for slot in self._slots[: len(messages)]]
                try:
                    wait(workers)
                except BaseException:
                    batch.give_up("interrupted")
                    raise
                for worker in workers:
                    worker.result()  # re-raise a bug in a worker instead of returning holes
                return batch.results
            finally:
                if opened_here:
                    self.close()

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

    # -- in the worker threads -------------------------------------------------

    def _work(self, slot: Slot, batch: Batch) -> None:
        while (job := batch.take()) is not None:
            index, attempt = job
            if batch.fatal:
                batch.finish(index, False, batch.fatal)
                continue
            self._limiter.wait()
            try:
                reply = self._send_one(slot, batch.messages[index])
            except Fatal as exc:
                batch.give_up(str(exc))
                batch.finish(index, False, str(exc))
            except Transient as exc:
                if attempt >= self.settings.max_attempts:
                    batch.finish(index, False, str(exc))
                else:
                    delay = self.settings.backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                    batch.retry(index, attempt + 1, delay)
            except smtplib.SMTPException as exc:
                batch.finish(index, False, describe(exc), permanent=True)
            except Exception as exc:  # a bug must not leave the batch waiting for this message forever
                log.exception("unexpected error sending %s", batch.messages[index].message_id)
                self._drop(slot)
                batch.finish(index, False, f"internal error: {describe(exc)}")
            else:
                batch.finish(index, True, reply)

    def _send_one(self, slot: Slot, message: OutgoingMessage) -> str:
        """Send on this slot's connection; 5xx raise SMTPException, retryable failures raise Transient."""
        client = self._connection(slot)
        slot.used += 1
        options = []
        if not (message.sender + message.recipient).isascii():
            options.append("SMTPUTF8")
        if not message.data.isascii() and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            client.sendmail(message.sender, [message.recipient], message.data, mail_options=options)
            code, text = client.last_data_reply
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
            code = reply_code(exc)
            if code == 421:  # the server is closing this connection
                self._drop(slot)
            if code < 500:
                raise Transient(describe(exc)) from exc
            raise
        except smtplib.SMTPNotSupportedError:  # e.g. SMTPUTF8 needed: permanent, unlike other OSErrors
            raise
        except OSError as exc:  # includes SMTPServerDisconnected and timeouts
            self._drop(slot)
            raise Transient(describe(exc)) from exc
        finally:
            slot.last_used = time.monotonic()
        return f"{code} {text.decode('utf-8', 'replace')}"

    def _connection(self, slot: Slot) -> smtplib.SMTP:
        if slot.client is not None and slot.used < self.settings.max_per_connection:
            if time.monotonic() - slot.last_used < IDLE_PROBE_SECONDS or self._alive(slot.client):
                return slot.client
        self._quit(slot)
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        try:
            if settings.security == "ssl":
                client = DataReplySMTP_SSL(
                    settings.host, settings.port, self._local_hostname, timeout=settings.timeout, context=self._tls
                )
            else:
                client = DataReplySMTP(settings.host, settings.port, self._local_hostname, timeout=settings.timeout)
        except smtplib.SMTPResponseException as exc:
            raise (Transient if exc.smtp_code < 500 else Fatal)(f"{where}: {describe(exc)}") from exc
        except ssl.SSLError as exc:
            raise Fatal(f"{where}: {describe(exc)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(f"{where}: {describe(exc)}") from exc
        try:
            # Without this, the last TLS record of a message waits for a delayed ACK (~40 ms) under Nagle.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.ehlo_or_helo_if_needed()  # learn the extensions (8BITMIME) before the first message
            if settings.security == "starttls":
                client.starttls(context=self._tls)
            if settings.username:
                client.login(settings.username, self._password)
        except (smtplib.SMTPServerDisconnected, socket.timeout, ConnectionError) as exc:
            client.close()
            raise Transient(f"{where}: {describe(exc)}") from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            client.close()
            code = reply_code(exc) if isinstance(exc, smtplib.SMTPException) else None
            raise (Transient if code is not None and code < 500 else Fatal)(f"{where}: {describe(exc)}") from exc
        slot.client, slot.used, slot.last_used = client, 0, time.monotonic()
        return client

    @staticmethod
    def _alive(client: smtplib.SMTP) -> bool:
        try:
            return client.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _drop(self, slot: Slot) -> None:
        client, slot.client = slot.client, None
        if client is not None:
            client.close()

    def _quit(self, slot: Slot) -> None:
        client, slot.client = slot.client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


class DataReplyMixin:
    """Keeps the server's reply to the end of DATA, which `smtplib.SMTP.sendmail` drops."""

    last_data_reply: tuple[int, bytes] = (0, b"")

    def data(self, msg):
        self.last_data_reply = super().data(msg)
        return self.last_data_reply


class DataReplySMTP(DataReplyMixin, smtplib.SMTP):
    pass


class DataReplySMTP_SSL(DataReplyMixin, smtplib.SMTP_SSL):
    pass
