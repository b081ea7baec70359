"""`smtp` backend: several reused connections at once, under a rate limit, with retries.

Built on `smtplib` and a pool of `concurrency` threads, one connection per
thread (measured: about half the client CPU of aiosmtplib per message, see
benchmarks/bench_smtp.py). Connections are made on first use and kept from one
`send_messages` call to the next until `close()`; a connection is replaced after
`max_per_connection` messages, and one idle for a while is probed with NOOP
before reuse. Each result is reported (`on_result`) from the worker thread as
soon as the server has answered.

Timeouts follow RFC 5321 §4.5.3.2 in spirit: a failure before the final "."
costs nothing but a retry, so connecting and commands have short timeouts,
while the reply to the final "." is waited for long (10 minutes by default):
the server may be filtering the message, and giving up there is what makes
duplicates.

Failures:
- a 5xx reply is permanent for that message only;
- a 4xx reply, a timeout or a dropped connection *before* the final "." is
  retried with exponential backoff and jitter, on a fresh connection when the
  old one is gone, up to `max_attempts`;
- a timeout or a dropped connection *after* the final "." is `uncertain` (the
  server may have the message): never retried;
- what no retry can fix (authentication refused, a TLS failure, the server
  refusing us) stops the whole call: nothing more is attempted and
  `DeliveryStopped` says what to fix. Until one login has succeeded, only one
  connection at a time tries to log in, and a login that fails in any way
  stops the run: a wrong password costs one failed login, not one per chunk.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import random
import re
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
from newsletter.delivery.base import (
    Backend,
    BackendSettings,
    DeliveryError,
    DeliveryStopped,
    OutgoingMessage,
    ResultCallback,
    SendResult,
)

log = logging.getLogger(__name__)

IDLE_PROBE_SECONDS = 5.0  # a connection idle longer than this gets a NOOP before reuse
AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")  # in order of preference; exactly one is tried per login


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (no DNS lookup: `localhost` or a loopback address)."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name() -> str | None:
    """This machine's fully qualified name for EHLO, or None when it has none (only `localhost`, or no dot).

    Receivers score an EHLO of `localhost` as spam-like; RFC 5321 says to greet with the
    address literal (`[192.0.2.1]`) then, which the connection supplies (`address_literal`).
    """
    name = socket.getfqdn().strip(".")
    if "." not in name or name.split(".")[0] in ("localhost", "localhost6") or name.endswith(".localdomain"):
        return None
    return name


def address_literal(address: str) -> str:
    """`[192.0.2.1]` or `[IPv6:2001:db8::1]`: the EHLO name of a host without one (RFC 5321 4.1.3)."""
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


class SMTPSettings(BackendSettings):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None
    allow_insecure_auth: bool = False  # AUTH over a plain connection to a host other than this machine
    connect_timeout: float = Field(30.0, gt=0)  # TCP connect, TLS handshake and the 220 greeting
    timeout: float = Field(30.0, gt=0)  # the reply to each command (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, NOOP)
    data_timeout: float = Field(180.0, gt=0)  # sending the message itself (RFC 5321: 3 minutes a block)
    final_reply_timeout: float = Field(600.0, gt=0)  # the reply to the final "." (RFC 5321: 10 minutes)
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

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> SMTPSettings:
        if self.username and self.security == "none" and not self.allow_insecure_auth and not is_loopback(self.host):
            raise ValueError(
                f'allow_insecure_auth: username with security = "none" would send the password in clear to '
                f'{self.host}; use security = "starttls" (port 587) or "ssl" (port 465), '
                "or set allow_insecure_auth = true if the network is trusted"
            )
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
    """A failure before the final "." worth retrying (4xx, timeout, lost connection)."""


class Uncertain(Exception):
    """No reply to the final ".": the server may have the message."""


class Stop(Exception):
    """What no retry can fix (authentication, TLS, the server refusing us): stop the whole run."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """An SMTP reply as `code text`, anything else as its type and message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return f"{code} {one_line(text.decode('utf-8', 'replace'))}"
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{exc.smtp_code} {one_line(text)}"
    return f"{type(exc).__name__}: {one_line(str(exc))}" if str(exc) else type(exc).__name__


