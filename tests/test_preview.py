"""The preview app and the unsubscribe endpoints: Starlette's TestClient, then real headless Chromium."""

import email
import re
import os
import shutil
import socket
import tempfile
import threading
import time
from datetime import date
from email import policy

import lxml.html
import pytest
import uvicorn
from starlette.testclient import TestClient

import newsletter.render as render
from newsletter.message import build_message, make_message_id
from newsletter.models import Paper, Pick, Subscriber
from newsletter.preview import create_app
from newsletter.render import Renderer, RenderSettings
from newsletter.unsubscribe import make_token, unsubscribe_url

KEY = b"preview-test-key"
DAY = date(2026, 11, 25)
SUBSCRIBERS = [
    Subscriber(email="ada@example.org", name="Ada", mode="keywords", keywords=["attention"]),
    Subscriber(email="bob+news@example.org", name="Bob"),
    Subscriber(email="quiet@example.org"),
]
PAPERS = [
    Paper.create("Attention Is Not All You Need", arxiv_id="2103.03404", abstract="About attention.", upvotes=7),
    Paper.create("Scaling <b>laws</b> for small models", url="https://huggingface.co/papers/x", author_count=3),
    Paper.create("Diffusion without tears", url="https://example.org/d", authors=["C. Author"]),
]
PICKS = {
    "ada@example.org": [Pick(PAPERS[0], 2.0, ["matches “attention”"]), Pick(PAPERS[1], 1.0, [])],
    "bob+news@example.org": [Pick(p, 1.0, ["trending"]) for p in PAPERS],
}


class Service:
    """The callables the app gets: the fake store, plus the real renderer and message builder."""

    def __init__(self, templates_dir=None):
        settings = RenderSettings(newsletter_name="Papers Daily", base_url="https://news.example.org", templates_dir=templates_dir)
        self.renderer = Renderer(settings)
        self.suppressed: list[str] = []
        self.asked: list[tuple[str, date]] = []

    def build_edition(self, address: str, day: date):
        self.asked.append((address, day))
        subscriber = next((s for s in SUBSCRIBERS if s.email == address), None)
        picks = PICKS.get(address)
        if subscriber is None or not picks:
            return None
        link = unsubscribe_url("https://news.example.org", address, KEY)
        edition = self.renderer.render(subscriber, day, picks, unsubscribe_url=link)
        raw = build_message(
            sender="Papers Daily <news@example.org>",
            to_name=subscriber.name,
            to_email=address,
            subject=edition.subject,
            html=edition.html,
            text=edition.text,
            message_id=make_message_id(address, day, "example.org"),
            unsubscribe_url=link,
        )
        return edition, raw

    def app(self, preview=True):
        return create_app(
            list_subscribers=lambda: SUBSCRIBERS,
            build_edition=self.build_edition,
            suppress=self.suppressed.append,
            secret_key=KEY,
            preview=preview,
        )


@pytest.fixture
def service():
    return Service()


@pytest.fixture
def client(service):
    return TestClient(service.app())


def page(response):
    return lxml.html.document_fromstring(response.text)


def words(element) -> str:
    return " ".join(element.text_content().split())


def test_index_lists_subscribers_with_pick_counts(client, service):
    response = client.get("/?date=2026-11-25")
    assert response.status_code == 200
    rows = {words(row.xpath("td")[0]).split()[0]: words(row.xpath("td")[3]) for row in page(response).xpath("//tbody/tr")}
    assert rows == {"ada@example.org": "2", "bob+news@example.org": "3", "quiet@example.org": "no edition"}
    assert page(response).xpath("//input[@type='date']/@value") == ["2026-11-25"]
    assert {day for _, day in service.asked} == {DAY}


def test_edition_page_frames_the_html_narrow_or_wide(client):
    wide = page(client.get("/s/ada@example.org?date=2026-11-25"))
    frame = wide.xpath("//iframe")[0]
    assert frame.get("width") == "600" and frame.get("src") == "/s/ada%40example.org/html?date=2026-11-25"
    assert "2 new papers on attention · 25 Nov 2026" in words(wide.xpath("//h1")[0])
    narrow = page(client.get("/s/ada@example.org?date=2026-11-25&width=narrow"))
    assert narrow.xpath("//iframe/@width") == ["320"]


def without_date(message: bytes) -> bytes:
    return re.sub(rb"^Date: [^\r\n]*\r\n", b"", message, count=1, flags=re.MULTILINE)


