"""`file` backend: one .eml file per message in a directory.

Each file is written under a temporary name and renamed into place; the files of
one `send_messages` call (a chunk) are then made durable together, with one
syncfs (or an fsync per file and one of the directory where there is none),
and only then reported: one flush per chunk instead of one per message. A run
first deletes the temporary files of writers that died mid-write.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from newsletter.config import display_path
from newsletter.delivery.base import Backend, BackendSettings, DeliveryError, OutgoingMessage, ResultCallback, SendResult
from newsletter.processes import pid_gone

UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]+")


class FileSettings(BackendSettings):
    dir: Path = Path("outbox")


def eml_name(message: OutgoingMessage) -> str:
    """`<recipient>-<hash of message id>.eml`, with only safe characters."""
    who = UNSAFE.sub("_", message.recipient).strip("._")[:100] or "unknown"
    digest = hashlib.sha256(message.message_id.encode("utf-8")).hexdigest()[:16]
    return f"{who}-{digest}.eml"


TEMPORARY = ".tmp-"  # + the writer's pid + "-" + the file's name


def write_replacing(directory: str, name: str, data: bytes) -> str:
    """Write to a temporary file in `directory`, then rename it over `name` there (not yet durable: see
    sync_files); the file's path. Plain strings: a Path per file cost more than its write."""
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f"{TEMPORARY}{os.getpid()}-{name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files of writers that died before renaming them (a `kill -9` mid-write)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            pid = entry.name[len(TEMPORARY):].partition("-")[0] if entry.name.startswith(TEMPORARY) else ""
            if pid.isdigit() and pid_gone(int(pid)):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:  # another run cleaned it first
                    pass


def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which makes a whole filesystem durable in one call, if this libc has it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


SYNCFS = _syncfs()


def sync_files(directory: Path, paths: Sequence[str]) -> None:
    """Make files written and renamed into `directory` durable: one syncfs of its filesystem (data,
    inodes and the directory entries at once), else an fsync of each file and one of the directory."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        if SYNCFS is not None and SYNCFS(fd) == 0:
            return
        for path in paths:
            file_fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(file_fd)
            finally:
                os.close(file_fd)
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBackend(Backend):
    """Writes each message to `<dir>/<recipient>-<hash>.eml`; rewriting the same message replaces its file."""

    name = "file"
    real_mail = False
    streams_results = True  # results are reported once the chunk's files are durable
    Settings = FileSettings

    def __init__(self, settings: FileSettings, *, base_dir: Path) -> None:
        super().__init__(settings, base_dir=base_dir)
        self.shown_dir = settings.dir
        self.dir = self.resolve(settings.dir)
        self._cleaned = False

    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not self._cleaned:  # once per run: what a crashed run left half-written
                remove_stale_temporaries(self.dir)
                self._cleaned = True
        except OSError as exc:
            raise DeliveryError(f"{self.dir}: cannot create the outbox directory: {exc.strerror}") from exc

    def destination(self) -> str:
        return display_path(self.dir)

    def send_messages(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback | None = None) -> list[SendResult]:
        """Write and rename every file, make them all durable at once, then report: a result
        says `ok` only for a file that a crash can no longer take back."""
        self.open()
        results, written = [], []
        directory, shown = str(self.dir), str(self.shown_dir)
        for message in messages:
            name = eml_name(message)
            try:
                written.append(write_replacing(directory, name, message.data))
            except OSError as exc:
                results.append(SendResult(message.message_id, False, f"{os.path.join(directory, name)}: {exc.strerror or exc}"))
            else:
                results.append(SendResult(message.message_id, True, f"written {name if shown == '.' else os.path.join(shown, name)}"))
        if written:
            try:
                sync_files(self.dir, written)
            except OSError as exc:
                reply = f"{self.dir}: cannot make the files durable: {exc.strerror or exc}"
                results = [r if not r.ok else SendResult(r.message_id, False, reply) for r in results]
        if on_result is not None:
            for index, result in enumerate(results):
                on_result(index, result)
        return results
