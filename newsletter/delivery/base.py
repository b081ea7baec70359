"""The delivery interface: messages in, one result per message out.

A backend only moves bytes; the ledger (what is pending, sent or failed) belongs
to the pipeline. `send_messages` never raises for a per-message failure; it
returns a `SendResult` for every message, in order. Problems that make a
backend unusable as a whole (a missing password variable, an unwritable
directory) raise `DeliveryError` from `open()`.

Results stream: a backend whose `streams_results` is True calls
`on_result(index, result)` as soon as it knows a message's outcome (SMTP 250,
file renamed and synced), possibly from its own threads, so the ledger can
follow the wire. A backend that returns only the list (a third-party plugin
written before this) keeps working: the pipeline records its results when the
call returns.

A failure that no retry can fix (authentication refused, a TLS failure) raises
`DeliveryStopped` from `send_messages`, after reporting every result known so
far; messages without a result were not attempted.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class DeliveryError(Exception):
    """A backend cannot be used at all (bad setup, not a per-message failure)."""


class DeliveryStopped(DeliveryError):
    """Stop the whole run now: what failed will fail for every message (e.g. 535 authentication failed)."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One email ready to go: envelope addresses plus the whole RFC 5322 message (CRLF)."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True)
class SendResult:
    """What happened to one message; `permanent` failures must not be retried.

    `uncertain`: the server may have the message (a timeout or a lost connection
    after the final "."); it must not be retried blindly. `attempts`: how many
    times the backend tried this message in the call (retries included).
    """

    message_id: str
    ok: bool
    reply: str
    permanent: bool = False
    uncertain: bool = False
    attempts: int = 1


ResultCallback = Callable[[int, SendResult], None]


class BackendSettings(BaseModel):
    """Options under `[delivery.<name>]`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(abc.ABC):
    """Base class: open, send many, close; also a context manager."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = BackendSettings
    # True when messages reach real people: such a backend needs the signing secret and a public base_url.
    # A plugin is taken to deliver real mail unless it says otherwise.
    real_mail: ClassVar[bool] = True
    # True when send_messages calls on_result for each message as soon as its outcome is known
    streams_results: ClassVar[bool] = False

    def __init__(self, settings: BaseModel, *, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = Path(base_dir)

    def resolve(self, path: Path | str) -> Path:
        """A configured path, relative to the config file's directory."""
        return self.base_dir / Path(path).expanduser()

    def open(self) -> None:
        """Acquire resources (connections, files); idempotent."""

    def close(self) -> None:
        """Release resources; idempotent."""

    def destination(self) -> str:
        """Where messages go, in words, for the run's summary (e.g. `outbox/`, `smtp.example.org:587`)."""
        return self.name

    @abc.abstractmethod
    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        """Send every message; one `SendResult` per message, in the same order.

        With `streams_results`, also call `on_result(index, result)` for each as soon as it is known.
        """

    def __enter__(self) -> Backend:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
