"""DKIM: our signer, checked by dkimpy (an implementation nobody here wrote), through every way out of the app."""

from __future__ import annotations

import email
import stat
from datetime import date
from email import policy
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed
from starlette.testclient import TestClient

from newsletter.config import ConfigError, DkimSection, load_config
from newsletter.dkim_signing import DkimError, Signer, generate_key, parse_key, relaxed_body, verify
from newsletter.message import build_message, make_message_id
from newsletter.pipeline import EditionBuilder
from tests.conftest import DAY, run_cli
from tests.smtp_fixtures import smtp_factory, smtp_server  # noqa: F401

REQUIRED = {"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post",
            "mime-version", "content-type"}


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key(request):
    return parse_key(generate_key(request.param), "test key")


def signer(key) -> Signer:
    return Signer(DkimSection(domain="example.org", selector="news", private_key_file="unused.pem"), key)


def message(**overrides) -> bytes:
    values = dict(
        sender="Papers Daily <news@example.org>", to_name="Zoë Ada", to_email="ada@example.org",
        subject="3 new papers · 25 Nov 2026 — ünïcode", html="<p>Héllo</p>\n" * 300, text="Héllo  world \n\n\n",
        message_id=make_message_id("ada@example.org", date(2026, 11, 25), "example.org"),
        unsubscribe_url="https://news.example.org/unsubscribe?token=abc.def",
        list_name="Papers Daily", list_id="news.example.org", unsubscribe_mailto="unsubscribe@example.org",
        feedback_id="digest:papers",
    )
    values.update(overrides)
    return build_message(**values)


def dkimpy_verify(data: bytes, key) -> bool:
    """dkimpy's own verify, the DNS answer served from memory for news._domainkey.example.org only."""
    def dns(name, timeout=5):
        return key.dns_record().encode() if name.rstrip(b".") == b"news._domainkey.example.org" else None

    return dkim.verify(data, dnsfunc=dns)


def test_signature_verifies_with_dkimpy_and_covers_the_required_headers(key):
    signed = signer(key).sign(message())
    assert dkimpy_verify(signed, key)
    result = verify(signed, key, "example.org", "news")
    assert result.ok, result.detail
    assert REQUIRED | {"feedback-id"} <= set(result.signed)
    parsed = email.message_from_bytes(signed, policy=policy.default)
    assert parsed["DKIM-Signature"].startswith("v=1; a=" + key.algorithm.decode())
    assert "c=relaxed/relaxed" in parsed["DKIM-Signature"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        lambda m: m.replace(b"token=abc.def", b"token=evil.def"),
        lambda m: m.replace(b"List-Id: ", b"List-Id: x"),
        lambda m: m.replace(b"\r\nSubject: ", b"\r\nSubject: Re: "),
        lambda m: m.replace(b"\r\nFrom: ", b"\r\nFrom: evil@example.com\r\nFrom: "),  # a second From (oversigned)
        lambda m: m.replace(b"\r\nTo: ", b"\r\nSubject: added\r\nTo: "),  # a second Subject
        lambda m: m.replace(b"Content-Type: multipart/alternative", b"Content-Type: multipart/mixed"),
        lambda m: m[:-200] + b"A" + m[-199:],  # one body character
    ],
    ids=["unsubscribe-post", "unsubscribe-url", "list-id", "subject", "second-from", "second-subject", "content-type", "body"],
)
def test_any_change_to_a_signed_part_breaks_the_signature(key, tamper):
    signed = signer(key).sign(message())
    changed = tamper(signed)
    assert changed != signed
    assert not dkimpy_verify(changed, key)
    assert not verify(changed, key, "example.org", "news").ok


def test_survives_what_relaxed_canonicalisation_allows(key):
    signed = signer(key).sign(message())
    refolded = signed.replace(b"\r\nSubject: ", b"\r\nSubject:   ").replace(b"\r\nDate: ", b"\r\ndate:\t")
    assert dkimpy_verify(refolded, key)


