"""`mbox` backend: appends every message to one mbox file, under a lock."""

from __future__ import annotations

import mailbox
import time
from collections.abc import Sequence
from pathlib import Path

from newsletter.config import display_path
from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, SendResult


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
    Settings = MboxSettings

    def __init__(self, settings: MboxSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self.path = self.resolve(settings.path)

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{self.path.parent}: cannot create the directory: {exc.strerror}") from exc

    def destination(self) -> str:
        return display_path(self.path)

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.open()
        try:
            box = mailbox.mbox(self.path, create=True)
            box.lock()
        except (OSError, mailbox.Error) as exc:
            reply = f"{self.path}: {getattr(exc, 'strerror', None) or exc}"
            return [SendResult(m.message_id, False, reply) for m in messages]
        results = []
        try:
            for message in messages:
                try:
                    box.add(mbox_entry(message))
                    box.flush()
                except OSError as exc:
                    results.append(SendResult(message.message_id, False, f"{self.path}: {exc.strerror or exc}"))
                else:
                    results.append(SendResult(message.message_id, True, f"appended to {self.settings.path}"))
        finally:
            box.unlock()
            box.close()
        return results
