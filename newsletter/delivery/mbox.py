"""`mbox` backend: appends every message to one mbox file, under a lock."""

from __future__ import annotations

import mailbox
import os
import time
from collections.abc import Sequence
from pathlib import Path

from newsletter.config import display_path
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
    streams_results = True  # results are reported once the chunk is durable
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

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        """Append every message, make the file durable once (one fsync of it and of its directory), then report."""
        self.open()
        try:
            box = mailbox.mbox(self.path, create=True)
            box.lock()
        except (OSError, mailbox.Error) as exc:
            reply = f"{self.path}: {getattr(exc, 'strerror', None) or exc}"
            return self._report([SendResult(m.message_id, False, reply) for m in messages], on_result)
        results = []
        try:
            for message in messages:
                try:
                    box.add(mbox_entry(message))
                except OSError as exc:
                    results.append(SendResult(message.message_id, False, f"{self.path}: {exc.strerror or exc}"))
                else:
                    results.append(SendResult(message.message_id, True, f"appended to {self.settings.path}"))
            try:
                box.flush()  # one write-out and fsync for the chunk
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)  # the file's directory entry, for a file this call created
                finally:
                    os.close(fd)
            except OSError as exc:
                reply = f"{self.path}: cannot make the file durable: {exc.strerror or exc}"
                results = [r if not r.ok else SendResult(r.message_id, False, reply) for r in results]
        finally:
            box.unlock()
            box.close()
        return self._report(results, on_result)

    @staticmethod
    def _report(results: list[SendResult], on_result: ResultCallback | None) -> list[SendResult]:
        if on_result is not None:
            for index, result in enumerate(results):
                on_result(index, result)
        return results