def test_html_text_and_eml_come_from_build_edition(client, service):
    expected, raw = service.build_edition("bob+news@example.org", DAY)
    html = client.get("/s/bob+news@example.org/html?date=2026-11-25")
    assert html.status_code == 200 and html.text == expected.html
    assert "script-src" not in html.headers["content-security-policy"]
    titles = [words(h) for h in page(html).xpath("//h2")]
    assert titles == [p.title for p in PAPERS]
    text = client.get("/s/bob+news@example.org/text?date=2026-11-25")
    assert text.headers["content-type"].startswith("text/plain") and text.text == expected.text
    eml = client.get("/s/bob+news@example.org/eml?date=2026-11-25")
    assert eml.headers["content-type"] == "message/rfc822"
    assert eml.headers["content-disposition"] == 'attachment; filename="2026-11-25-bob+news@example.org.eml"'
    assert without_date(eml.content) == without_date(raw)  # the Date header is the moment of building
    message = email.message_from_bytes(eml.content, policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "bob+news@example.org"


def test_missing_edition_and_bad_date(client):
    assert client.get("/s/quiet@example.org?date=2026-11-25").status_code == 404
    assert client.get("/s/nobody@example.org/html?date=2026-11-25").status_code == 404
    bad = client.get("/s/ada@example.org?date=25.11.2026")
    assert bad.status_code == 400 and "date: expected YYYY-MM-DD" in bad.text
    assert client.get("/?date=tomorrow").status_code == 400


def test_templates_are_read_again_on_each_request(tmp_path):
    paper = tmp_path / "paper.mjml"
    paper.write_text((render.BUILTIN_TEMPLATES / "paper.mjml").read_text())
    client = TestClient(Service(templates_dir=tmp_path).app())
    url = "/s/ada@example.org/html?date=2026-11-25"
    assert "Why: matches" in client.get(url).text
    paper.write_text(paper.read_text().replace("Why: ", "Picked because: "))
    stat = paper.stat()
    os.utime(paper, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert "Picked because: matches" in client.get(url).text


def test_a_broken_template_is_shown_not_crashed(tmp_path):
    (tmp_path / "paper.mjml").write_text("<mj-section><mj-column><mj-text>{% if %}</mj-text></mj-column></mj-section>")
    client = TestClient(Service(templates_dir=tmp_path).app())
    response = client.get("/s/ada@example.org?date=2026-11-25")
    assert response.status_code == 500 and "Template error" in response.text and f"{tmp_path}/paper.mjml:1:" in response.text
    index = client.get("/?date=2026-11-25")
    assert index.status_code == 200 and f"template error: {tmp_path}/paper.mjml:1:" in index.text


def test_unsubscribe_confirm_then_one_click_post(client, service):
    token = make_token("ada@example.org", KEY)
    confirm = client.get(f"/unsubscribe?token={token}")
    assert confirm.status_code == 200 and "ada@example.org" in confirm.text
    form = page(confirm).xpath("//form")[0]
    assert form.get("method") == "post" and form.get("action") == f"?token={token}"
    assert service.suppressed == []
    done = client.post(
        f"/unsubscribe?token={token}",
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and service.suppressed == ["ada@example.org"]


@pytest.mark.parametrize("token", ["", "forged", make_token("ada@example.org", b"wrong key"), make_token("ada@example.org", KEY)[:-1] + "A"])
def test_forged_or_altered_tokens_change_nothing(client, service, token):
    assert client.get(f"/unsubscribe?token={token}").status_code == 400
    assert client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click").status_code == 400
    assert service.suppressed == []


def test_public_mode_serves_only_unsubscribe(service):
    client = TestClient(service.app(preview=False))
    assert client.get("/").status_code == 404
    assert client.get("/s/ada@example.org/html").status_code == 404
    assert client.get("/healthz").text == "ok"
    token = make_token("bob+news@example.org", KEY)
    assert client.post(f"/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert service.suppressed == ["bob+news@example.org"]


@pytest.mark.parametrize("body", [
    {},  # a bare POST: a link scanner, a prefetch
    {"content": "List-Unsubscribe=Yes", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    {"content": "List-Unsubscribe=One-Click"},  # no form content type: not a form
    {"content": "{\"List-Unsubscribe\": \"One-Click\"}", "headers": {"content-type": "application/json"}},
    {"content": "--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
])
def test_a_post_without_the_one_click_body_unsubscribes_nobody(service, body):
    client = TestClient(service.app(preview=False))
    response = client.post(f"/unsubscribe?token={make_token('ada@example.org', KEY)}", **body)
    assert response.status_code == 400 and "did not confirm" in response.text
    assert page(response).xpath("//form/input[@name='List-Unsubscribe']/@value") == ["One-Click"]
    assert service.suppressed == []


def test_the_rfc_8058_multipart_one_click_post(service):
    """What a mailbox provider sends (RFC 8058, section 3.1): multipart/form-data."""
    client = TestClient(service.app(preview=False))
    body = ('--FormBoundaryjWmhtjORrn\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            'One-Click\r\n--FormBoundaryjWmhtjORrn--\r\n')
    response = client.post(f"/unsubscribe?token={make_token('ada@example.org', KEY)}", content=body,
                           headers={"content-type": "multipart/form-data; boundary=FormBoundaryjWmhtjORrn"})
    assert response.status_code == 200 and service.suppressed == ["ada@example.org"]


def test_without_suppress_the_unsubscribe_page_records_nothing(service):
    app = create_app(list_subscribers=lambda: SUBSCRIBERS, build_edition=service.build_edition, suppress=None, secret_key=KEY)
    response = TestClient(app).post(f"/unsubscribe?token={make_token('ada@example.org', KEY)}",
                                    data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "nothing was recorded" in response.text


def guarded(service, **guard):
    app = create_app(list_subscribers=lambda: SUBSCRIBERS, build_edition=service.build_edition,
                     suppress=service.suppressed.append, secret_key=KEY, **guard)
    return TestClient(app, base_url="http://127.0.0.1:8025")


@pytest.mark.parametrize("host", ["127.0.0.1:8025", "localhost:8025", "LOCALHOST", "[::1]:8025", "127.0.0.1"])
def test_loopback_host_names_are_answered(service, host):
    client = guarded(service, allowed_hosts={"localhost", "127.0.0.1", "::1"})
    assert client.get("/?date=2026-11-25", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8025", "127.0.0.1.evil.example", "", "localhost.evil.example:80", "[::2]:8025"])
def test_a_rebound_dns_name_gets_nothing(service, host):
    """DNS rebinding: a page on evil.example that resolves itself to 127.0.0.1 still sends `Host: evil.example`."""
    client = guarded(service, allowed_hosts={"localhost", "127.0.0.1", "::1"})
    for path in ("/?date=2026-11-25", "/s/ada@example.org/eml?date=2026-11-25", f"/unsubscribe?token={make_token('ada@example.org', KEY)}"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == 400 and "ada@example.org" not in response.text
    assert client.get("/healthz", headers={"host": host}).text == "ok"
    assert service.asked == []


def test_a_password_is_asked_for_on_every_page(service):
    import base64

    client = guarded(service, password="s3cret pass")
    response = client.get("/?date=2026-11-25")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
    assert "ada@example.org" not in response.text
    def auth(user_pass: bytes):
        return {"authorization": "Basic " + base64.b64encode(user_pass).decode()}
    assert client.get("/s/ada@example.org/eml?date=2026-11-25", headers=auth(b"x:wrong")).status_code == 401
    assert client.get("/?date=2026-11-25", headers={"authorization": "Bearer s3cret pass"}).status_code == 401
    assert client.get("/?date=2026-11-25", headers={"authorization": "Basic !!!"}).status_code == 401
    assert client.get("/?date=2026-11-25", headers=auth(b"anyone:s3cret pass")).status_code == 200
    assert client.get("/healthz").status_code == 200


CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-background-networking "
    "--disable-component-update --disable-sync --no-first-run"
).split()


@pytest.fixture
def server(service):
    """The preview app under uvicorn on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(service.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not shutil.which("chromedriver"):
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1000,1400")
    driver = webdriver.Chrome(service=DriverService(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_preview_in_headless_chromium(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/?date=2026-11-25")
    assert "bob+news@example.org" in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.LINK_TEXT, "bob+news@example.org").click()
    assert "3 new papers on trending papers" in browser.find_element(By.TAG_NAME, "h1").text
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    titles = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert titles == [p.title for p in PAPERS]
    browser.switch_to.default_content()
    shot = tmp_path / "preview.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    browser.find_element(By.PARTIAL_LINK_TEXT, "narrow").click()
    frame = browser.find_element(By.TAG_NAME, "iframe")
    assert frame.get_attribute("width") == "320"
    browser.switch_to.frame(frame)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 320  # no sideways scrolling
    assert [h.text for h in browser.find_elements(By.TAG_NAME, "h2")] == [p.title for p in PAPERS]
