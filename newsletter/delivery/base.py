"""The delivery interface: messages in, one result per message out.

A backend only moves bytes; the ledger (what is pending, sent or failed) belongs
to the pipeline. `send_messages` never raises for a per-message failure; it
returns a `SendResult` for every message, in order. Problems that make a
backend unusable as a whole (a missing password variable, an unwritable
directory) raise `DeliveryError` from `open()`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class DeliveryError(Exception):
    """A backend cannot be used at all (bad setup, not a per-message failure)."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One email ready to go: envelope addresses plus the whole RFC 5322 message (CRLF)."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True)
class SendResult:
    """What happened to one message; `permanent` failures must not be retried."""

    message_id: str
    ok: bool
    reply: str
    permanent: bool = False


class BackendSettings(BaseModel):
    """Options under `[delivery.<name>]`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(abc.ABC):
    """Base class: open, send many, close; also a context manager."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = BackendSettings

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

    @abc.abstractmethod
    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send every message; one `SendResult` per message, in the same order."""

    def __enter__(self) -> Backend:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