def test_wrong_key_or_selector_fails(key):
    signed = signer(key).sign(message())
    other = parse_key(generate_key(key.kind), "other")
    assert not verify(signed, other, "example.org", "news").ok
    assert "key is for" in verify(signed, key, "example.org", "other").detail
    assert not verify(message(), key, "example.org", "news").ok  # unsigned


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"\r\n\r\n", b"a  b \r\n\r\n\r\n", b"a\tb", b"x\r\n \r\n", b"a \r\nb", b"tail", b"a\r\n\t\r\n\r\nb\r\n"],
)
def test_body_canonicalisation_matches_dkimpy(body):
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


def test_key_formats_and_bad_keys(tmp_path):
    ed = parse_key(generate_key("ed25519"), "k")
    assert parse_key(ed.private, "seed").public == ed.public  # dkimpy's base64 seed form also loads
    with pytest.raises(DkimError, match="bad.pem: cannot read the private key"):
        parse_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "bad.pem")
    with pytest.raises(DkimError, match="not a PEM private key"):
        parse_key(b"hello", "x")
    with pytest.raises(DkimError, match="rsa or ed25519"):
        generate_key("dsa")


def dkim_config(example_dir: Path, table: str) -> Path:
    path = example_dir / "config.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + table, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "table, problem",
    [
        ('[dkim]\ndomain = "example.org"\nselector = "s"\n', "set exactly one of private_key_file"),
        ('[dkim]\ndomain = "example.org"\nselector = "s"\nprivate_key_file = "k"\nprivate_key_env = "K"\n', "exactly one"),
        ('[dkim]\ndomain = "other.net"\nselector = "s"\nprivate_key_file = "k"\n', "does not align with the From domain"),
        ('[dkim]\ndomain = "example.org"\nselector = "s"\nprivate_key_file = "k"\nalgo = "rsa"\n', "dkim.algo: unknown key"),
    ],
)
def test_config_problems_are_one_line(example_dir, table, problem):
    path = dkim_config(example_dir, table)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert len(raised.value.problems) == 1 and problem in raised.value.problems[0]


def test_keygen_then_send_then_check_through_the_cli(example_dir, kind="rsa"):
    made = run_cli("dkim", "keygen", "--domain", "example.org", "--selector", "news", "--type", kind, cwd=example_dir)
    assert made.returncode == 0, made.stderr
    key_file = example_dir / "dkim-news.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = parse_key(key_file.read_bytes(), "k")
    zone = next(line for line in made.stdout.splitlines() if " IN TXT " in line)
    record = "".join(zone.split('"')[1::2])  # the zone line's strings, joined
    assert record == key.dns_record() and f"k={kind}" in record
    assert 'news._domainkey.example.org. IN TXT' in made.stdout
    before = key_file.read_bytes()
    again = run_cli("dkim", "keygen", "--domain", "example.org", "--selector", "news", cwd=example_dir)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert key_file.read_bytes() == before

    dkim_config(example_dir, '[dkim]\ndomain = "example.org"\nselector = "news"\nprivate_key_file = "dkim-news.pem"\n')
    sent = run_cli("send", cwd=example_dir)
    assert sent.returncode == 0, sent.stderr
    outbox = sorted((example_dir / "outbox").glob("*.eml"))
    assert len(outbox) == 3
    for path in outbox:
        assert dkimpy_verify(path.read_bytes(), key)
    checked = run_cli("dkim", "check", cwd=example_dir)
    assert checked.returncode == 0, checked.stderr
    assert "DKIM ok" in checked.stdout and "list-unsubscribe-post" in checked.stdout
    checked = run_cli("dkim", "check", "--eml", str(outbox[0]), cwd=example_dir)
    assert checked.returncode == 0, checked.stderr

    # a key that is not the one published: check fails with one line and exit 1
    other = example_dir / "other.pem"
    other.write_bytes(generate_key(kind))
    (example_dir / "config.toml").write_text(
        (example_dir / "config.toml").read_text().replace('"dkim-news.pem"', '"other.pem"'))
    failed = run_cli("dkim", "check", "--eml", str(outbox[0]), cwd=example_dir)
    assert failed.returncode == 1 and "DKIM fails" in failed.stderr and "Traceback" not in failed.stderr


