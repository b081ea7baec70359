"""Feedback links: signed per subscriber, paper and choice; a confirmation page, then a POST; stored;
listed by `newsletter feedback`; changing the next edition. End to end through `send` and `serve`."""

from __future__ import annotations

import email
import json
import re
from html import unescape
import shutil
import socket
import subprocess
import sys
import time
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from newsletter.feedback import feedback_links, feedback_url, make_feedback_token, verify_feedback_token
from newsletter.models import Paper
from newsletter.preview import create_app
from newsletter.store import Store
from newsletter.unsubscribe import make_token, verify_token
from tests.conftest import REPO, run_cli

KEY = b"k" * 32


def test_tokens_bind_subscriber_paper_and_choice():
    token = make_feedback_token("ada@example.org", "2401.00001", "more", KEY)
    assert verify_feedback_token(token, KEY) == ("ada@example.org", "2401.00001", "more")
    address, paper, kind, mac = token.split(".")
    other = make_feedback_token("bob@example.org", "t:abc", "fewer", KEY).split(".")
    for forged in (
        f"{other[0]}.{paper}.{kind}.{mac}",  # someone else's address
        f"{address}.{other[1]}.{kind}.{mac}",  # another paper
        f"{address}.{paper}.fewer.{mac}",  # the other choice
        f"{address}.{paper}.{kind}.{mac[:-2]}",
        f"{address}.{paper}.{kind}.{mac}=",
        token + ".x", "", "....", "a.b.more.c",
    ):
        assert verify_feedback_token(forged, KEY) is None, forged
    assert verify_feedback_token(token, b"another key") is None
    # an unsubscribe token is no feedback token, and a feedback signature is no unsubscribe one
    assert verify_feedback_token(make_token("ada@example.org", KEY), KEY) is None
    assert verify_token(f"{address}.{mac}", KEY) is None
    with pytest.raises(ValueError):
        make_feedback_token("ada@example.org", "x", "maybe", KEY)


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.add_papers([Paper.create("A <b>bold</b> paper", arxiv_id="2401.00001")])
        yield store


def app_for(store: Store, preview: bool = False):
    return create_app(
        list_subscribers=lambda: [], build_edition=lambda e, d: None, suppress=lambda e: None, secret_key=KEY,
        preview=preview, record_feedback=store.add_feedback,
        paper_title=lambda paper_id: getattr(store.get_papers([paper_id]).get(paper_id), "title", None),
    )


def test_confirmation_page_then_post_records_the_click(store: Store):
    client = TestClient(app_for(store))
    path = urlsplit(feedback_url("http://x", "Ada@Example.org", "2401.00001", "more", KEY))
    page = client.get(f"{path.path}?{path.query}")
    assert page.status_code == 200 and "More like this?" in page.text
    assert "A &lt;b&gt;bold&lt;/b&gt; paper" in page.text  # a paper title is text, never markup
    assert store.feedback(["ada@example.org"]) == {}  # a link preview (GET) records nothing
    form_action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1].replace("&amp;", "&")
    assert client.post(f"{path.path}{form_action}").status_code == 400  # a bare POST (a link scanner) records nothing
    assert store.feedback(["ada@example.org"]) == {}
    done = client.post(f"{path.path}{form_action}", data={"feedback": "confirm"})
    assert done.status_code == 200 and "Thank you" in done.text
    [click] = store.feedback(["ada@example.org"])["ada@example.org"]
    assert (click.paper_id, click.kind) == ("2401.00001", "more")
    fewer = urlsplit(feedback_url("http://x", "ada@example.org", "2401.00001", "fewer", KEY))
    assert client.post(f"{fewer.path}?{fewer.query}", data={"feedback": "confirm"}).status_code == 200
    assert [c.kind for c in store.feedback(["ada@example.org"])["ada@example.org"]] == ["fewer"]  # the latest click wins


def test_the_preview_shows_the_pages_but_records_nothing(store: Store):
    client = TestClient(create_app(list_subscribers=lambda: [], build_edition=lambda e, d: None, suppress=None,
                                   secret_key=KEY, record_feedback=None, paper_title=lambda paper_id: "A paper"))
    token = make_feedback_token("ada@example.org", "2401.00001", "more", KEY)
    assert client.get(f"/feedback?token={token}").status_code == 200
    assert "nothing was recorded" in client.post(f"/feedback?token={token}", data={"feedback": "confirm"}).text
    assert store.feedback(["ada@example.org"]) == {}


