"""`file` backend: one .eml file per message in a directory."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, ResultCallback, SendResult

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
    streams_results = True  # each result as soon as its file is renamed into place
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

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        self.open()
        results = []
        for index, message in enumerate(messages):
            name = eml_name(message)
            try:
                write_atomically(self.dir / name, message.data)
            except OSError as exc:
                result = SendResult(message.message_id, False, f"{self.dir / name}: {exc.strerror or exc}")
            else:
                result = SendResult(message.message_id, True, f"written {self.shown_dir / name}")
            results.append(result)
            if on_result is not None:
                on_result(index, result)
        return results
