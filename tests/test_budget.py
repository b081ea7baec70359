"""The size budget: an edition's HTML stays under 100 KB whatever max_items says (Gmail clips at 102 KB).

The papers are the longest real ones in the fixtures (the 40 longest titles of the Hugging Face page
dumps, 99-145 characters, with their 600-1,900-character abstracts), each given an arXiv id so that
its card carries every link, the longest real author list and signed feedback links: a worst case.
"""

from __future__ import annotations

import email
import logging
from datetime import timedelta
from email import policy
from functools import cache
from pathlib import Path

import lxml.html
import pytest

from newsletter.budget import HTML_BUDGET, fit, html_size, shortened
from newsletter.feedback import feedback_url
from newsletter.models import Paper, Pick, Subscriber
from newsletter.pipeline import EditionBuilder, run_edition
from newsletter.render import Renderer, RenderSettings
from newsletter.sources import parse_file
from newsletter.store import Store
from tests.conftest import DAY

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE = "https://news.example.org"
KEY = b"budget-test-key-" * 2
SUBSCRIBER = Subscriber(email="ada.lovelace@mathematics.example.org", name="Ada Lovelace", mode="keywords",
                        keywords=["language models", "reinforcement learning"], max_items=100)
TOKEN = "YWRhLmxvdmVsYWNlQG1hdGhlbWF0aWNzLmV4YW1wbGUub3Jn.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"


@cache
def long_papers() -> tuple[Paper, ...]:
    """The 100 longest-titled distinct papers of the page dumps, with arXiv ids, dates, upvotes and long bylines."""
    found: dict[str, Paper] = {}
    for path in sorted((FIXTURES / "hf-pages").glob("*.txt")):
        for paper in parse_file(path, "auto", page_date=DAY).papers:
            if paper.abstract and len(paper.abstract) > len(found.get(paper.title, paper).abstract or ""):
                found[paper.title] = paper
            found.setdefault(paper.title, paper)
    authors = max((p.authors for p in parse_file(FIXTURES / "arxiv" / "api_tex_escapes.xml", "auto").papers), key=len)
    organization = max((p.organization or "" for p in found.values()), key=len) or "Stanford University"
    longest = sorted(found.values(), key=lambda p: (-len(p.title), -len(p.abstract or "")))[:100]
    return tuple(
        Paper.create(paper.title, arxiv_id=f"2411.{n:05d}", abstract=paper.abstract, authors=authors,
                     organization=paper.organization or organization, upvotes=1000 - n, published=DAY - timedelta(days=1))
        for n, paper in enumerate(longest, 1)
    )


def picks(count: int) -> list[Pick]:
    return [Pick(paper, 1.0, ["matches “language models”", f"trending #{n}"]) for n, paper in enumerate(long_papers()[:count], 1)]


@pytest.fixture(scope="module")
def renderer():
    return Renderer(RenderSettings(newsletter_name="Papers digest", base_url=BASE,
                                   address="Papers digest · 1 Example Street · 12345 Example City"))


def render_with(renderer, calls=None):
    """What EditionBuilder.build renders: signed feedback links for each pick, the web links, the omitted count."""
    def render(some, omitted):
        if calls is not None:
            calls.append(len(some))
        votes = [tuple(feedback_url(BASE, SUBSCRIBER.email, p.paper.id, kind, KEY) for kind in ("more", "fewer")) for p in some]
        return renderer.render(SUBSCRIBER, DAY, some, unsubscribe_url=f"{BASE}/unsubscribe?token={TOKEN}",
                               view_url=f"{BASE}/view/{DAY}?token={TOKEN}", archive_url=f"{BASE}/archive?token={TOKEN}",
                               feedback_links=votes, omitted=omitted)
    return render


def cards(html: str) -> list:
    return lxml.html.document_fromstring(html).xpath("//*[contains(concat(' ', @class, ' '), ' card ')]")


def card_titles(html: str) -> list[str]:
    return [" ".join(card.xpath(".//h2")[0].text_content().split()) for card in cards(html)]