def test_forged_tokens_and_unknown_papers_change_nothing(store: Store):
    client = TestClient(app_for(store))
    good = make_feedback_token("ada@example.org", "2401.00001", "more", KEY)
    address, paper, kind, mac = good.split(".")
    bob = make_feedback_token("bob@example.org", "2401.00001", "more", KEY).split(".")
    for token in (f"{bob[0]}.{paper}.{kind}.{mac}", make_feedback_token("ada@example.org", "9999.99999", "more", KEY), "junk"):
        assert client.get(f"/feedback?token={token}").status_code == 400
        assert client.post(f"/feedback?token={token}", data={"feedback": "confirm"}).status_code == 400
    assert store.feedback(["ada@example.org", "bob@example.org"]) == {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_from_a_bib_library_to_feedback_that_changes_the_next_edition(example_dir: Path):
    """A fresh example setup plus one similar subscriber: send, click in the email, serve, next edition."""
    shutil.copy(REPO / "examples" / "libraries" / "ada-library.bib", example_dir / "examples" / "subscribers" / "ines-library.bib")
    (example_dir / "examples" / "subscribers" / "ines.toml").write_text(
        'email = "ines@example.org"\nmode = "similar"\nlibrary = "ines-library.bib"\nmax_items = 5\nmax_age_days = 3650\n',
        encoding="utf-8")
    secret = {"NEWSLETTER_SECRET": "a-test-secret-of-some-length"}
    sent = run_cli("send", "--date", "2026-11-25", "--only", "ines@example.org", cwd=example_dir, env=secret)
    assert sent.returncode == 0, sent.stderr
    [eml] = (example_dir / "outbox").glob("*ines*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    reasons = [unescape(r) for r in re.findall(r"Why: (.*?)</p>", html)]  # the text part wraps them at 76 columns
    assert len(reasons) == 5 and all(r.startswith('close to "') and r.endswith("from your library") for r in reasons), reasons
    titles = [unescape(t) for t in re.findall(r"<h2[^>]*>(?:<a[^>]*>)?(.*?)(?:</a>)?</h2>", html)]
    assert sum("quantiz" in t.lower() or "bit" in t.lower() or "precision" in t.lower() for t in titles) >= 4, titles
    more = re.findall(r"More like this:\s+(\S+)", text)
    assert len(more) == 5 and more[0] in html.replace("&amp;", "&")
    assert len(re.findall(r"Fewer like this:\s+(\S+)", text)) == 5

    def next_edition() -> list[dict]:
        done = run_cli("select", "--subscriber", "ines@example.org", "--date", "2026-11-26", "--json", cwd=example_dir)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["picks"]

    before = next_edition()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=example_dir,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **secret}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode()
                time.sleep(0.2)
        link = urlsplit(more[4])  # the last pick: "more like this"
        assert httpx.get(f"{base}{link.path}?{link.query}").status_code == 200
        assert httpx.post(f"{base}{link.path}?{link.query}", data={"feedback": "confirm"}).status_code == 200
    finally:
        server.terminate()
        server.wait(10)

    listed = run_cli("feedback", "ines@example.org", cwd=example_dir)
    assert listed.returncode == 0 and "more like this" in listed.stdout and titles[4][:30] in listed.stdout, listed.stdout
    after = next_edition()
    assert not {p["paper"]["title"] for p in after} & set(titles)  # sent papers are not picked again
    assert [p["paper"]["id"] for p in after] != [p["paper"]["id"] for p in before]  # the click changed the edition


def test_an_editions_links_are_the_feedback_urls_of_each_paper():
    ids = ["2401.00001", "t:ünïcode", "2401.00001v2", ""]
    for address in ("ada@example.org", "bö+x@exämple.org"):
        assert feedback_links("https://n.example.org/", address, ids, KEY) == [
            (feedback_url("https://n.example.org/", address, paper, "more", KEY),
             feedback_url("https://n.example.org/", address, paper, "fewer", KEY)) for paper in ids
        ]
    assert feedback_links("https://n", "ada@example.org", [], KEY) == []


def test_a_tokens_signature_is_hmac_sha256_for_keys_of_every_length():
    import base64
    import hashlib
    import hmac

    for key in (b"", b"k", KEY, b"x" * 63, b"y" * 64, b"z" * 65, bytes(range(256)) * 2):
        for address, paper, kind in (("ada@example.org", "2401.00001", "more"), ("bö@exämple.org", "t:ü", "fewer")):
            signature = make_feedback_token(address, paper, kind, key).split(".")[3]
            message = b"newsletter-feedback\n" + f"{address}\n{paper}\n{kind}".encode()
            expected = base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()
            assert signature == expected
            assert verify_feedback_token(make_feedback_token(address, paper, kind, key), key) == (address, paper, kind)
