"""Rendering: structure and content read back from the parsed HTML, escaping, size, text part, caching."""

import os
from datetime import date
from pathlib import Path

import lxml.html
import pytest

import newsletter.render as render
from newsletter.models import Paper, Pick, Subscriber
from newsletter.render import Renderer, RenderSettings, TemplateError

DAY = date(2026, 11, 25)
UNSUBSCRIBE = "https://news.example.org/unsubscribe?token=abc.def"
LONG_ABSTRACT = " ".join(f"word{i}" for i in range(300))


def papers() -> list[Paper]:
    return [
        Paper.create(
            "Attention Is Not All You Need",
            arxiv_id="2103.03404v2",
            abstract=LONG_ABSTRACT,
            authors=["Yihe Dong", "Jean-Baptiste Cordonnier", "Andreas Loukas", "Fourth Author"],
            organization="Google",
            published=date(2026, 11, 24),
            upvotes=42,
        ),
        Paper.create(
            "Scaling laws for small models",
            url="https://huggingface.co/papers/t1",
            abstract="Short abstract.",
            author_count=12,
            published=date(2026, 11, 23),
        ),
        Paper.create("A paper nobody described", url="https://example.org/p3"),
    ]


def picks(items=None) -> list[Pick]:
    return [Pick(paper, 1.0, ["matches “attention”", "trending #3"]) for paper in (items or papers())]


ADA = Subscriber(email="ada@example.org", name="Ada", mode="keywords", keywords=["attention", "-crypto", "diffusion"])


@pytest.fixture
def renderer():
    return Renderer(RenderSettings(newsletter_name="Papers Daily", base_url="https://news.example.org", address="1 Main St, Zürich"))


def parse(html: str):
    return lxml.html.document_fromstring(html)


def cards(doc):
    return doc.xpath("//*[contains(concat(' ', @class, ' '), ' card ')]")


def text_of(element) -> str:
    return " ".join(element.text_content().split())


def test_each_paper_shows_its_fields(renderer):
    edition = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    first, second, third = (text_of(card) for card in cards(parse(edition.html)))
    doc = parse(edition.html)
    titles = doc.xpath("//h2")
    assert [text_of(h) for h in titles] == [p.title for p in papers()]
    assert [a.get("href") for a in doc.xpath("//h2/a")] == [
        "https://arxiv.org/abs/2103.03404",
        "https://huggingface.co/papers/t1",
        "https://example.org/p3",
    ]
    assert "Yihe Dong, Jean-Baptiste Cordonnier, Andreas Loukas et al. · Google" in first
    assert "Fourth Author" not in first
    assert "24 Nov 2026" in first and "42 upvotes" in first
    assert "Why: matches “attention”; trending #3" in first
    assert "12 authors" in second and "upvotes" not in second and "Short abstract." in second
    assert "authors" not in third and "upvotes" not in third and "et al." not in third


SENTENCES = (
    "We show that attention, e.g. in transformers, loses rank doubly exponentially with depth. "
    "Skip connections and MLPs stop it. Et al. have argued otherwise in many papers over the years, "
    "and we take their claims apart one by one with careful experiments. A fourth sentence."
)


def test_summary_is_two_sentences_with_read_more_and_paper_links(renderer):
    paper = Paper.create("Attention loses rank", arxiv_id="2103.03404v2", abstract=SENTENCES)
    doc = parse(renderer.render(ADA, DAY, [Pick(paper, 1.0, [])], unsubscribe_url=UNSUBSCRIBE).html)
    summary = doc.xpath("//p[contains(., 'doubly exponentially')]")[0]
    assert text_of(summary) == (
        "We show that attention, e.g. in transformers, loses rank doubly exponentially with depth. "
        "Skip connections and MLPs stop it."
    )
    links = {text_of(a): a.get("href") for a in cards(doc)[0].xpath(".//p[contains(@class, 'links')]//a")}
    assert links == {
        "Read more →": "https://arxiv.org/abs/2103.03404",
        "arXiv": "https://arxiv.org/abs/2103.03404",
        "Hugging Face": "https://huggingface.co/papers/2103.03404",
    }


