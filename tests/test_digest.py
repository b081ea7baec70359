"""The reader's digest, through the real CLI and `serve` on loopback: view in browser, the archive,
weekly editions, followed authors, empty-day notes and stored summaries."""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import lxml.html
import pytest

from newsletter.store import Store
from tests.conftest import REPO, run_cli
from tests.smtp_fixtures import free_port

MONDAY = date(2026, 12, 7)
SECRET = "digest-test-secret"  # `serve` checks links with the real key, so sending signs with it too
CONFIG = """
[newsletter]
name = "Papers Daily"
from = "Papers Daily <daily@example.org>"
base_url = "http://127.0.0.1:{port}"

[store]
path = "newsletter.db"

[subscribers]
dir = "subscribers"

[delivery]
backend = "file"

[delivery.file]
dir = "outbox"
"""


def paper(n: int, title: str, *, days_before: int = 0, upvotes: int | None = None, authors=(), abstract="", **fields) -> dict:
    return {
        "id": f"2412.{n:05d}", "arxiv_id": f"2412.{n:05d}", "title": title,
        "abstract": abstract or f"{title} is what we study. It works well. A third sentence nobody reads.",
        "authors": list(authors), "published": (MONDAY - timedelta(days=days_before)).isoformat(),
        "upvotes": upvotes, **fields,
    }


class Site:
    """A config, subscriber files and a store in a temporary folder, driven through the CLI."""

    def __init__(self, root: Path, extra_config: str = ""):
        self.root = root
        self.port = free_port()
        (root / "subscribers").mkdir()
        (root / "config.toml").write_text(CONFIG.format(port=self.port) + extra_config, encoding="utf-8")

    def subscriber(self, name: str, text: str) -> None:
        (self.root / "subscribers" / f"{name}.toml").write_text(text, encoding="utf-8")

    def ingest(self, *papers: dict) -> None:
        path = self.root / f"papers-{time.monotonic_ns()}.jsonl"
        path.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
        self.cli("ingest", str(path))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = run_cli("--config", str(self.root / "config.toml"), *args, cwd=self.root, env={"NEWSLETTER_SECRET": SECRET})
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def send(self, day: date) -> subprocess.CompletedProcess:
        return self.cli("send", "--date", day.isoformat())

    def mails(self) -> dict[str, list[email.message.EmailMessage]]:
        """Every message in the outbox, by recipient, in the order they were written."""
        found: dict[str, list] = {}
        for path in sorted((self.root / "outbox").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            found.setdefault(message["To"].addresses[0].addr_spec, []).append(message)
        return found

    def clear_outbox(self) -> None:
        for path in (self.root / "outbox").glob("*.eml"):
            path.unlink()


def parts(message) -> tuple[str, str]:
    """The HTML and text parts, with the line breaks MIME made CRLF back to LF (as rendered)."""
    html, text = (message.get_body((kind,)).get_content() for kind in ("html", "plain"))
    return html.replace("\r\n", "\n").removesuffix("\n"), text.replace("\r\n", "\n")  # MIME ends a part with a line break


def view_link(html: str) -> str:
    [link] = lxml.html.document_fromstring(html).xpath("//a[text()='View in browser']/@href")[:1]
    return link


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def served(site: Site):
    """`newsletter serve` on a free loopback port, for the site's config."""
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(site.root / "config.toml"), "serve", "--port", str(site.port)],
        cwd=site.root, env={**__import__("os").environ, "PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": SECRET},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{site.port}"
    for _ in range(200):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None:
                pytest.fail(process.stdout.read().decode())
            time.sleep(0.05)
    yield base
    process.terminate()
    process.wait(10)


def test_view_in_browser_is_the_sent_html_and_the_archive_lists_past_editions(site, served):
    site.subscriber("ada", 'email = "ada@example.org"\nname = "Ada Lovelace"\n')
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n, days_before=1) for n in range(1, 6)))
    site.send(MONDAY - timedelta(days=1))
    site.ingest(*(paper(n, f"Later paper {n}", upvotes=n) for n in range(11, 14)))
    site.send(MONDAY)
    first, second = site.mails()["ada@example.org"]
    for message, day in ((first, MONDAY - timedelta(days=1)), (second, MONDAY)):
        html, text = parts(message)
        link = view_link(html)
        assert link.startswith(f"{served}/view/{day.isoformat()}?token=")
        assert f"View in browser: {link}" in " ".join(text.splitlines()[:3])  # the same URL, at the top
        page = httpx.get(link)
        assert page.status_code == 200 and page.text == html
    html, text = parts(second)
    [archive] = lxml.html.document_fromstring(html).xpath("//a[text()='Past editions']/@href")
    assert f"Past editions: {archive}" in " ".join(text.split())
    listing = lxml.html.document_fromstring(httpx.get(archive).text)
    rows = [(" ".join(a.text_content().split()), a.get("href")) for a in listing.xpath("//table//a")]
    assert [subject for subject, _ in rows] == [second["Subject"], first["Subject"]]  # newest first
    assert httpx.get(httpx.URL(archive).join(rows[1][1])).text == parts(first)[0]


