"""`mbox` backend: appends every message to one mbox file, under a lock."""

from __future__ import annotations

import mailbox
import time
from collections.abc import Sequence
from pathlib import Path

from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, ResultCallback, SendResult


class MboxSettings(BackendSettings):
    path: Path = Path("outbox.mbox")


def mbox_entry(message: OutgoingMessage) -> bytes:
    """The message with a `From <sender> <date>` separator line and LF line endings."""
    from_line = f"From {message.sender or 'MAILER-DAEMON'} {time.asctime(time.gmtime())}\n"
    return from_line.encode("utf-8") + message.data.replace(b"\r\n", b"\n")


class MboxBackend(Backend):
    """Appends to `path` (mboxo: body lines starting with `From ` are quoted as `>From `)."""

    name = "mbox"
    real_mail = False
    streams_results = True  # each result once its entry is flushed to the file
    Settings = MboxSettings

    def __init__(self, settings: MboxSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self.path = self.resolve(settings.path)

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{self.path.parent}: cannot create the directory: {exc.strerror}") from exc

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        self.open()
        report = on_result or (lambda index, result: None)
        try:
            box = mailbox.mbox(self.path, create=True)
            box.lock()
        except (OSError, mailbox.Error) as exc:
            reply = f"{self.path}: {getattr(exc, 'strerror', None) or exc}"
            results = [SendResult(m.message_id, False, reply) for m in messages]
            for index, result in enumerate(results):
                report(index, result)
            return results
        results = []
        try:
            for index, message in enumerate(messages):
                try:
                    box.add(mbox_entry(message))
                    box.flush()
                except OSError as exc:
                    result = SendResult(message.message_id, False, f"{self.path}: {exc.strerror or exc}")
                else:
                    result = SendResult(message.message_id, True, f"appended to {self.settings.path}")
                results.append(result)
                report(index, result)
        finally:
            box.unlock()
            box.close()
        return results
