"""Editions rendered once and shared between readers are byte for byte what rendering each one gives."""

import os
import time
from datetime import date

import jinja2
import pytest

import newsletter.render as render
from newsletter.models import Paper, Pick, Subscriber
from newsletter.render import EmptyNote, Renderer, RenderSettings
from newsletter.shared_render import shareable

DAY = date(2026, 11, 25)
PAPERS = [
    Paper.create("Attention & <friends>: a \"study\"", arxiv_id="2411.00001", abstract="We study attention. It works.",
                 authors=["Zoë Ångström", "李雷"], upvotes=7, published=date(2026, 11, 24)),
    Paper.create("Diffusion for robots", url="https://example.org/p2", abstract="Robots " * 200, upvotes=1),
    Paper.create("A title that looks like a placeholder \ue000abcdef0\ue001 and {{ name }}", arxiv_id="2411.00003"),
]
READERS = [
    Subscriber(email="ada@example.org", name="Ada Lovelace", mode="keywords", keywords=["attention", "robots"]),
    Subscriber(email="bob+news@example.org", name="Bob <b>&amp; 'Bobby'", mode="keywords", keywords=["attention", "robots"]),
    Subscriber(email="chen@example.org", name="陈静 \"Jing\"", mode="keywords", keywords=["attention", "robots"]),
    Subscriber(email="dee@example.org", name="", mode="keywords", keywords=["attention", "robots"]),
    Subscriber(email="eve@example.org", name="E" * 300, mode="keywords", keywords=["attention", "robots"]),
    Subscriber(email="fay@example.org", name="Fay", mode="trending"),
    Subscriber(email="gus@example.org", name="Gus", mode="trending", frequency="weekly"),
    Subscriber(email="hal@example.org", name="Hal \ue000 marks \ue001", mode="trending"),
]


def picks(papers=PAPERS) -> list[Pick]:
    return [Pick(paper, 2.0 - n / 10, [f"matches “attention” #{n}"]) for n, paper in enumerate(papers)]


def unshared(monkeypatch, settings: RenderSettings) -> Renderer:
    """A renderer that renders every edition for its reader (sharing off), to compare against."""
    with monkeypatch.context() as patch:
        patch.setattr(render, "shareable", lambda tree: False)
        renderer = Renderer(settings)
        renderer.check("digest")  # compiled now, with sharing off
    return renderer


def editions(renderer: Renderer, reader: Subscriber, n: int):
    """The editions one reader can get, with and without each optional personal link."""
    links = [(f"https://n.example.org/feedback?token={reader.email}.{p.id}.more",
              f"https://n.example.org/feedback?token={reader.email}.{p.id}.fewer") for p in PAPERS]
    yield renderer.render(reader, DAY, picks(), unsubscribe_url=f"https://n.example.org/unsubscribe?token={reader.email}&x=1",
                          view_url=f"https://n.example.org/view/2026-11-25?token={n}", archive_url=f"https://n.example.org/archive?token={n}",
                          profile_url=f"https://n.example.org/profile?t={n}" if n % 2 else None, feedback_links=links)
    yield renderer.render(reader, DAY, picks(PAPERS[:2]), unsubscribe_url="https://n.example.org/u", omitted=3,
                          view_url="https://n.example.org/v" if n % 3 else "", summaries={PAPERS[0].id: "A TL;DR."})
    yield renderer.render(reader, DAY, [], unsubscribe_url="https://n.example.org/u",
                          note=EmptyNote(("There are no new papers in the store, so there is nothing to send today.",)))


@pytest.mark.parametrize("subject", ["", "{name}: {count} papers on {topics} · {day}"])
def test_shared_editions_equal_the_ones_rendered_for_each_reader(monkeypatch, subject):
    settings = RenderSettings(newsletter_name="Papers & Co", base_url="https://n.example.org", address="1 Main St", subject=subject)
    shared, alone = Renderer(settings), unshared(monkeypatch, settings)
    assert shared._template("digest")[2] and not alone._template("digest")[2]
    kept, filled = [], 0
    for _ in range(3):  # an edition's second reader makes its shared copy: the third round takes every one from them
        count = 0
        for n, reader in enumerate(READERS):
            for fast, slow in zip(editions(shared, reader, n), editions(alone, reader, n), strict=True):
                assert (fast.subject, fast.html, fast.text, fast.count) == (slow.subject, slow.html, slow.text, slow.count)
                assert fast.html_utf8 == slow.html.encode("utf-8")  # the shared copy's UTF-8 is joined from its parts
                filled += fast.encoded is not None
                count += 1
        kept.append(len(shared.shared._parts))
    assert 0 < kept[0] < kept[1] == kept[2] < count * 2 / 3  # readers of the same edition shared it
    assert filled >= count  # the third round at least
    assert not alone.shared._parts