def test_a_first_sentence_too_long_is_cut_at_a_word(renderer):
    edition = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    doc = parse(edition.html)
    abstract = doc.xpath("//p[contains(., 'word0')]")[0]
    assert text_of(abstract).endswith("…") and len(text_of(abstract)) <= render.SUMMARY_CHARS + 1
    assert doc.xpath("//a[contains(., 'Read more')]")[0].get("href") == "https://arxiv.org/abs/2103.03404"
    assert not cards(doc)[1].xpath(".//a[contains(., 'Read more')]")  # "Short abstract." is whole
    assert not cards(doc)[1].xpath(".//a[text()='Hugging Face']")  # no arXiv id, no paper page


def test_search_links_are_not_paper_links(renderer):
    search = Paper.create("From a page dump", url="https://huggingface.co/papers?q=From+a+page+dump", abstract="A. B.")
    doc = parse(renderer.render(ADA, DAY, [Pick(search, 1.0, [])], unsubscribe_url=UNSUBSCRIBE).html)
    assert not cards(doc)[0].xpath(".//a")


def test_header_footer_and_preheader(renderer):
    edition = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE, profile_url="https://news.example.org/me")
    doc = parse(edition.html)
    page = text_of(doc.body)
    assert "Papers Daily" in page and "25 Nov 2026" in page and "Hi Ada," in page
    hidden = doc.xpath("//body/div[contains(@style, 'display:none')]")[0]
    assert text_of(hidden).startswith("Attention Is Not All You Need · Scaling laws for small models")
    assert "ada@example.org subscribed to Papers Daily for new papers on attention, diffusion" in page
    assert doc.xpath("//a[text()='Unsubscribe']")[0].get("href") == UNSUBSCRIBE
    assert doc.xpath("//a[contains(., 'Change your topics')]")[0].get("href") == "https://news.example.org/me"
    assert "1 Main St, Zürich" in page
    anonymous = Subscriber(email="x@example.org")
    page = text_of(parse(renderer.render(anonymous, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html).body)
    assert "Hello," in page and "Hi " not in page and "reply to this email" in page


def test_footer_says_why_for_each_mode(renderer):
    def footer(subscriber):
        return text_of(parse(renderer.render(subscriber, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html).body)

    assert "for the most upvoted new papers." in footer(Subscriber(email="t@example.org"))
    mixed = Subscriber(email="m@example.org", mode="mixed", keywords=["agents", "-crypto"])
    assert "for new papers on agents and the most upvoted new papers." in footer(mixed)
    library = Path("ada-library.bib")
    assert "for new papers like the ones in your library." in footer(Subscriber(email="s@example.org", mode="similar", library=library))
    both = Subscriber(email="b@example.org", mode="mixed", keywords=["agents"], library=library)
    assert "for new papers on agents, papers like the ones in your library and the most upvoted new papers." in footer(both)
    no_trending = Subscriber(email="n@example.org", mode="mixed", keywords=["agents"], library=library, trending_share=0.0)
    assert "for new papers on agents and papers like the ones in your library." in footer(no_trending)


def test_a_similar_edition_speaks_of_the_library_not_of_trending(renderer):
    """A `similar` reader's edition: subject, headline and intro say the papers are like their library."""
    similar = Subscriber(email="s@example.org", mode="similar", library=Path("ada-library.bib"), keywords=["-survey"])
    close = [Pick(p, 1.0, ['close to "GPTQ" from your library']) for p in papers()]
    edition = renderer.render(similar, DAY, close, unsubscribe_url=UNSUBSCRIBE)
    assert edition.subject == "Like your library: Attention Is Not All You Need and 2 more"
    page = text_of(parse(edition.html).body)
    assert "3 new papers like your library" in page and "trending" not in page.lower()
    assert "here is what's new, best matches first." in page
    weekly = similar.model_copy(update={"frequency": "weekly", "days": ["mon"]})
    assert renderer.render(weekly, DAY, close, unsubscribe_url=UNSUBSCRIBE).subject.startswith("Like your library this week: ")


def test_an_empty_edition_still_renders(renderer):
    edition = renderer.render(ADA, DAY, [], unsubscribe_url=UNSUBSCRIBE)
    doc = parse(edition.html)
    assert not cards(doc) and "No new papers today" in text_of(doc.body) and edition.count == 0
    assert "No new papers today" in edition.text


def test_a_loop_of_ten_items_renders_ten_cards(renderer):
    ten = [Paper.create(f"Paper number {i}", url=f"https://example.org/{i}") for i in range(10)]
    doc = parse(renderer.render(ADA, DAY, picks(ten), unsubscribe_url=UNSUBSCRIBE).html)
    assert [text_of(h) for h in doc.xpath("//h2")] == [f"Paper number {i}" for i in range(10)]
    assert len(cards(doc)) == 10


@pytest.mark.parametrize("title", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'])
def test_titles_are_escaped(renderer, title):
    paper = Paper.create(title, url="https://example.org/x", abstract=title, authors=[title])
    edition = renderer.render(ADA, DAY, [Pick(paper, 1.0, [title])], unsubscribe_url=UNSUBSCRIBE)
    doc = parse(edition.html)
    assert not doc.xpath("//script") and not doc.xpath("//img") and not doc.xpath("//*[@onerror]")
    assert text_of(doc.xpath("//h2")[0]) == title
    assert title in edition.text  # the text part is not HTML and is not escaped


def test_only_web_links_are_linked(renderer):
    paper = Paper.create("Sneaky", url="javascript:alert(1)", abstract=LONG_ABSTRACT)
    doc = parse(renderer.render(ADA, DAY, [Pick(paper, 1.0, [])], unsubscribe_url=UNSUBSCRIBE).html)
    assert not doc.xpath("//a[contains(@href, 'javascript')]")
    assert text_of(doc.xpath("//h2")[0]) == "Sneaky"


def test_twenty_long_papers_stay_under_102_kb(renderer):
    many = [
        Paper.create(
            f"A rather long title about large language models and their many discontents, part {i}",
            arxiv_id=f"2411.{10000 + i}",
            abstract=LONG_ABSTRACT,
            authors=["Alice Example", "Bob Example", "Carol Example", "Dan Example"],
            organization="Some Long Organisation Name",
            published=DAY,
            upvotes=100 + i,
        )
        for i in range(20)
    ]
    html = renderer.render(ADA, DAY, picks(many), unsubscribe_url=UNSUBSCRIBE).html
    assert len(cards(parse(html))) == 20
    assert len(html.encode("utf-8")) < 102 * 1024


def test_dark_mode_language_and_mobile(renderer):
    html = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html
    doc = parse(html)
    assert doc.get("lang") == "en"
    assert doc.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]
    assert "prefers-color-scheme: dark" in " ".join(doc.xpath("//style/text()"))
    assert doc.xpath("//meta[@name='viewport']/@content") == ["width=device-width, initial-scale=1"]
    german = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", language="de"))
    assert parse(german.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html).get("lang") == "de"


def test_natural_subjects():
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x"))
    trending = Subscriber(email="t@example.org", name="Tim")
    assert renderer.render(trending, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).subject == (
        "Trending today: Attention Is Not All You Need and 2 more"
    )
    assert renderer.render(trending, DAY, picks()[:1], unsubscribe_url=UNSUBSCRIBE).subject == (
        "Trending today: Attention Is Not All You Need"
    )
    weekly = Subscriber(email="w@example.org", frequency="weekly")
    assert renderer.render(weekly, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).subject.startswith("Trending this week: ")
    quantized = [Pick(p, 1.0, ['matched "quantization" in title']) for p in papers()]
    profile = Subscriber(email="q@example.org", mode="keywords", keywords=["quantization", "RL", "-survey", "agents"])
    quantized[1].reasons = ['matched "RL" in abstract']
    assert renderer.render(profile, date(2026, 12, 1), quantized, unsubscribe_url=UNSUBSCRIBE).subject == (
        "Your papers: quantization, RL · 1 Dec"
    )
    assert renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).subject == (
        "Your papers: attention, diffusion · 25 Nov"  # nothing quoted in the reasons: all the topics
    )
    long = [Pick(Paper.create("A title " * 20, url="https://example.org/l"), 1.0, [])]
    assert len(renderer.render(trending, DAY, long, unsubscribe_url=UNSUBSCRIBE).subject) < 100


def test_custom_subject():
    trending = Subscriber(email="t@example.org", name="Tim")
    named = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", subject="{name}: {count} for {date}"))
    assert named.render(trending, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).subject == "Tim: 3 for 25 Nov 2026"
    top = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", subject="{top} (+{more}) {period} · {day}"))
    assert top.render(trending, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).subject == (
        "Attention Is Not All You Need (+2) today · 25 Nov"
    )
    with pytest.raises(ValueError, match="subject: bad placeholder 'when'"):
        RenderSettings(newsletter_name="N", base_url="https://x", subject="{when}")
    with pytest.raises(ValueError, match="templates_dir: .* is not a directory"):
        RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=Path("/no/such/dir"))


