"""`console` backend: prints each message, for trying things out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from newsletter.delivery.base import Backend, BackendSettings, OutgoingMessage, ResultCallback, SendResult

RULE = "-" * 79


class ConsoleBackend(Backend):
    """Writes every message (envelope, then the message text) to `stream`, stdout by default."""

    name = "console"
    real_mail = False
    streams_results = True
    Settings = BackendSettings

    def __init__(self, settings: BackendSettings, *, base_dir: Path, stream: TextIO | None = None) -> None:
        super().__init__(settings, base_dir=base_dir)
        self.stream = stream

    def destination(self) -> str:
        return "the console (standard output)"

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        stream = self.stream or sys.stdout
        results = []
        for index, message in enumerate(messages):
            text = message.data.decode("utf-8", errors="replace").replace("\r\n", "\n")
            stream.write(f"{RULE}\nMAIL FROM: {message.sender}\nRCPT TO: {message.recipient}\n\n{text}")
            stream.write("\n" if text.endswith("\n") else "\n\n")
            stream.flush()
            results.append(SendResult(message.message_id, True, "printed"))
            if on_result is not None:
                on_result(index, results[-1])
        return results
