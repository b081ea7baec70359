"""`memory` backend: keeps messages in a list, for tests and embedders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from newsletter.delivery.base import Backend, BackendSettings, OutgoingMessage, ResultCallback, SendResult


class MemorySettings(BackendSettings):
    fail_recipients: frozenset[str] = frozenset()  # answered "550", a permanent failure
    defer_recipients: frozenset[str] = frozenset()  # answered "451", a temporary failure


class MemoryBackend(Backend):
    """Appends every accepted message to `MemoryBackend.outbox`, one list shared by all instances.

    Clear it with `MemoryBackend.outbox.clear()`. Recipients listed in the
    settings are refused instead, so a pipeline's failure paths can be tested.
    """

    name = "memory"
    real_mail = False
    streams_results = True
    Settings = MemorySettings
    outbox: ClassVar[list[OutgoingMessage]] = []

    def destination(self) -> str:
        return "MemoryBackend.outbox"

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        results = []
        for index, message in enumerate(messages):
            if message.recipient in self.settings.fail_recipients:
                result = SendResult(message.message_id, False, "550 mailbox unavailable", permanent=True)
            elif message.recipient in self.settings.defer_recipients:
                result = SendResult(message.message_id, False, "451 try again later")
            else:
                self.outbox.append(message)
                result = SendResult(message.message_id, True, "250 kept in memory")
            results.append(result)
            if on_result is not None:
                on_result(index, result)
        return results