def test_greeting_uses_the_first_name(renderer):
    for name in ("Ada Lovelace", "Lovelace, Ada", "  Ada  "):
        subscriber = Subscriber(email="a@example.org", name=name)
        edition = renderer.render(subscriber, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
        assert "Hi Ada," in text_of(parse(edition.html).body) and "Hi Ada," in edition.text


def test_masthead_logo_accent_and_web_links():
    settings = RenderSettings(
        newsletter_name="Papers Daily", base_url="https://x", logo_url="https://x/logo.png", accent_color="#aa3300"
    )
    edition = Renderer(settings).render(
        ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE, view_url="https://x/view/v", archive_url="https://x/archive?a"
    )
    doc = parse(edition.html)
    assert doc.xpath("//img/@src") == ["https://x/logo.png"]
    assert "#aa3300" in edition.html
    first = doc.xpath("//a")[0]
    assert text_of(first) == "View in browser" and first.get("href") == "https://x/view/v"
    assert doc.xpath("//a[text()='Past editions']/@href") == ["https://x/archive?a"]
    assert edition.text.splitlines()[1:3] == ["View in browser:", "https://x/view/v"]  # a link on its own line
    assert "Past editions:\nhttps://x/archive?a\n" in edition.text
    plain = Renderer(RenderSettings(newsletter_name="N", base_url="https://x")).render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert not parse(plain.html).xpath("//img") and "View in browser" not in plain.html


def test_text_part(renderer):
    text = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).text
    assert "1. Attention Is Not All You Need\n" in text
    assert "   arXiv: https://arxiv.org/abs/2103.03404\n   Hugging Face: https://huggingface.co/papers/2103.03404\n" in text
    assert "   Read more: https://huggingface.co/papers/t1\n" in text
    assert "12 authors" in text and "42 upvotes" in text
    assert "Why: matches “attention”; trending #3" in text
    assert f"Unsubscribe with one click: {UNSUBSCRIBE}" in " ".join(text.split())
    assert "<" not in text and "&amp;" not in text


