"""Choosing backends by name, including a third-party one installed through an entry point."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from newsletter.delivery import (
    BUILTIN_BACKENDS,
    ENTRY_POINT_GROUP,
    Backend,
    UnknownBackend,
    available_backends,
    create_backend,
    get_backend_class,
)
from newsletter.delivery.smtp import SMTPBackend


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed distribution `acme-backends` (a dist-info directory on sys.path) with three entry points."""
    (tmp_path / "acme_backends.py").write_text(
        textwrap.dedent(
            """
            from newsletter.delivery.base import Backend, BackendSettings, SendResult

            class AcmeSettings(BackendSettings):
                region: str = "eu"

            class AcmeBackend(Backend):
                name = "acme"
                Settings = AcmeSettings

                def send_messages(self, messages):
                    return [SendResult(m.message_id, True, f"acme {self.settings.region}") for m in messages]

            def helper():
                pass
            """
        )
    )
    dist_info = tmp_path / "acme_backends-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-backends\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "acme = acme_backends:AcmeBackend\n"
        "broken = acme_missing_module:Nope\n"
        "helper = acme_backends:helper\n"
        "smtp = acme_backends:AcmeBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "acme_backends", raising=False)
    return tmp_path


def test_builtins():
    assert set(BUILTIN_BACKENDS) == {"smtp", "file", "mbox", "console", "memory"}
    assert get_backend_class("smtp") is SMTPBackend
    for name, cls in BUILTIN_BACKENDS.items():
        assert issubclass(cls, Backend) and cls.name == name


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownBackend) as info:
        get_backend_class("smpt")
    assert str(info.value) == "unknown backend 'smpt' (choose one of: console, file, mbox, memory, smtp)"
    assert isinstance(info.value, ValueError)


def test_plugin_from_entry_point(plugin, caplog):
    with caplog.at_level(logging.WARNING, logger="newsletter.delivery"):
        backends = available_backends()
    assert backends["acme"].__module__ == "acme_backends"
    assert backends["smtp"] is SMTPBackend  # a plugin cannot replace a built-in
    assert "broken" not in backends and "helper" not in backends
    log = caplog.text
    assert "'broken' (acme_missing_module:Nope) failed to load: ModuleNotFoundError" in log
    assert "'helper' (acme_backends:helper) ignored: not a Backend subclass" in log
    assert "'smtp' (acme_backends:AcmeBackend) ignored: the name is taken by a built-in" in log

    backend = create_backend("acme", {"region": "us"}, base_dir=Path("."))
    from newsletter.delivery import OutgoingMessage

    assert backend.send_messages([OutgoingMessage("<1@x>", "a@x", "b@x", b"")])[0].reply == "acme us"
    with pytest.raises(UnknownBackend, match=r"choose one of: acme, console, file, mbox, memory, smtp\)"):
        get_backend_class("nope")


def test_create_backend_validates_options(tmp_path):
    backend = create_backend("file", {"dir": "mail"}, base_dir=tmp_path)
    assert backend.dir == tmp_path / "mail"
    with pytest.raises(ValidationError) as info:
        create_backend("smtp", {"port": "many"}, base_dir=tmp_path)
    error = info.value.errors()[0]
    assert error["loc"] == ("port",)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        create_backend("console", {"colour": True}, base_dir=tmp_path)