def reply_code(exc: smtplib.SMTPException) -> int | None:
    """The SMTP reply code carried by an smtplib exception, if any."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return next(iter(exc.recipients.values()))[0]
    return getattr(exc, "smtp_code", None)


class Batch:
    """One `send_messages` call: the jobs (ready time, index, attempt) and the results, under one condition."""

    def __init__(self, messages: list[OutgoingMessage], on_result: ResultCallback | None) -> None:
        self.messages = messages
        self.on_result = on_result
        self.results: list[SendResult | None] = [None] * len(messages)
        self.jobs = [(0.0, index, 1) for index in range(len(messages))]
        self.left = len(messages)
        self.stopped: str | None = None  # why no further message may be started
        self.error: BaseException | None = None  # raised by on_result: the caller cannot follow, so stop
        self.cond = threading.Condition()

    def take(self) -> tuple[int, int] | None:
        """The next job that is due, waiting for retries to come due; None when finished or stopped."""
        with self.cond:
            while True:
                if not self.left or self.stopped:
                    return None
                if self.jobs:
                    delay = self.jobs[0][0] - time.monotonic()
                    if delay <= 0:
                        _, index, attempt = heapq.heappop(self.jobs)
                        return index, attempt
                    self.cond.wait(delay)
                else:
                    self.cond.wait()

    def retry(self, index: int, attempt: int, delay: float) -> None:
        with self.cond:
            heapq.heappush(self.jobs, (time.monotonic() + delay, index, attempt))
            self.cond.notify()

    def finish(self, index: int, result: SendResult) -> None:
        """Record one message's outcome and report it at once."""
        with self.cond:
            self.results[index] = result
            self.left -= 1
            if not self.left:
                self.cond.notify_all()
        if self.on_result is not None:
            try:
                self.on_result(index, result)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                with self.cond:
                    self.error = self.error or exc
                self.stop("the caller failed to record a result")

    def stop(self, reason: str) -> None:
        """Start no further message (a stop, an interrupt); those in flight finish."""
        with self.cond:
            self.stopped = self.stopped or reason
            self.cond.notify_all()


class Slot:
    """One thread's connection and how much it has been used."""

    def __init__(self) -> None:
        self.client: PhasedSMTP | None = None
        self.used = 0
        self.last_used = 0.0