def test_key_from_the_environment_and_missing_key(example_dir):
    pem = generate_key("ed25519")  # and the Ed25519 path through the CLI
    dkim_config(example_dir, '[dkim]\ndomain = "example.org"\nselector = "news"\nprivate_key_env = "TEST_DKIM_KEY"\n')
    missing = run_cli("send", cwd=example_dir, env={"TEST_DKIM_KEY": ""})
    assert missing.returncode == 2 and "TEST_DKIM_KEY is not set" in missing.stderr and "Traceback" not in missing.stderr
    sent = run_cli("send", cwd=example_dir, env={"TEST_DKIM_KEY": pem.decode()})
    assert sent.returncode == 0, sent.stderr
    key = parse_key(pem, "env")
    assert all(dkimpy_verify(p.read_bytes(), key) for p in (example_dir / "outbox").glob("*.eml"))


def test_missing_key_file_is_one_line(example_dir):
    dkim_config(example_dir, '[dkim]\ndomain = "example.org"\nselector = "news"\nprivate_key_file = "nope.pem"\n')
    result = run_cli("render", "-s", "ada@example.org", "-o", "x.eml", cwd=example_dir)
    assert result.returncode == 2 and "nope.pem: cannot read the DKIM key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def signed_config(example_dir):
    (example_dir / "k.pem").write_bytes(generate_key("rsa"))
    dkim_config(example_dir, '[dkim]\ndomain = "example.org"\nselector = "news"\nprivate_key_file = "k.pem"\n')
    config = load_config(example_dir / "config.toml")
    return config, parse_key((example_dir / "k.pem").read_bytes(), "k")


def test_smtp_backend_delivers_signed_bytes(signed_config, smtp_server, monkeypatch):
    from newsletter.store import Store
    from newsletter.pipeline import run_edition
    from newsletter.config import load_subscribers
    from newsletter.app import ingest_paths

    config, key = signed_config
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret")
    config.model.delivery.backend = "smtp"
    config.model.delivery.__pydantic_extra__["smtp"] = {"host": smtp_server.host, "port": smtp_server.port, "security": "none"}
    with Store(config.store_url) as store:
        ingest_paths(store, config.input_paths(), format="auto", page_date=config.model.sources.page_date, on_warning=print)
        summary = run_edition(config, store, load_subscribers(config.subscribers_dir).subscribers,
                              day=date(2024, 12, 11), skip_empty=False)
    assert summary.sent == 3
    assert len(smtp_server.sink.received) == 3
    for received in smtp_server.sink.received:
        assert dkimpy_verify(received.data, key)


def test_preview_eml_is_the_signed_message(signed_config, store):
    from newsletter.models import Subscriber
    from newsletter.preview import create_app

    config, key = signed_config
    builder = EditionBuilder(config, store)
    subscribers = [Subscriber(email="reader@example.org", name="Reader")]  # trending: picks from the 30 papers
    web = create_app(
        list_subscribers=lambda: subscribers,
        build_edition=lambda email, day: builder.edition(next(s for s in subscribers if s.email == email), day),
        suppress=lambda email: True, secret_key=builder.key, preview=True,
    )
    subscriber = subscribers[0]
    response = TestClient(web).get(f"/s/{subscriber.email}/eml?date={DAY.isoformat()}")
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"DKIM-Signature: ")
    assert dkimpy_verify(response.content, key)


def test_without_dkim_nothing_is_signed_but_list_id_is_there(config, store):
    builder = EditionBuilder(config, store)
    from newsletter.models import Subscriber

    _, data = builder.build(Subscriber(email="x@example.org", name="X"), DAY, builder.select(Subscriber(email="x@example.org"), DAY))
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert parsed["DKIM-Signature"] is None
    assert parsed["List-Id"] == "Papers digest <digest.example.org>"