def test_tampered_view_and_archive_links_are_refused(site, served):
    site.subscriber("ada", 'email = "ada@example.org"\n')
    site.subscriber("bob", 'email = "bob@example.org"\n')
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n) for n in range(1, 4)))
    site.send(MONDAY)
    html, _ = parts(site.mails()["ada@example.org"][0])
    link = view_link(html)
    token = link.partition("token=")[2]
    other = parts(site.mails()["bob@example.org"][0])[0]
    bob_token = view_link(other).partition("token=")[2]
    address, mac = token.split(".")
    tampered = [
        link[:-2] + ("AA" if not link.endswith("AA") else "BB"),  # the signature
        link.replace(MONDAY.isoformat(), (MONDAY - timedelta(days=1)).isoformat()),  # another day
        link.replace(token, f"{bob_token.split('.')[0]}.{mac}"),  # another subscriber, ada's signature
        link.replace(token, ""),
        link.replace(MONDAY.isoformat(), "2026-13-45"),
    ]
    for url in tampered:
        response = httpx.get(url)
        assert response.status_code in (400, 404), url
        assert "Paper number" not in response.text
    archive = lxml.html.document_fromstring(html).xpath("//a[text()='Past editions']/@href")[0]
    assert httpx.get(archive[:-3] + "xyz").status_code == 400
    assert httpx.get(archive.replace(address, bob_token.split(".")[0])).status_code == 400
    # a good signature for a day with no edition: not found, and nothing of anyone's mail
    site.cli("subscribers", "check")
    from newsletter.links import view_url

    missing = view_url(served, "ada@example.org", MONDAY + timedelta(days=1), SECRET.encode())
    assert httpx.get(missing).status_code == 404


def test_weekly_subscriber_gets_the_week_on_its_day_and_nothing_on_others(site):
    site.subscriber("wes", 'email = "wes@example.org"\nname = "Wes"\nfrequency = "weekly"\ndays = ["mon"]\nmax_items = 3\n')
    site.ingest(
        paper(1, "Old but loved", days_before=6, upvotes=300),
        paper(2, "Too old for the week", days_before=7, upvotes=900),
        paper(3, "Fresh and liked", days_before=0, upvotes=100),
        paper(4, "Midweek hit", days_before=3, upvotes=200),
        paper(5, "From the future", days_before=-1, upvotes=5000),
        paper(6, "Fresh and quiet", days_before=0, upvotes=20),
    )
    tuesday = MONDAY + timedelta(days=1)
    result = site.send(tuesday)
    assert "wes@example.org" not in site.mails() and "not a sending day" in result.stdout
    site.clear_outbox()
    site.subscriber("dan", 'email = "dan@example.org"\nmax_items = 3\n')  # a daily reader, for comparison
    site.send(MONDAY)
    mails = site.mails()
    [weekly] = mails["wes@example.org"]
    html, text = parts(weekly)
    titles = [" ".join(h.text_content().split()) for h in lxml.html.document_fromstring(html).xpath("//h2")]
    assert titles == ["Old but loved", "Midweek hit", "Fresh and liked"]  # by upvotes, no decay, no future
    assert weekly["Subject"] == "Trending this week: Old but loved and 2 more"
    heading = " ".join(lxml.html.document_fromstring(html).xpath("//h1")[0].text_content().split())
    assert "this week" in heading and "this week" in text
    assert "trending #1 this week, 300 upvotes" in " ".join(text.split())
    daily = [" ".join(h.text_content().split()) for h in lxml.html.document_fromstring(parts(mails["dan@example.org"][0])[0]).xpath("//h2")]
    assert daily[0] == "Fresh and liked"  # the daily edition decays by age
    # the scheduler runs the weekly group on Mondays only
    status = json.loads(site.cli("status", "--json").stdout)
    [job] = [row for row in status["next_runs"] if row["job"] == "send" and row["days"] == ["mon"]]
    assert date.fromisoformat(job["next_run_utc"][:10]).weekday() in (0, 6)  # Monday 07:30 UTC (or late Sunday)


