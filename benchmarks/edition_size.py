"""The size of a 10-paper edition: HTML bytes, and its height in headless Chromium at 600 and 320 px.

Renders one trending edition of 10 real papers (the bundled test fixtures: the Hugging Face
daily-papers API, the arXiv listing and the arXiv export API, plus one page-dump paper without
an id) with the built-in templates, and, with `--screenshots DIR`, saves full-page screenshots
at both widths. Needs chromium and chromedriver (Debian: chromium chromium-driver).

    python benchmarks/edition_size.py --screenshots /tmp/shots
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="folder for edition-600.png and edition-320.png")
    args = parser.parse_args()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    html = edition_html()
    print(f"10-paper edition: {len(html.encode('utf-8')):,} bytes of HTML")
    for width, (height, scroll) in heights(html, args.screenshots).items():
        print(f"  at {width} px: {height:,} px tall, {scroll} px wide")


if __name__ == "__main__":
    main()
