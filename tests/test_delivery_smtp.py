"""The smtp backend against a real aiosmtpd server on loopback."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from newsletter.delivery import DeliveryError, DeliveryStopped, OutgoingMessage, create_backend
from newsletter.delivery.smtp import RateLimiter, SMTPSettings
from tests.smtp_fixtures import check_password, smtp_factory, smtp_server, tls_cert  # noqa: F401


def make_message(n: int, recipient: str | None = None, body: str = "Hello.") -> OutgoingMessage:
    message_id = f"<msg{n}@example.org>"
    recipient = recipient or f"reader{n}@example.org"
    data = (
        f"From: Papers <papers@example.org>\r\nTo: {recipient}\r\nSubject: Digest {n}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()
    return OutgoingMessage(message_id, "papers@example.org", recipient, data)


AUTH_WITHOUT_TLS = {"auth_required": True, "auth_require_tls": False}


def smtp(server, **options):
    options = {"host": server.host, "port": server.port, "backoff_base": 0.01, "timeout": 5, **options}
    return create_backend("smtp", options, base_dir=Path("."))


def test_many_messages_reuse_few_connections(smtp_server):
    body = ".leading dot\r\n..two dots\r\nFrom here\r\n" + ("x" * 76 + "\r\n") * 30
    messages = [make_message(n, body=body) for n in range(120)]
    with smtp(smtp_server, concurrency=3, max_per_connection=1000) as backend:
        results = backend.send_messages(messages[:60])
        results += backend.send_messages(messages[60:])  # the same connections carry on
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok and r.reply.startswith("250") for r in results)
    sink = smtp_server.sink
    assert sorted(sink.ids()) == sorted(m.message_id for m in messages)
    assert sink.connections <= 3  # at most one per worker, kept from the first call to the second
    by_id = {item.message_id: item for item in sink.received}
    for message in messages:
        received = by_id[message.message_id]
        assert received.mail_from == "papers@example.org"
        assert received.rcpt_tos == [message.recipient]
        assert received.data == message.data  # dot-stuffing undone, bytes intact


def test_max_per_connection_reconnects(smtp_server):
    with smtp(smtp_server, concurrency=1, max_per_connection=5) as backend:
        results = backend.send_messages([make_message(n) for n in range(12)])
    assert all(r.ok for r in results)
    assert smtp_server.sink.connections == 3


def test_send_without_open_opens_and_closes(smtp_server):
    backend = smtp(smtp_server)
    assert backend.send_messages([make_message(1)])[0].ok
    assert backend.send_messages([]) == []
    assert smtp_server.sink.ids() == ["<msg1@example.org>"]


def test_starttls_with_trusted_self_signed_cert(smtp_factory, tls_cert):
    server = smtp_factory(tls_context=tls_cert.server_context(), require_starttls=True)
    with smtp(server, host="localhost", security="starttls", ca_file=str(tls_cert.cert)) as backend:
        results = backend.send_messages([make_message(n) for n in range(3)])
        sock = next(slot.client.sock for slot in backend._slots if slot.client)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # no Nagle stall per message
    assert all(r.ok for r in results), results
    assert len(server.sink.received) == 3


def test_implicit_tls(smtp_factory, tls_cert):
    server = smtp_factory(ssl_context=tls_cert.server_context())
    with smtp(server, host="localhost", security="ssl", ca_file=str(tls_cert.cert)) as backend:
        assert backend.send_messages([make_message(1)])[0].ok
    assert server.sink.ids() == ["<msg1@example.org>"]


def test_ca_file_missing_is_reported_at_open(smtp_server):
    with pytest.raises(DeliveryError, match="delivery.smtp.ca_file: cannot load nowhere.pem"):
        smtp(smtp_server, security="starttls", ca_file="nowhere.pem").open()


def test_starttls_untrusted_cert_stops_the_call_at_once(smtp_factory, tls_cert):
    server = smtp_factory(tls_context=tls_cert.server_context(), require_starttls=True)
    reported = []
    with smtp(server, security="starttls", concurrency=2) as backend:
        with pytest.raises(DeliveryStopped) as info:
            backend.send_messages([make_message(n) for n in range(5)], on_result=lambda i, r: reported.append(r))
    assert "certificate not trusted" in str(info.value) and "ca_file" in str(info.value)
    assert "\n" not in str(info.value)
    assert reported == []  # nothing was attempted: every edition stays pending
    assert server.sink.received == []
    assert server.sink.connections == 1  # the second worker waited for the first handshake, then stopped
def test_implicit_tls_to_a_plain_port_stops(smtp_server):
    with smtp(smtp_server, security="ssl", concurrency=3) as backend:
        with pytest.raises(DeliveryStopped, match="TLS handshake failed.*port and security"):
            backend.send_messages([make_message(n) for n in range(3)])
    assert smtp_server.sink.connections == 1


def test_starttls_without_validation(smtp_factory, tls_cert):
    server = smtp_factory(tls_context=tls_cert.server_context(), require_starttls=True)
    with smtp(server, security="starttls", validate_certs=False) as backend:
        assert backend.send_messages([make_message(1)])[0].ok


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_password_from_environment(smtp_factory, monkeypatch):
    server = smtp_factory(authenticator=check_password(("papers", "s3cret")), **AUTH_WITHOUT_TLS)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with smtp(server, username="papers", password_env="TEST_SMTP_PASSWORD") as backend:
        assert backend.send_messages([make_message(1)])[0].ok
    assert len(server.sink.received) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_stops_after_one_login(smtp_factory, monkeypatch):
    authenticator = check_password(("papers", "s3cret"))
    server = smtp_factory(authenticator=authenticator, **AUTH_WITHOUT_TLS)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    reported = []
    with smtp(server, username="papers", password_env="TEST_SMTP_PASSWORD", concurrency=4) as backend:
        for _ in range(3):  # the pipeline's later chunks: no further login
            with pytest.raises(DeliveryStopped) as info:
                backend.send_messages([make_message(n) for n in range(8)], on_result=lambda i, r: reported.append(r))
    message = str(info.value)
    assert "535" in message and "TEST_SMTP_PASSWORD" in message and "wrong" not in message
    assert authenticator.attempts == 1  # not one per worker, not one per mechanism, not one per chunk
    assert reported == [] and server.sink.received == []
    assert server.sink.connections == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_good_password_logs_in_once_per_connection(smtp_factory, monkeypatch):
    authenticator = check_password(("papers", "s3cret"))
    server = smtp_factory(authenticator=authenticator, **AUTH_WITHOUT_TLS)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with smtp(server, username="papers", password_env="TEST_SMTP_PASSWORD", concurrency=3) as backend:
        assert all(r.ok for r in backend.send_messages([make_message(n) for n in range(30)]))
    assert authenticator.attempts == server.sink.connections <= 3 and authenticator.failures == 0


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_required_but_no_username_stops(smtp_factory):
    server = smtp_factory(**AUTH_WITHOUT_TLS)
    with smtp(server, concurrency=1) as backend, pytest.raises(DeliveryStopped, match="username and password_env"):
        backend.send_messages([make_message(n) for n in range(4)])
    assert server.sink.received == []


def test_starttls_not_offered_stops(smtp_server):
    with smtp(smtp_server, security="starttls", validate_certs=False) as backend:
        with pytest.raises(DeliveryStopped, match="does not offer STARTTLS"):
            backend.send_messages([make_message(1)])
    assert smtp_server.sink.connections == 1


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.5", "mail.localhost.example.org"])
def test_auth_without_tls_to_another_host_is_refused(host):
    options = {"host": host, "username": "papers", "password_env": "SMTP_PASSWORD"}
    with pytest.raises(ValidationError, match="allow_insecure_auth"):
        SMTPSettings.model_validate(options)
    assert SMTPSettings.model_validate({**options, "allow_insecure_auth": True}).allow_insecure_auth
    assert SMTPSettings.model_validate({**options, "security": "starttls"}).username == "papers"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.1.1", "::1", "[::1]"])
def test_auth_without_tls_on_loopback_is_allowed(host):
    SMTPSettings.model_validate({"host": host, "username": "papers", "password_env": "SMTP_PASSWORD"})


def test_missing_password_variable_is_reported_at_open(smtp_server, monkeypatch):
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    backend = smtp(smtp_server, username="papers", password_env="TEST_SMTP_PASSWORD")
    with pytest.raises(DeliveryError, match="environment variable TEST_SMTP_PASSWORD is not set"):
        backend.open()


def test_451_is_retried_and_delivered_once(smtp_server):
    messages = [make_message(n) for n in range(6)]
    smtp_server.sink.defer_once = {"<msg2@example.org>", "<msg4@example.org>"}
    with smtp(smtp_server, concurrency=2) as backend:
        results = backend.send_messages(messages)
    assert all(r.ok for r in results)
    assert [r.attempts for r in results] == [1, 1, 2, 1, 2, 1]
    assert smtp_server.sink.defer_once == set()  # both were answered 451 once
    assert sorted(smtp_server.sink.ids()) == sorted(m.message_id for m in messages)


def test_550_fails_one_recipient_permanently_and_the_rest_go(smtp_server):
    messages = [make_message(n) for n in range(5)]
    smtp_server.sink.reject = {"reader3@example.org": "550 5.1.1 no such user"}
    with smtp(smtp_server, concurrency=1) as backend:
        results = backend.send_messages(messages)
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert results[3].permanent and results[3].reply == "550 5.1.1 no such user"
    assert sorted(smtp_server.sink.ids()) == sorted(m.message_id for i, m in enumerate(messages) if i != 3)
    assert smtp_server.sink.connections == 1  # a refusal does not cost a connection


def test_persistent_4xx_gives_up_after_max_attempts(smtp_server):
    smtp_server.sink.reject = {"reader1@example.org": "452 4.2.2 mailbox full"}
    with smtp(smtp_server, max_attempts=3) as backend:
        result = backend.send_messages([make_message(1)])[0]
    assert not result.ok and not result.permanent and not result.uncertain
    assert result.reply == "452 4.2.2 mailbox full" and result.attempts == 3


def test_connection_dropped_before_the_dot_is_retried_without_loss_or_duplicates(smtp_server):
    messages = [make_message(n) for n in range(40)]
    smtp_server.sink.drop_at_rcpt = {5, 17, 18}
    with smtp(smtp_server, concurrency=2) as backend:
        results = backend.send_messages(messages)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    ids = smtp_server.sink.ids()
    assert len(ids) == len(set(ids)) == 40
    assert smtp_server.sink.connections >= 4  # two workers plus a fresh connection after each drop
    assert sum(r.attempts for r in results) == 43


@pytest.mark.parametrize("knob", ["drop_at", "drop_after_storing"])
def test_connection_dropped_after_the_dot_is_uncertain_and_not_retried(smtp_server, knob):
    messages = [make_message(n) for n in range(10)]
    setattr(smtp_server.sink, knob, {4})
    with smtp(smtp_server, concurrency=1) as backend:
        results = backend.send_messages(messages)
    uncertain = [r for r in results if not r.ok]
    assert len(uncertain) == 1 and uncertain[0].uncertain and not uncertain[0].permanent
    assert uncertain[0].attempts == 1 and "may have the message" in uncertain[0].reply
    assert smtp_server.sink.data_count == 10  # the uncertain one was not sent again
    ids = smtp_server.sink.ids()
    assert len(ids) == len(set(ids)) == (10 if knob == "drop_after_storing" else 9)


def test_late_reply_after_the_dot_is_one_copy_and_uncertain(smtp_server):
    messages = [make_message(n) for n in range(6)]
    smtp_server.sink.late_at = {3: 1.5}
    with smtp(smtp_server, concurrency=2, final_reply_timeout=0.5, max_attempts=4) as backend:
        results = backend.send_messages(messages)
    assert [r.uncertain for r in results].count(True) == 1
    late = next(r for r in results if r.uncertain)
    assert not late.ok and late.attempts == 1 and "0.5 s" in late.reply
    ids = smtp_server.sink.ids()
    assert sorted(ids) == sorted(m.message_id for m in messages)  # every message once: the late one too
    assert all(r.ok for r in results if not r.uncertain)


def test_the_final_reply_is_waited_for_longer_than_commands(smtp_server):
    smtp_server.sink.late_all = 0.6
    with smtp(smtp_server, concurrency=1, timeout=0.2, final_reply_timeout=5) as backend:
        results = backend.send_messages([make_message(n) for n in range(2)])
    assert all(r.ok and r.attempts == 1 for r in results), results
    assert smtp_server.sink.connections == 1


def test_results_stream_from_the_workers_as_the_server_answers(smtp_server):
    messages = [make_message(n) for n in range(5)]
    seen = []

    def on_result(index, result):
        seen.append((index, result, len(smtp_server.sink.received)))

    with smtp(smtp_server, concurrency=1) as backend:
        assert backend.streams_results
        results = backend.send_messages(messages, on_result=on_result)
    assert [index for index, _, _ in seen] == [0, 1, 2, 3, 4]
    assert [result for _, result, _ in seen] == results
    assert [received for _, _, received in seen] == [1, 2, 3, 4, 5]  # each reported before the next was sent


def test_a_failing_callback_stops_sending(smtp_server):
    def on_result(index, result):
        raise RuntimeError("ledger down")

    with smtp(smtp_server, concurrency=1) as backend, pytest.raises(RuntimeError, match="ledger down"):
        backend.send_messages([make_message(n) for n in range(5)], on_result=on_result)
    assert len(smtp_server.sink.received) == 1


def test_server_down_fails_after_retries(smtp_server):
    from tests.smtp_fixtures import free_port

    backend = create_backend(
        "smtp", {"port": free_port(), "host": "127.0.0.1", "backoff_base": 0.001, "max_attempts": 2}, base_dir=Path(".")
    )
    with backend:
        results = backend.send_messages([make_message(1), make_message(2)])
    assert [(r.ok, r.permanent) for r in results] == [(False, False)] * 2
    assert "127.0.0.1" in results[0].reply


def test_rate_limit_spaces_messages():
    limiter = RateLimiter(50)
    times = []
    for _ in range(6):
        limiter.wait()
        times.append(time.monotonic())
    assert all(t - times[0] >= k * 0.02 - 0.001 for k, t in enumerate(times))  # never ahead of schedule


def test_rate_limit_applies_across_connections(smtp_server):
    start = time.monotonic()
    with smtp(smtp_server, concurrency=4, rate_limit=100) as backend:
        assert all(r.ok for r in backend.send_messages([make_message(n) for n in range(21)]))
    assert time.monotonic() - start >= 0.19  # 20 gaps of 10 ms, whatever the number of connections


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"port": 0}, "port"),
        ({"security": "tls"}, "security"),
        ({"username": "me"}, "username and password_env"),
        ({"password_env": "hunter2!", "username": "me"}, "name of an environment variable"),
        ({"pasword_env": "X"}, "pasword_env"),
    ],
)
def test_settings_are_validated(options, field):
    with pytest.raises(ValidationError) as info:
        SMTPSettings.model_validate(options)
    assert field in str(info.value)


def test_connection_closed_while_idle_is_replaced_without_using_an_attempt(smtp_factory, monkeypatch):
    from newsletter.delivery import smtp as smtp_module

    monkeypatch.setattr(smtp_module, "IDLE_PROBE_SECONDS", 0.05)
    server = smtp_factory(timeout=0.2)  # aiosmtpd drops connections idle for 0.2 s
    with smtp(server, concurrency=1, max_attempts=1) as backend:
        assert backend.send_messages([make_message(1)])[0].ok
        time.sleep(0.4)
        assert backend.send_messages([make_message(2)])[0].ok
    assert server.sink.connections == 2


def test_8bit_body_and_utf8_address(smtp_factory):
    server = smtp_factory()
    plain, utf8 = make_message(1, body="Grüße, voilà"), make_message(2, recipient="jürgen@example.org")
    with smtp(server) as backend:
        results = backend.send_messages([plain, utf8])
    assert all(r.ok for r in results), results
    by_id = {item.message_id: item for item in server.sink.received}
    assert by_id[plain.message_id].data == plain.data
    assert "BODY=8BITMIME" in by_id[plain.message_id].mail_options
    assert by_id[utf8.message_id].rcpt_tos == ["jürgen@example.org"]


def test_utf8_address_without_smtputf8_fails_permanently(smtp_factory):
    server = smtp_factory(enable_SMTPUTF8=False)
    with smtp(server) as backend:
        result, = backend.send_messages([make_message(2, recipient="jürgen@example.org")])
    assert not result.ok and result.permanent and "SMTPUTF8" in result.reply


def test_unexpected_error_fails_that_message_only(smtp_server, monkeypatch, caplog):
    from newsletter.delivery.smtp import PhasedSMTP

    real_sendmail = PhasedSMTP.sendmail

    def sendmail(self, sender, recipients, data, **kwargs):
        if recipients == ["reader1@example.org"]:
            raise RuntimeError("boom")
        return real_sendmail(self, sender, recipients, data, **kwargs)

    monkeypatch.setattr(PhasedSMTP, "sendmail", sendmail)
    with smtp(smtp_server, concurrency=2) as backend:
        results = backend.send_messages([make_message(n) for n in range(4)])
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].reply == "internal error: RuntimeError: boom" and not results[1].permanent
    assert "unexpected error sending <msg1@example.org>" in caplog.text