def test_text_part_lines_fit_76_columns_except_urls(renderer):
    long = Paper.create(
        "A very long title about many things " * 4, arxiv_id="2411.00001", abstract=SENTENCES,
        authors=["Someone With A Long Name"] * 5, organization="An Organisation With A Long Name Indeed",
    )
    subscriber = Subscriber(email="a-rather-long-address-for-testing@example.org", name="Ada", mode="keywords",
                            keywords=["attention", "long keyword phrase number one", "another long keyword phrase"])
    text = renderer.render(subscriber, DAY, [Pick(long, 1.0, ["matched " + "“attention” in title; " * 8])] + picks(),
                           unsubscribe_url=UNSUBSCRIBE + "x" * 120, view_url="https://news.example.org/view/" + "t" * 120).text
    for line in text.splitlines():
        words = line.split()
        assert len(line) <= 76 or (len(words) == 1 and words[0].startswith("https://")) or (
            words[-1].startswith("https://") and len(line) - len(words[-1]) <= 76), line
    lines = text.splitlines()
    title = next(n for n, line in enumerate(lines) if line.startswith("1. A very long title"))
    assert lines[title + 1].startswith("   ") and lines[title + 1][3] != " "  # under the title, not the number
    flowing = " ".join(text.split())
    assert "loses rank doubly exponentially with depth. Skip connections and MLPs stop it." in flowing
    assert "A fourth sentence" not in flowing and "View in browser: https://news.example.org/view/ttt" in flowing


