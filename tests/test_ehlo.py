"""The EHLO name: `local_hostname`, else this machine's FQDN, else the address literal, never `localhost`."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller

from newsletter.delivery import OutgoingMessage, create_backend
from newsletter.delivery.smtp import address_literal, host_name
from tests.smtp_fixtures import free_port


class Greetings:
    def __init__(self):
        self.names = []

    async def handle_DATA(self, server, session, envelope):
        self.names.append(session.host_name)
        return "250 OK"


@pytest.fixture
def greeted():
    handler = Greetings()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def send_one(controller, tmp_path, **options) -> None:
    backend = create_backend("smtp", {"host": "127.0.0.1", "port": controller.port, "security": "none", **options},
                             base_dir=tmp_path)
    message = OutgoingMessage(message_id="<1@x>", sender="a@example.org", recipient="b@example.org",
                              data=b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nhi\r\n")
    with backend:
        assert all(result.ok for result in backend.send_messages([message]))


def test_configured_name_is_used(greeted, tmp_path):
    controller, handler = greeted
    send_one(controller, tmp_path, local_hostname="mail.example.org")
    assert handler.names == ["mail.example.org"]


@pytest.mark.parametrize("fqdn, expected", [("localhost", None), ("vm", None), ("localhost.localdomain", None),
                                            ("box.example.org", "box.example.org")])
def test_without_a_real_name_it_greets_with_the_address_literal(greeted, tmp_path, monkeypatch, fqdn, expected):
    controller, handler = greeted
    monkeypatch.setattr(socket, "getfqdn", lambda *a: fqdn)
    assert host_name() == expected
    send_one(controller, tmp_path)
    assert handler.names == [expected or "[127.0.0.1]"]
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