def test_a_followed_authors_low_scoring_paper_comes_first_with_its_reason(site):
    site.subscriber("kim", (
        'email = "kim@example.org"\nmode = "keywords"\nkeywords = ["diffusion"]\nmax_items = 3\n'
        'authors = ["Yann LeCun", "José Hernández-Orallo"]\n'
    ))
    site.subscriber("tia", 'email = "tia@example.org"\nmax_items = 2\nauthors = ["LeCun, Yann"]\n')
    site.ingest(
        paper(1, "Diffusion for everything", upvotes=500, authors=["A. Person"]),
        paper(2, "Diffusion again", upvotes=400, authors=["B. Person"]),
        paper(3, "A quiet note on energy models", upvotes=1, authors=["Someone Else", "Y. LeCun"]),
        paper(4, "Measuring intelligence", upvotes=None, authors=["Jose Hernandez-Orallo"]),
        paper(5, "Not him", upvotes=2, authors=["Yann Dauphin"]),
    )
    site.send(MONDAY)
    mails = site.mails()
    html, text = parts(mails["kim@example.org"][0])
    doc = lxml.html.document_fromstring(html)
    titles = [" ".join(h.text_content().split()) for h in doc.xpath("//h2")]
    assert titles[:2] == ["A quiet note on energy models", "Measuring intelligence"]
    assert titles[2] in ("Diffusion for everything", "Diffusion again") and len(titles) == 3
    why = [" ".join(p.text_content().split()) for p in doc.xpath("//p[contains(@class, 'why')]")]
    assert why[:2] == ["Why: by Yann LeCun, whom you follow", "Why: by José Hernández-Orallo, whom you follow"]
    assert "Why: by Yann LeCun, whom you follow" in text
    trending = [" ".join(h.text_content().split()) for h in lxml.html.document_fromstring(parts(mails["tia@example.org"][0])[0]).xpath("//h2")]
    assert trending == ["A quiet note on energy models", "Diffusion for everything"]


def test_text_part_lines_are_at_most_76_columns_except_urls(site):
    site.subscriber("ada", 'email = "ada-with-a-long-address-for-wrapping@example.org"\nname = "Ada Lovelace"\n'
                    'mode = "keywords"\nkeywords = ["language models", "reinforcement learning from human feedback"]\n')
    long_abstract = " ".join(["Large language models trained with reinforcement learning from human feedback"] * 12) + "."
    site.ingest(*(paper(n, "Language models " + "and their very long titles " * 5, upvotes=n, abstract=long_abstract,
                        authors=["Alexandra Longname-Example"] * 6, organization="The Organisation With The Long Name")
                  for n in range(1, 11)))
    site.send(MONDAY)
    _, text = parts(site.mails()["ada-with-a-long-address-for-wrapping@example.org"][0])
    assert text.count("Language models and their") == 10
    for line in text.splitlines():
        if len(line) > 76:
            assert re.fullmatch(r"\s*https?://\S+", line), line
    assert "Hi Ada," in text


def note_of(site: Site, email_address: str) -> tuple[str, str]:
    [message] = site.mails()[email_address]
    html, text = parts(message)
    return message["Subject"], " ".join(text.split())


def test_empty_day_notes_say_why_and_never_twice_in_a_row(site):
    site.subscriber("nia", 'email = "nia@example.org"\nmode = "keywords"\nkeywords = ["quantum chromodynamics"]\nempty = "note"\n')
    site.subscriber("sam", 'email = "sam@example.org"\nmode = "keywords"\nkeywords = ["quantum chromodynamics"]\n')
    site.subscriber("ted", 'email = "ted@example.org"\nempty = "note"\n')
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n) for n in range(1, 4)))
    site.send(MONDAY)
    subject, text = note_of(site, "nia@example.org")
    assert subject == "No new papers today · 7 Dec"
    assert "None of the 3 new papers matched your keywords (quantum chromodynamics) today." in text
    assert "sam@example.org" not in site.mails()  # empty = "skip" is the default
    assert len(site.mails()["ted@example.org"]) == 1  # ted got papers
    site.clear_outbox()
    result = site.send(MONDAY + timedelta(days=1))  # nothing new for nia again: no second note in a row
    assert "nia@example.org" not in site.mails() and "nia@example.org: no new papers, no email today" in result.stdout
    _, text = note_of(site, "ted@example.org")  # ted has had all three papers: nothing new in the store
    assert "There are no new papers in the store since your last edition on 7 Dec 2026" in text
    site.clear_outbox()
    site.send(MONDAY + timedelta(days=2))  # still nothing for nia or ted: their last emails were notes
    assert "nia@example.org" not in site.mails() and "ted@example.org" not in site.mails()
    # fetching fails: the note of a new subscriber names the source and since when
    with Store(f"sqlite:///{site.root / 'newsletter.db'}") as store:
        store.record_fetch("hf", error="HTTP 503 Service Unavailable")
    config = site.root / "config.toml"
    config.write_text(config.read_text().replace("[store]", '[sources]\nfetch = ["hf"]\n\n[store]'))
    site.subscriber("oz", 'email = "oz@example.org"\nempty = "note"\nmax_age_days = 1\n')
    site.send(MONDAY + timedelta(days=3))
    _, text = note_of(site, "oz@example.org")
    assert re.search(r"Fetching papers from hf has failed since \d+ \w+ \d{4} \d\d:\d\d UTC \(HTTP 503 Service Unavailable\)\.", text)
    assert "There are no new papers in the store, so there is nothing to send today." in text
    # papers arrive: a real edition, and after it a note may come again
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n, days_before=-4) for n in range(20, 22)))
    site.clear_outbox()
    site.send(MONDAY + timedelta(days=4))
    assert len(site.mails()["ted@example.org"]) == 1 and "Paper number 21" in parts(site.mails()["ted@example.org"][0])[1]
    site.clear_outbox()
    site.send(MONDAY + timedelta(days=5))
    assert "no new papers in the store since your last edition on 11 Dec 2026" in note_of(site, "ted@example.org")[1]


