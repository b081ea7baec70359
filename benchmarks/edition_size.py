"""The size of a 10-paper edition: HTML bytes, and its height in headless Chromium at 600 and 320 px.

With `--budget`: bytes per paper card and the 40, 60 and 100-paper editions after the size budget
(newsletter/budget.py), on the longest real papers of the fixtures with every link (tests/test_budget.py's
worst case): HTML bytes, whole .eml bytes (DKIM-signed with a fresh RSA-2048 key), papers kept, abstract words.

Renders one trending edition of 10 real papers (the bundled test fixtures: the Hugging Face
daily-papers API, the arXiv listing and the arXiv export API, plus one page-dump paper without
an id) with the built-in templates, and, with `--screenshots DIR`, saves full-page screenshots
at both widths. Needs chromium and chromedriver (Debian: chromium chromium-driver).

    python benchmarks/edition_size.py --screenshots /tmp/shots
    python benchmarks/edition_size.py --budget
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.models import Paper, Pick, Subscriber  # noqa: E402
from newsletter.render import Renderer, RenderSettings  # noqa: E402
from newsletter.sources import parse_file  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
DAY = date(2026, 12, 1)


def ten_papers() -> list[Paper]:
    """Four from the HF API, four from arXiv listings, one from the export API, one page-dump paper (no id)."""
    api = parse_file(FIXTURES / "hf-api" / "daily_papers.json", "auto").papers
    listing = parse_file(FIXTURES / "arxiv" / "rss_listing.xml", "auto").papers[:4]
    export = parse_file(FIXTURES / "arxiv" / "api_query_testing.xml", "auto").papers[:1]
    dump = parse_file(FIXTURES / "hf-pages" / "000_14173d72b6ea1fef.txt", "auto", page_date=DAY).papers[:1]
    return api + listing + export + dump


def edition_html() -> str:
    renderer = Renderer(RenderSettings(newsletter_name="Papers digest", base_url="https://papers.example.org",
                                       address="Papers digest · 1 Example Street · 12345 Example City"))
    subscriber = Subscriber(email="ada@example.org", name="Ada Lovelace")
    picks = [
        Pick(paper, 1.0, [f"trending #{n} today, {paper.upvotes} upvotes" if paper.upvotes else f"trending #{n} today (no upvote count yet)"])
        for n, paper in enumerate(ten_papers(), 1)
    ]
    edition = renderer.render(
        subscriber, DAY, picks, unsubscribe_url="https://papers.example.org/unsubscribe?token=YWRh.c2lnbmF0dXJl",
        view_url="https://papers.example.org/view/2026-12-01?token=YWRh.c2lnbmF0dXJl",
        archive_url="https://papers.example.org/archive?token=YWRh.c2lnbmF0dXJl",
    )
    assert edition.count == 10
    return edition.html


def heights(html: str, shots: Path | None) -> dict[int, tuple[int, int]]:
    """(document height, scroll width) at each width, from headless Chromium; screenshots into `shots`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    page = Path(tempfile.mkdtemp()) / "edition.html"
    page.write_text(html, encoding="utf-8")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    found = {}
    try:
        for width in (600, 320):
            driver.set_window_size(width, 900)
            inner = driver.execute_script("return window.innerWidth")
            driver.set_window_size(width + (width - inner), 900)  # make the viewport itself `width` wide
            driver.get(page.as_uri())
            height = driver.execute_script("return document.documentElement.scrollHeight")
            scroll = driver.execute_script("return document.documentElement.scrollWidth")
            found[width] = (height, scroll)
            if shots:
                driver.set_window_size(width + (width - inner), height + 200)
                driver.save_screenshot(str(shots / f"edition-{width}.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return found


def budget_figures() -> None:
    """Bytes per card, and what the budget makes of 40, 60 and 100 long papers."""
    from newsletter.budget import fit, html_size, shortened
    from newsletter.config import DkimSection
    from newsletter.dkim_signing import Signer, generate_key, parse_key
    from newsletter.message import build_message, make_message_id
    from tests.test_budget import BASE, SUBSCRIBER, TOKEN, picks, render_with

    render = render_with(Renderer(RenderSettings(newsletter_name="Papers digest", base_url=BASE,
                                                 address="Papers digest · 1 Example Street · 12345 Example City")))
    signer = Signer(DkimSection(domain="example.org", selector="news", private_key_file="unused.pem"),
                    parse_key(generate_key("rsa"), "rsa"))
    empty = html_size(render([], 0))
    forty = picks(40)
    for label, some in (("the abstract as the template cuts it", forty), ("no abstract", shortened(forty, 0))):
        print(f"per card, {label}: {(html_size(render(some, 0)) - empty) / 40:,.0f} bytes of HTML")
    print(f"without cards: {empty:,} bytes")
    for count in (40, 60, 100):
        many = picks(count)
        fitted = fit(render, many)
        edition = fitted.edition
        eml = signer.sign(build_message(
            sender="Papers digest <news@example.org>", to_name=SUBSCRIBER.name, to_email=SUBSCRIBER.email,
            subject=edition.subject, html=edition.html, text=edition.text, list_name="Papers digest",
            message_id=make_message_id(SUBSCRIBER.email, DAY, "example.org"), unsubscribe_url=f"{BASE}/u?token={TOKEN}",
        ))
        print(f"{count} papers: {html_size(render(many, 0)):,} bytes of HTML as written -> {html_size(edition):,} "
              f"after the budget ({len(fitted.picks)} kept, abstracts at {fitted.abstract_words} words); "
              f".eml {len(eml):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="folder for edition-600.png and edition-320.png")
    parser.add_argument("--budget", action="store_true", help="bytes per card and 40/60/100-paper editions after the budget")
    args = parser.parse_args()
    if args.budget:
        budget_figures()
        return
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    html = edition_html()
    print(f"10-paper edition: {len(html.encode('utf-8')):,} bytes of HTML")
    for width, (height, scroll) in heights(html, args.screenshots).items():
        print(f"  at {width} px: {height:,} px tall, {scroll} px wide")


if __name__ == "__main__":
    main()