def test_forty_long_papers_all_fit_with_shortened_abstracts(renderer, caplog):
    forty = picks(40)
    assert html_size(render_with(renderer)(forty, 0)) > HTML_BUDGET  # the problem is real: ~110 KB as written
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer), forty, who="ada@example.org")
    html = fitted.edition.html
    assert html_size(fitted.edition) < HTML_BUDGET
    assert fitted.dropped == 0 and fitted.picks == forty and fitted.edition.count == 40
    assert card_titles(html) == [pick.paper.title for pick in forty]  # every card, in order
    # abstracts were shortened, not left out: each card still opens its abstract (15 words: 2.1 KB a card without)
    assert fitted.abstract_words is not None and fitted.abstract_words >= 15
    for pick, card in zip(forty, cards(html), strict=True):
        assert " ".join(pick.paper.abstract.split()[:15]).rstrip(".,;:") in " ".join(card.text_content().split())
    assert "did not fit" not in html and "Unsubscribe" in html[-3000:]
    assert "ada@example.org" in caplog.text and f"abstracts cut to {fitted.abstract_words} words" in caplog.text
    assert "dropped" not in caplog.text
    assert all(len(pick.paper.abstract) > 500 for pick in forty)  # the papers themselves are not cut


@pytest.mark.parametrize("count", [60, 100])
def test_more_than_fit_drops_the_lowest_picks_and_says_so(renderer, caplog, count):
    many = picks(count)
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer), many)
    html = fitted.edition.html
    assert html_size(fitted.edition) < HTML_BUDGET
    kept = len(fitted.picks)
    assert 40 <= kept < count and fitted.picks == many[:kept]  # at least the 40 best stay, in order
    assert fitted.abstract_words == 0 and fitted.dropped == count - kept  # abstracts went before any pick
    assert card_titles(html) == [pick.paper.title for pick in many[:kept]]
    assert html_size(render_with(renderer)(shortened(many[:kept + 1], 0), count - kept - 1)) > HTML_BUDGET  # no room for one more
    note = f"{count - kept} more {'paper' if count - kept == 1 else 'papers'} did not fit in this email."
    assert note in html and note in " ".join(fitted.edition.text.split())  # the text part is wrapped
    assert "lowest picks dropped" in caplog.text and many[kept].paper.id in caplog.text
    assert "Unsubscribe" in html[-3000:]  # the footer is inside the budget


def test_a_normal_edition_is_rendered_once_and_untouched(renderer, caplog):
    calls = []
    ten = picks(10)
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer, calls), ten)
    assert calls == [10] and not fitted.trimmed and caplog.text == ""
    assert "did not fit" not in fitted.edition.html


def test_sent_editions_record_only_the_papers_that_fit_and_the_web_page_has_them_all(config):
    subscriber = Subscriber(email=SUBSCRIBER.email, name=SUBSCRIBER.name, max_items=100)  # trending: every paper qualifies
    with Store(config.store_url) as store:
        store.add_papers(long_papers())
        summary = run_edition(config, store, [subscriber], day=DAY)
        assert summary.sent == 1
        entry = store.ledger_entries(DAY, [subscriber.email])[subscriber.email]
        sent = store.sent_paper_ids([subscriber.email])[subscriber.email]
        builder = EditionBuilder(config, store)
        web, _ = builder.recorded(subscriber, DAY)  # the "View in browser" page
        again, _ = builder.build(subscriber, DAY, builder.picks_from_ledger(entry), entry.message_id)  # a resend
    kept = entry.paper_ids
    assert 40 <= len(kept) < 100 and set(kept) == sent  # the left-out ones can come another day
    assert [pick["id"] for pick in entry.picks[len(kept):]] == [p.id for p in long_papers()[len(kept):]]
    (eml,) = (config.base_dir / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert not message.defects
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert len(html.encode()) < HTML_BUDGET
    assert len(card_titles(html)) == len(kept)
    assert f"{100 - len(kept)} more papers did not fit" in " ".join(html.split())
    link = lxml.html.document_fromstring(html).xpath("//a[starts-with(., 'See all 100 in your browser')]/@href")
    assert link and link[0].startswith(f"{config.newsletter.base_url}/view/{DAY}?token=")
    assert f"All 100 papers are on the web page: {link[0]}" in " ".join(text.split())  # wrapped: the URL on its own line
    assert card_titles(web.html) == [paper.title for paper in long_papers()] and "did not fit" not in web.html
    assert again.html.splitlines() == html.splitlines() and [p.paper.id for p in again.picks] == kept  # a rebuild: the same email