def test_skip_empty_false_is_the_default_for_subscribers_who_do_not_say(tmp_path):
    site = Site(tmp_path, "\n[schedule]\nskip_empty = false\n")
    site.subscriber("sam", 'email = "sam@example.org"\nmode = "keywords"\nkeywords = ["quantum chromodynamics"]\n')
    site.subscriber("val", 'email = "val@example.org"\nmode = "keywords"\nkeywords = ["quantum chromodynamics"]\nempty = "skip"\n')
    site.ingest(paper(1, "Paper number 1", upvotes=1))
    site.send(MONDAY)
    assert set(site.mails()) == {"sam@example.org"}


class FakeChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat completions endpoint: the TL;DR is the title, reworded."""

    requests: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        title = body["messages"][1]["content"].split("\n")[0].removeprefix("Title: ")
        reply = {"choices": [{"message": {"role": "assistant", "content": f"In short: {title} works."}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_chat():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    FakeChat.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_summaries_from_the_endpoint_are_made_once_and_stored(tmp_path, fake_chat, monkeypatch):
    site = Site(tmp_path, f'\n[summaries]\nendpoint = "{fake_chat}"\nmodel = "tiny"\napi_key_env = "FAKE_KEY"\n')
    monkeypatch.setenv("FAKE_KEY", "sekrit")
    site.subscriber("ada", 'email = "ada@example.org"\n')
    site.subscriber("bob", 'email = "bob@example.org"\n')
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n) for n in range(1, 4)))
    site.send(MONDAY)
    for address in ("ada@example.org", "bob@example.org"):
        html, text = parts(site.mails()[address][0])
        assert "In short: Paper number 3 works." in html and "TL;DR: In short: Paper number 3 works." in text
        assert "It works well" not in html  # the TL;DR replaces the cut abstract
    assert len(FakeChat.requests) == 3  # once per paper, not once per subscriber
    assert {r["path"] for r in FakeChat.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in FakeChat.requests} == {"Bearer sekrit"} and FakeChat.requests[0]["body"]["model"] == "tiny"
    with Store(f"sqlite:///{site.root / 'newsletter.db'}") as store:
        assert store.summaries(["2412.00001"]) == {"2412.00001": "In short: Paper number 1 works."}


def test_summaries_fall_back_to_the_cut_abstract_when_the_endpoint_is_down(tmp_path):
    site = Site(tmp_path, f'\n[summaries]\nendpoint = "http://127.0.0.1:{free_port()}/v1"\nmodel = "tiny"\ntimeout = 2\n')
    site.subscriber("ada", 'email = "ada@example.org"\n')
    site.ingest(*(paper(n, f"Paper number {n}", upvotes=n) for n in range(1, 4)))
    result = site.send(MONDAY)
    html, text = parts(site.mails()["ada@example.org"][0])
    assert "Paper number 3 is what we study. It works well." in html and "TL;DR" not in html
    assert "A third sentence" not in html
    assert result.returncode == 0


def test_a_ten_paper_edition_fits_a_phone_in_headless_chromium(tmp_path):
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import edition_size
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    html = edition_size.edition_html()
    found = edition_size.heights(html, tmp_path)
    assert found[600][1] == 600 and found[320][1] == 320  # no sideways scrolling at either width
    assert found[320][0] < 5000 and found[600][0] < 3500  # the layout before this one: 3,854 and 5,991 px
    assert (tmp_path / "edition-320.png").stat().st_size > 10_000
