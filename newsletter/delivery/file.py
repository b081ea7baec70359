"""`file` backend: one .eml file per message in a directory."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from newsletter.config import display_path
from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, SendResult

UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]+")


class FileSettings(BackendSettings):
    dir: Path = Path("outbox")


def eml_name(message: OutgoingMessage) -> str:
    """`<recipient>-<hash of message id>.eml`, with only safe characters."""
    who = UNSAFE.sub("_", message.recipient).strip("._")[:100] or "unknown"
    digest = hashlib.sha256(message.message_id.encode("utf-8")).hexdigest()[:16]
    return f"{who}-{digest}.eml"


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileBackend(Backend):
    """Writes each message to `<dir>/<recipient>-<hash>.eml`; rewriting the same message replaces its file."""

    name = "file"
    real_mail = False
    Settings = FileSettings

    def __init__(self, settings: FileSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self.shown_dir = settings.dir
        self.dir = self.resolve(settings.dir)

    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{self.dir}: cannot create the outbox directory: {exc.strerror}") from exc

    def destination(self) -> str:
        return display_path(self.dir)

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.open()
        results = []
        for message in messages:
            name = eml_name(message)
            try:
                write_atomically(self.dir / name, message.data)
            except OSError as exc:
                results.append(SendResult(message.message_id, False, f"{self.dir / name}: {exc.strerror or exc}"))
            else:
                results.append(SendResult(message.message_id, True, f"written {self.shown_dir / name}"))
        return results
