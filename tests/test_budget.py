"""The size budget: an edition's HTML stays under 100 KB whatever max_items says (Gmail clips at 102 KB)."""

from __future__ import annotations

import email
import logging
from datetime import date, timedelta
from email import policy

import pytest

from newsletter.budget import HTML_BUDGET, fit, html_size
from newsletter.models import Paper, Pick, Subscriber
from newsletter.pipeline import run_edition
from newsletter.render import Renderer, RenderSettings
from newsletter.store import Store
from tests.conftest import DAY

# an arXiv-length abstract (~190 words, real words of real length)
ABSTRACT = (
    "Large language models trained with reinforcement learning from human feedback show strong reasoning on "
    "benchmarks, yet their behaviour under distribution shift remains poorly understood. We study how policy "
    "optimisation interacts with reward model misspecification across twelve tasks, including mathematical "
    "problem solving, code generation and multi-turn dialogue. Our analysis reveals that over-optimisation "
    "arises early in training and is strongly correlated with the entropy of the sampling distribution. "
) * 2
SUBSCRIBER = Subscriber(email="reader@example.org", name="Reader", mode="keywords",
                        keywords=["language models", "reinforcement learning"], max_items=100)
UNSUBSCRIBE = "https://news.example.org/unsubscribe?token=" + "x" * 90


def papers(count: int) -> list[Paper]:
    return [
        Paper.create(f"Scaling Laws for Reward Model Overoptimization in Direct Alignment Algorithms, part {n}",
                     arxiv_id=f"2411.{n:05d}", abstract=ABSTRACT, upvotes=200 - n, published=DAY - timedelta(days=1),
                     authors=["Rafael Rafailov", "Yaswanth Chittepu", "Ryan Park", "Harshit Sikchi"], organization="Stanford")
        for n in range(1, count + 1)
    ]


@pytest.fixture(scope="module")
def renderer():
    return Renderer(RenderSettings(newsletter_name="Papers digest", base_url="https://news.example.org", address="1 Street"))


def render_with(renderer, calls=None):
    def render(picks, omitted):
        if calls is not None:
            calls.append(len(picks))
        return renderer.render(SUBSCRIBER, DAY, picks, unsubscribe_url=UNSUBSCRIBE, omitted=omitted)
    return render


def picks(count: int) -> list[Pick]:
    return [Pick(paper, 1.0, ["matches “language models”"]) for paper in papers(count)]


def test_forty_papers_lose_their_abstracts_before_any_pick(renderer, caplog):
    # the issue-21 cards (byline, arXiv and Hugging Face links, why) cost ~2.6 KB each without an abstract,
    # so 40 of them no longer all fit in 100 KB: abstracts go first, then only the few lowest picks
    forty = picks(40)
    assert html_size(render_with(renderer)(forty, 0)) > HTML_BUDGET  # the problem is real
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer), forty, who="reader@example.org")
    assert html_size(fitted.edition) <= HTML_BUDGET
    assert fitted.dropped <= 5 and len(fitted.picks) == fitted.edition.count == 40 - fitted.dropped
    assert fitted.abstract_words is not None
    assert "reader@example.org" in caplog.text and "did not fit" in fitted.edition.html
    assert all(pick.paper.abstract == ABSTRACT for pick in forty)  # the papers themselves are not cut


@pytest.mark.parametrize("count", [60, 100])
def test_more_than_fit_drops_the_lowest_picks_and_says_so(renderer, caplog, count):
    many = picks(count)
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer), many)
    assert html_size(fitted.edition) <= HTML_BUDGET
    kept = len(fitted.picks)
    assert 30 <= kept < count and fitted.picks == many[:kept]  # the best ones stay, in order (~2.6 KB a card)
    assert fitted.dropped == count - kept
    note = f"{count - kept} more papers did not fit in this email."
    assert note in fitted.edition.html and note in " ".join(fitted.edition.text.split())  # the text part is wrapped
    assert "lowest picks dropped" in caplog.text and many[kept].paper.id in caplog.text
    assert "Unsubscribe" in fitted.edition.html[-3000:]  # the footer is inside the budget


def test_a_normal_edition_is_rendered_once_and_untouched(renderer, caplog):
    calls = []
    ten = picks(10)
    with caplog.at_level(logging.WARNING, logger="newsletter.budget"):
        fitted = fit(render_with(renderer, calls), ten)
    assert calls == [10] and not fitted.trimmed and caplog.text == ""
    assert "did not fit" not in fitted.edition.html


def test_sent_editions_record_only_the_papers_that_fit(config):
    with Store(config.store_url) as store:
        store.add_papers(papers(100))
        summary = run_edition(config, store, [SUBSCRIBER], day=DAY)
        assert summary.sent == 1
        entry = store.ledger_entries(DAY, [SUBSCRIBER.email])[SUBSCRIBER.email]
        sent = store.sent_paper_ids([SUBSCRIBER.email])[SUBSCRIBER.email]
    assert 25 <= len(entry.paper_ids) < 100 and set(entry.paper_ids) == sent  # cards with web and feedback links: ~3.3 KB each
    (eml,) = (config.base_dir / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    assert len(html.encode()) <= HTML_BUDGET
    assert f"{100 - len(entry.paper_ids)} more papers did not fit" in html