class SMTPBackend(Backend):
    """Sends over SMTP; see the module docstring for the timeout, retry and stop rules."""

    name = "smtp"
    Settings = SMTPSettings
    streams_results = True

    def __init__(self, settings: SMTPSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self._pool: ThreadPoolExecutor | None = None
        self._slots: list[Slot] = []
        self._call_lock = threading.RLock()
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._limiter = RateLimiter(settings.rate_limit)
        self._first_login = threading.Lock()  # until a connection has worked, one connection attempt at a time
        self._proven = False  # a connection (TLS, login) has worked in this run
        self._stopped: str | None = None  # why this run cannot send at all; sticky until close()

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
        self._local_hostname = settings.local_hostname or host_name()  # None: the address literal, per connection
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
            self._proven, self._stopped = False, None

    def send_messages(
        self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        with self._call_lock:
            opened_here = self._pool is None
            self.open()
            try:
                if self._stopped:
                    raise DeliveryStopped(self._stopped)
                batch = Batch(list(messages), on_result)
                workers = [self._pool.submit(self._work, slot, batch) for slot in self._slots[: len(messages)]]
                try:
                    wait(workers)
                except BaseException:
                    batch.stop("interrupted")
                    raise
                for worker in workers:
                    worker.result()  # re-raise a bug in a worker instead of returning holes
                if batch.error is not None:
                    raise batch.error
                if self._stopped:
                    raise DeliveryStopped(self._stopped)
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
            message = batch.messages[index]
            self._limiter.wait()
            try:
                reply = self._send_one(slot, message)
            except Stop as exc:  # this message was not sent: it gets no result
                self._stopped = self._stopped or str(exc)
                batch.stop(str(exc))
            except Uncertain as exc:
                batch.finish(index, SendResult(message.message_id, False, str(exc), uncertain=True, attempts=attempt))
            except Transient as exc:
                if attempt >= self.settings.max_attempts:
                    batch.finish(index, SendResult(message.message_id, False, str(exc), attempts=attempt))
                else:
                    delay = self.settings.backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                    batch.retry(index, attempt + 1, delay)
            except smtplib.SMTPException as exc:
                batch.finish(
                    index, SendResult(message.message_id, False, describe(exc), permanent=True, attempts=attempt)
                )
            except Exception as exc:  # a bug must not leave the batch waiting for this message forever
                log.exception("unexpected error sending %s", message.message_id)
                self._drop(slot)
                reply = f"internal error: {describe(exc)}"
                batch.finish(index, SendResult(message.message_id, False, reply, attempts=attempt))
            else:
                batch.finish(index, SendResult(message.message_id, True, reply, attempts=attempt))

    def _send_one(self, slot: Slot, message: OutgoingMessage) -> str:
        """Send on this slot's connection; 5xx raise SMTPException, the other outcomes their own exceptions."""
        client = self._connection(slot)
        slot.used += 1
        options = []
        if not (message.sender + message.recipient).isascii():
            options.append("SMTPUTF8")
        if not message.data.isascii() and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        client.past_dot = False
        try:
            client.sendmail(message.sender, [message.recipient], message.data, mail_options=options)
            code, text = client.last_data_reply
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
            code = reply_code(exc)
            if code == 421:  # the server is closing this connection
                self._drop(slot)
            if code == 530:  # "authentication required" / "must issue STARTTLS first": true of every message
                raise Stop(
                    f"{self.destination()}: {describe(exc)}: the server wants a login or TLS before mail; "
                    "set [delivery.smtp] username and password_env, or security"
                ) from exc
            if code < 500:
                raise Transient(describe(exc)) from exc
            raise
        except smtplib.SMTPNotSupportedError:  # e.g. SMTPUTF8 needed: permanent, unlike other OSErrors
            raise
        except OSError as exc:  # includes SMTPServerDisconnected and timeouts
            self._drop(slot)
            if client.past_dot:
                raise Uncertain(
                    f"no reply to the final '.' ({describe(exc)}, waited up to "
                    f"{self.settings.final_reply_timeout:g} s): the server may have the message"
                ) from exc
            raise Transient(describe(exc)) from exc
        finally:
            slot.last_used = time.monotonic()
        return f"{code} {one_line(text.decode('utf-8', 'replace'))}"

    def _connection(self, slot: Slot) -> PhasedSMTP:
        if slot.client is not None and slot.used < self.settings.max_per_connection:
            if time.monotonic() - slot.last_used < IDLE_PROBE_SECONDS or self._alive(slot.client):
                return slot.client
        self._quit(slot)
        if self._proven:
            client = self._connect()
        else:
            with self._first_login:  # the others wait to see whether this setup works at all
                if self._stopped:
                    raise Stop(self._stopped)
                client = self._connect()
                self._proven = True
        slot.client, slot.used, slot.last_used = client, 0, time.monotonic()
        return client

    def _connect(self) -> PhasedSMTP:
        """A new connection, secured and logged in as configured."""
        settings = self.settings
        where = self.destination()
        try:
            if settings.security == "ssl":
                client = PhasedSMTP_SSL(
                    settings.host, settings.port, self._local_hostname,
                    timeout=settings.connect_timeout, context=self._tls,
                )
            else:
                client = PhasedSMTP(settings.host, settings.port, self._local_hostname, timeout=settings.connect_timeout)
        except smtplib.SMTPResponseException as exc:  # the greeting was not 220
            if exc.smtp_code < 500:
                raise Transient(f"{where}: {describe(exc)}") from exc
            raise Stop(f"{where}: the server refuses us: {describe(exc)}") from exc
        except ssl.SSLError as exc:
            raise self._tls_failure(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(f"{where}: {describe(exc)}") from exc
        client.set_timeouts(settings.timeout, settings.data_timeout, settings.final_reply_timeout)
        if self._local_hostname is None:
            client.local_hostname = address_literal(client.sock.getsockname()[0])
        try:
            # Without this, the last TLS record of a message waits for a delayed ACK (~40 ms) under Nagle.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.ehlo_or_helo_if_needed()  # learn the extensions (8BITMIME) before the first message
            if settings.security == "starttls":
                if not client.has_extn("starttls"):
                    raise Stop(
                        f"{where}: the server does not offer STARTTLS; check [delivery.smtp] port and security "
                        '("starttls" is usually port 587, "ssl" port 465)'
                    )
                client.starttls(context=self._tls)
                client.set_timeouts(settings.timeout, settings.data_timeout, settings.final_reply_timeout)
            if settings.username:
                self._login(client)
        except Stop:
            client.close()
            raise
        except ssl.SSLError as exc:
            client.close()
            raise self._tls_failure(exc) from exc
        except (smtplib.SMTPServerDisconnected, socket.timeout, ConnectionError) as exc:
            client.close()
            raise Transient(f"{where}: {describe(exc)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            client.close()
            code = reply_code(exc) if isinstance(exc, smtplib.SMTPException) else None
            if code is not None and code < 500:
                raise Transient(f"{where}: {describe(exc)}") from exc
            raise Stop(f"{where}: {describe(exc)}") from exc
        return client

    def _login(self, client: PhasedSMTP) -> None:
        """One AUTH exchange with one mechanism (smtplib's `login` tries each offered one: three failed logins)."""
        settings = self.settings
        where = self.destination()
        if not client.has_extn("auth"):
            hint = ' (many servers offer it only over TLS: set security = "starttls")' if settings.security == "none" else ""
            raise Stop(f"{where}: the server offers no AUTH{hint}; or remove username and password_env")
        offered = client.esmtp_features["auth"].upper().split()
        mechanism = next((name for name in AUTH_MECHANISMS if name in offered), None)
        if mechanism is None:
            raise Stop(f"{where}: no AUTH mechanism in common (the server offers {' '.join(offered)})")
        client.user, client.password = settings.username, self._password
        authobject = getattr(client, "auth_" + mechanism.lower().replace("-", "_"))
        try:
            client.auth(mechanism, authobject)
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code in (534, 535) or exc.smtp_code >= 500 or not self._proven:
                raise Stop(
                    f"{where}: login as {settings.username!r} refused ({describe(exc)}); check the password in "
                    f"${settings.password_env} and [delivery.smtp] username"
                ) from exc
            raise Transient(f"{where}: {describe(exc)}") from exc
        except OSError as exc:
            if not self._proven:  # the password went out and no answer came: trying again risks a lockout
                raise Stop(
                    f"{where}: no answer to AUTH ({describe(exc)}); stopped rather than repeat a login that may be "
                    "failing: check the server and the password, then run again"
                ) from exc
            raise

    def _tls_failure(self, exc: ssl.SSLError) -> Exception:
        """A TLS error: a certificate or protocol problem stops the run; a connection closed mid-handshake is retried."""
        where = self.destination()
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return Transient(f"{where}: {describe(exc)}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Stop(
                f"{where}: TLS certificate not trusted ({one_line(exc.verify_message or str(exc))}): set [delivery.smtp] "
                "ca_file to the server's CA, or host to the name on its certificate"
            )
        return Stop(
            f"{where}: TLS handshake failed ({describe(exc)}); check [delivery.smtp] port and security "
            '("ssl" is usually port 465, "starttls" port 587)'
        )

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


LEADING_DOT = re.compile(rb"(?m)^\.")


class PhasedMixin:
    """smtplib with a timeout per phase of DATA; keeps the reply to the final "." and whether it went out."""

    command_timeout = data_timeout = final_reply_timeout = None
    past_dot = False  # the final "." was handed to the network: from here, no reply means "maybe delivered"
    last_data_reply: tuple[int, bytes] = (0, b"")

    def set_timeouts(self, command: float, data: float, final_reply: float) -> None:
        self.command_timeout, self.data_timeout, self.final_reply_timeout = command, data, final_reply
        self.sock.settimeout(command)

    def data(self, msg: bytes) -> tuple[int, bytes]:
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        block = LEADING_DOT.sub(b"..", msg)
        if not block.endswith(b"\r\n"):
            block += b"\r\n"
        self.sock.settimeout(self.data_timeout)
        self.send(block + b".\r\n")
        self.past_dot = True
        self.sock.settimeout(self.final_reply_timeout)
        self.last_data_reply = self.getreply()
        self.sock.settimeout(self.command_timeout)
        return self.last_data_reply


class PhasedSMTP(PhasedMixin, smtplib.SMTP):
    pass


class PhasedSMTP_SSL(PhasedMixin, smtplib.SMTP_SSL):
    pass