def write(path, text):
    path.write_text(text, encoding="utf-8")


def test_user_templates_override_by_name(tmp_path):
    builtin_paper = (render.BUILTIN_TEMPLATES / "paper.mjml").read_text()
    write(tmp_path / "paper.mjml", builtin_paper.replace("Why: ", "Because: "))
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    edition = renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert "Because: matches" in text_of(parse(edition.html).body)
    assert "Why: matches" in edition.text  # the built-in digest.txt still makes the text part


def test_user_layout_without_text_template_gets_derived_text(tmp_path):
    write(
        tmp_path / "short.mjml",
        "<mjml><mj-body><mj-section><mj-column><mj-text>"
        "<h1>{{ headline }}</h1>{% for item in items %}<p>{{ item.title }}</p>{% endfor %}"
        "</mj-text></mj-column></mj-section></mj-body></mjml>",
    )
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    subscriber = Subscriber(email="s@example.org", template="short")
    text = renderer.render(subscriber, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).text
    assert "Scaling laws for small models" in text and "<p>" not in text


def test_mjml_is_compiled_once_and_again_only_when_a_file_changes(tmp_path, monkeypatch):
    calls = []
    compile_mjml = render.mjml.mjml2html
    monkeypatch.setattr(render.mjml, "mjml2html", lambda *a, **k: calls.append(1) or compile_mjml(*a, **k))
    for name in ("digest.mjml", "paper.mjml"):
        write(tmp_path / name, (render.BUILTIN_TEMPLATES / name).read_text())
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    for _ in range(5):
        renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert len(calls) == 1
    paper = tmp_path / "paper.mjml"
    write(paper, paper.read_text().replace("Why: ", "Reason: "))
    os.utime(paper, ns=(paper.stat().st_atime_ns, paper.stat().st_mtime_ns + 10**9))
    assert "Reason: matches" in renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html
    renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert len(calls) == 2
    (tmp_path / "digest.mjml").unlink()  # the built-in layout now applies
    renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert len(calls) == 3


def test_a_send_run_looks_at_template_files_once_per_recheck_window(tmp_path, monkeypatch):
    for name in ("digest.mjml", "paper.mjml"):
        write(tmp_path / name, (render.BUILTIN_TEMPLATES / name).read_text())
    settings = RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path)
    looked = []
    real_mtime = render._mtime
    monkeypatch.setattr(render, "_mtime", lambda path: looked.append(path) or real_mtime(path))
    clock = [1000.0]
    monkeypatch.setattr(render.time, "monotonic", lambda: clock[0])
    renderer = Renderer(settings, recheck_seconds=2.0)
    renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    compiled = len(looked)
    for _ in range(50):
        renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
    assert len(looked) == compiled  # no stat per edition within the window
    paper = tmp_path / "paper.mjml"
    write(paper, paper.read_text().replace("Why: ", "Reason: "))
    os.utime(paper, ns=(paper.stat().st_atime_ns, paper.stat().st_mtime_ns + 10**9))
    assert "Reason: matches" not in renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html
    clock[0] += 2.5  # the next chunk
    assert "Reason: matches" in renderer.render(ADA, DAY, picks(), unsubscribe_url=UNSUBSCRIBE).html


def test_template_problems_name_the_file(tmp_path):
    write(tmp_path / "broken.mjml", "<mjml><mj-body><mj-section>")
    write(tmp_path / "noinclude.mjml", '<mjml><mj-body><mj-include path="nope.mjml" /></mj-body></mjml>')
    write(tmp_path / "badjinja.mjml", "<mjml><mj-body><mj-raw>{% for x in %}</mj-raw></mj-body></mjml>")
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    for name, problem in [
        ("missing", "missing.mjml: not found"),
        ("../etc", "use letters, digits"),
        ("broken", "broken.mjml: unexpected end"),
        ("noinclude", "nope.mjml: not found"),
        ("badjinja", "badjinja.mjml:1: Expected an expression"),
    ]:
        with pytest.raises(TemplateError, match=problem):
            renderer.render(Subscriber(email="s@example.org", template=name), DAY, picks(), unsubscribe_url=UNSUBSCRIBE)
