"""The local backends: file, mbox, console, memory."""

from __future__ import annotations

import email
import email.policy
import io
import mailbox
import os
from pathlib import Path

import pytest

from newsletter.delivery import DeliveryError, OutgoingMessage, create_backend
from newsletter.delivery.file import eml_name
from newsletter.delivery.memory import MemoryBackend


def make_message(n: int, recipient: str | None = None) -> OutgoingMessage:
    message_id = f"<msg{n}.x/y@example.org>"
    recipient = recipient or f"reader{n}@example.org"
    data = (
        f"From: Papers <papers@example.org>\r\nTo: {recipient}\r\nSubject: Digest {n}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"Bonjour lecteur {n}, voilà.\r\nFrom the desk of the editor.\r\n.\r\n"
    ).encode()
    return OutgoingMessage(message_id, "bounces@example.org", recipient, data)


def test_file_writes_one_eml_per_message(tmp_path):
    messages = [make_message(n) for n in range(5)] + [make_message(9, recipient="../../etc/passwd\x00@evil")]
    with create_backend("file", {"dir": "out/box"}, base_dir=tmp_path) as backend:
        results = backend.send_messages(messages)
    outbox = tmp_path / "out" / "box"
    files = sorted(outbox.iterdir())
    assert len(files) == 6
    assert not [f for f in files if not f.name.endswith(".eml") or f.name.startswith(".")]  # no temp files left
    for message, result in zip(messages, results):
        assert result.ok and result.message_id == message.message_id
        path = outbox / eml_name(message)
        assert result.reply == f"written {Path('out/box') / path.name}"
        assert path.read_bytes() == message.data
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert parsed["Message-ID"] == message.message_id
        assert "voilà" in parsed.get_content()
    assert all(f.parent == outbox and set(f.name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._+@-_") for f in files)


def test_file_run_removes_what_a_writer_killed_mid_write_left_but_not_a_live_writers_files(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    stale = outbox / f".tmp-{dead.pid}-reader1@example.org-0123456789abcdef.eml"
    live = outbox / f".tmp-{os.getppid()}-reader2@example.org-0123456789abcdef.eml"  # a writer still at work
    for path in (stale, live):
        path.write_bytes(b"half a messa")
    with create_backend("file", {"dir": "outbox"}, base_dir=tmp_path) as backend:
        backend.send_messages([make_message(1)])
    assert not stale.exists() and live.exists()
    assert [f.name for f in outbox.iterdir() if not f.name.startswith(".")] == [eml_name(make_message(1))]


def test_file_rewrite_replaces_and_names_differ_per_message(tmp_path):
    backend = create_backend("file", {}, base_dir=tmp_path)
    first, second = make_message(1), make_message(2, recipient="reader1@example.org")
    backend.send_messages([first, first, second])
    assert len(list((tmp_path / "outbox").iterdir())) == 2
    assert eml_name(first) != eml_name(second)


def test_file_failure_is_per_message(tmp_path, monkeypatch):
    backend = create_backend("file", {}, base_dir=tmp_path)
    real_replace = os.replace

    def replace(src, dst):
        if "reader1" in str(dst):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    results = backend.send_messages([make_message(0), make_message(1), make_message(2)])
    assert [r.ok for r in results] == [True, False, True]
    assert "No space left on device" in results[1].reply
    assert len(list((tmp_path / "outbox").iterdir())) == 2  # the temp file of the failed one is gone


def test_file_unusable_directory_raises_at_open(tmp_path):
    (tmp_path / "outbox").write_text("a file, not a directory")
    with pytest.raises(DeliveryError, match="cannot create the outbox directory"):
        create_backend("file", {}, base_dir=tmp_path).open()


def test_mbox_is_readable_by_mailbox(tmp_path):
    messages = [make_message(n) for n in range(4)]
    with create_backend("mbox", {"path": "mail/out.mbox"}, base_dir=tmp_path) as backend:
        assert all(r.ok for r in backend.send_messages(messages[:2]))
        assert all(r.ok for r in backend.send_messages(messages[2:]))
    box = mailbox.mbox(tmp_path / "mail" / "out.mbox")
    stored = list(box)
    assert [m["Message-ID"] for m in stored] == [m.message_id for m in messages]
    assert stored[0].get_from().startswith("bounces@example.org ")
    body = stored[1].get_payload(decode=True).decode()
    assert "voilà" in body and ">From the desk" in body  # mboxo quoting
    assert not (tmp_path / "mail" / "out.mbox.lock").exists()


def test_console_prints_every_message():
    stream = io.StringIO()
    backend = create_backend("console", {}, base_dir=Path("."))
    backend.stream = stream
    results = backend.send_messages([make_message(1), make_message(2)])
    assert all(r.ok for r in results)
    text = stream.getvalue()
    assert text.count("RCPT TO: reader") == 2 and "Subject: Digest 2" in text and "voilà" in text
    assert "\r" not in text


def test_console_defaults_to_stdout(capsys):
    create_backend("console", {}, base_dir=Path(".")).send_messages([make_message(3)])
    assert "Subject: Digest 3" in capsys.readouterr().out


def test_memory_keeps_messages_and_refuses_listed_recipients():
    MemoryBackend.outbox.clear()
    backend = create_backend(
        "memory", {"fail_recipients": ["reader1@example.org"], "defer_recipients": ["reader2@example.org"]},
        base_dir=Path("."),
    )
    with backend:
        results = backend.send_messages([make_message(n) for n in range(4)])
    assert [(r.ok, r.permanent) for r in results] == [(True, False), (False, True), (False, False), (True, False)]
    assert results[1].reply.startswith("550") and results[2].reply.startswith("451")
    assert [m.recipient for m in MemoryBackend.outbox] == ["reader0@example.org", "reader3@example.org"]
    assert backend.outbox is MemoryBackend.outbox  # visible even when someone else made the instance
    MemoryBackend.outbox.clear()


def test_file_chunk_is_made_durable_once_before_any_result(tmp_path, monkeypatch):
    from newsletter.delivery import file as file_module

    events = []
    real_sync = file_module.sync_files

    def sync_files(directory, paths):
        events.append(("sync", sorted(p.name for p in directory.iterdir())))
        real_sync(directory, paths)

    monkeypatch.setattr(file_module, "sync_files", sync_files)
    backend = create_backend("file", {}, base_dir=tmp_path)
    messages = [make_message(n) for n in range(5)]
    results = backend.send_messages(messages, on_result=lambda index, result: events.append(("result", index)))
    assert backend.streams_results and all(r.ok for r in results)
    assert events[0] == ("sync", sorted(eml_name(m) for m in messages))  # every file renamed into place first
    assert events[1:] == [("result", n) for n in range(5)]


@pytest.mark.parametrize("with_syncfs", [True, False])
def test_file_sync_without_syncfs_fsyncs_each_file_and_the_directory(tmp_path, monkeypatch, with_syncfs):
    from newsletter.delivery import file as file_module

    if not with_syncfs:
        monkeypatch.setattr(file_module, "SYNCFS", None)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    backend = create_backend("file", {}, base_dir=tmp_path)
    backend.send_messages([make_message(n) for n in range(3)])
    if with_syncfs and file_module.SYNCFS is not None:
        assert synced == []  # one syncfs did it all
    else:
        outbox = str(tmp_path / "outbox")
        assert len(synced) == 4 and synced[-1] == outbox and all(p.startswith(outbox + "/") for p in synced[:3])


def test_file_sync_failure_fails_the_chunk(tmp_path, monkeypatch):
    from newsletter.delivery import file as file_module

    def broken(directory, paths):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(file_module, "sync_files", broken)
    reported = []
    results = create_backend("file", {}, base_dir=tmp_path).send_messages(
        [make_message(0), make_message(1)], on_result=lambda index, result: reported.append(result))
    assert reported == results and not any(r.ok for r in results)
    assert "cannot make the files durable: Input/output error" in results[0].reply


def test_mbox_chunk_is_flushed_once(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    reported = []
    with create_backend("mbox", {}, base_dir=tmp_path) as backend:
        results = backend.send_messages([make_message(n) for n in range(20)], on_result=lambda i, r: reported.append(i))
    assert all(r.ok for r in results) and reported == list(range(20))
    assert len(calls) == 2  # the mbox file and its directory, for the whole chunk
    assert len(mailbox.mbox(tmp_path / "outbox.mbox")) == 20