def test_a_reader_sees_only_their_own_values():
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://n.example.org"))
    first = renderer.render(READERS[0], DAY, picks(), unsubscribe_url="https://n.example.org/u?t=ada")
    second = renderer.render(READERS[1], DAY, picks(), unsubscribe_url="https://n.example.org/u?t=bob")
    assert "ada" not in second.html.lower() and "ada" not in second.text.lower()
    assert "Hi Bob," in second.html and "Hi Bob," in second.text
    assert "bob+news@example.org" in second.html and "bob+news@example.org" in second.text
    assert "u?t=bob" in second.html and "u?t=bob" in second.text
    assert "\ue000abcdef0\ue001" in first.html  # a title spelling a placeholder is only text
    assert len(renderer.shared._parts) == 1


def test_a_changed_template_is_not_filled_from_the_old_one(tmp_path, monkeypatch):
    for name in ("digest.mjml", "paper.mjml", "digest.txt"):
        (tmp_path / name).write_text((render.BUILTIN_TEMPLATES / name).read_text())
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    before = renderer.render(READERS[0], DAY, picks(), unsubscribe_url="https://x/u")
    text = tmp_path / "digest.txt"
    text.write_text(text.read_text().replace("Unsubscribe with one click", "Leave with one click"))
    os.utime(text, ns=(time.time_ns() + 10**9,) * 2)
    after = renderer.render(READERS[1], DAY, picks(), unsubscribe_url="https://x/u")
    assert "Unsubscribe with one click" in before.text and "Leave with one click" in after.text


def test_a_template_that_transforms_a_personal_value_is_rendered_per_reader(tmp_path):
    layout = (render.BUILTIN_TEMPLATES / "digest.mjml").read_text().replace("{{ greeting }}", "{{ name|upper }}!")
    (tmp_path / "loud.mjml").write_text(layout)
    (tmp_path / "loud.txt").write_text("{{ name|upper }} {{ name|length }}\n")
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x", templates_dir=tmp_path))
    readers = [Subscriber(email=f"r{n}@example.org", name=name, template="loud") for n, name in enumerate(["ada", "bo"])]
    made = [renderer.render(reader, DAY, picks(), unsubscribe_url="https://x/u") for reader in readers]
    assert renderer._template("loud")[2] is False
    assert "ADA!" in made[0].html and "BO!" in made[1].html
    assert [m.text for m in made] == ["ADA 3\n", "BO 2\n"]


def parsed(source: str):
    return jinja2.Environment(autoescape=True).parse(source)


@pytest.mark.parametrize("source", [
    "{{ name }} {{ email }} <a href=\"{{ unsubscribe_url }}\">x</a>",
    "{% if view_url %}<a href=\"{{ view_url }}\">v</a>{% endif %}{% if not profile_url %}reply{% endif %}",
    "{% if omitted and view_url %}{{ count + omitted }}{% endif %}",
    "{% for item in items %}{{ item.title }}{% if item.more_url %}{{ item.more_url }} {{ item.fewer_url }}{% endif %}{% endfor %}",
    "{{ items|length }} {% if items %}some{% endif %}",
])
def test_plain_uses_of_personal_values_are_shareable(source):
    assert shareable(parsed(source))


@pytest.mark.parametrize("source", [
    "{{ name|upper }}",
    "{{ name[:3] }}",
    "{{ 'Dear ' ~ name }}",
    "{% set who = email %}{{ who }}",
    "{{ name if weekly else '' }}",
    "{{ items }}",
    "{% for item in items %}{{ item }}{% endfor %}",
    "{% for item in items %}{{ item.more_url|e }}{% endfor %}",
    "{{ items|map(attribute='more_url')|join(' ') }}",
    "{% for item in items %}{{ item['fewer_url'] }}{% endfor %}",
    "{% include 'footer.txt' %}",
    "{% autoescape false %}{{ name }}{% endautoescape %}",
    "{% if name is defined %}x{% endif %}",
    "{% macro card(x) %}{{ x }}{% endmacro %}{{ card(greeting) }}",
])
def test_other_uses_are_not(source):
    assert not shareable(parsed(source))


def test_the_built_in_templates_are_shared():
    renderer = Renderer(RenderSettings(newsletter_name="N", base_url="https://x"))
    assert renderer._template("digest")[2] is True
