"""Section widths as official MJML gives them, for every layout in templates/ (whatever sections it has).

mjml-python (MRML) drops the width of included sections and ignores a wrapper's padding
shorthand (see newsletter/mjml_source.py); desktop Outlook is the only client that shows it,
through the conditional tables, so this compares those tables and every section's max-width
with official MJML 5 from npm (`.cache/mjml`, as .ci/run installs it, or `mjml` on PATH). Without
it, the widths are checked against what MJML's rules give (body width less the wrapper's padding).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import jinja2
import pytest

from newsletter.mjml_source import expand_includes, prepare, zero_with_units
from newsletter.models import Paper, Pick, Subscriber
from newsletter.render import BUILTIN_TEMPLATES, Renderer, RenderSettings

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 25)
LAYOUTS = sorted(p.stem for p in BUILTIN_TEMPLATES.glob("*.mjml") if re.match(r"\s*<mjml\b", p.read_text(encoding="utf-8")))
CONDITIONAL = re.compile(r"<!--\[if mso \| IE\]>(.*?)<!\[endif\]-->", re.S)
TAG = re.compile(r"<(table|td)\b([^>]*)>")
SECTION_DIV = re.compile(r'<div\b[^>]*style="([^"]*margin:0px auto[^"]*)"')


def official_mjml() -> str | None:
    for candidate in (os.environ.get("MJML_BIN"), REPO / ".cache/mjml/node_modules/.bin/mjml", shutil.which("mjml")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def outlook_widths(html: str) -> list[tuple[str, str | None]]:
    """Each table and cell in Outlook's conditional HTML with its width in px (attribute or style)."""
    found = []
    for block in CONDITIONAL.findall(html):
        for tag, attributes in TAG.findall(block):
            width = re.search(r'\bwidth="(\d+)(?:px)?"', attributes) or re.search(r"[\s;\"]width:\s*([\d.]+%?)(?:px)?", " " + attributes)
            found.append((tag, width[1] if width else None))
    return found


def section_max_widths(html: str) -> list[str | None]:
    """The max-width of every section (and wrapper) box, in order."""
    return [(re.search(r"max-width:(\d+px)", style) or [None, None])[1] for style in SECTION_DIV.findall(html)]


def picks(count: int) -> list[Pick]:
    return [
        Pick(Paper.create(f"Paper {n}", arxiv_id=f"2411.{n:05d}", abstract="words " * 80, authors=["A B"], upvotes=n,
                          published=DAY), 1.0, ["trending"])
        for n in range(1, count + 1)
    ]


def rendered(layout: str) -> tuple[str, dict]:
    renderer = Renderer(RenderSettings(newsletter_name="Papers", base_url="https://news.example.org", address="1 Street"))
    subscriber = Subscriber(email="ada@example.org", name="Ada", template=layout)
    context = renderer.context(subscriber, DAY, picks(3), "https://news.example.org/u?t=x")
    return renderer.render(subscriber, DAY, picks(3), unsubscribe_url="https://news.example.org/u?t=x").html, context


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_section_has_its_max_width(layout):
    html, _ = rendered(layout)
    widths = section_max_widths(html)
    assert len(widths) >= 3, "expected sections in the compiled layout"
    assert all(w and w != "0px" for w in widths), widths
    for tag, width in outlook_widths(html):
        if tag == "td" and width is not None:
            assert not width.endswith("%"), f"an Outlook cell {width} wide: a section lost its width"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_outlook_widths_match_official_mjml(layout, tmp_path):
    html, context = rendered(layout)
    binary = official_mjml()
    if binary is None:
        expected_by_rules(layout, html)
        pytest.skip("official mjml not installed (npm install --prefix .cache/mjml mjml@5); checked MJML's width rules only")
    for path in BUILTIN_TEMPLATES.iterdir():
        if path.suffix == ".mjml":
            shutil.copy(path, tmp_path / path.name)
    result = subprocess.run(
        [binary, f"{layout}.mjml", "--config.allowIncludes", "true", "--config.validationLevel", "skip", "-s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    theirs = jinja2.Environment(autoescape=True).from_string(result.stdout).render(context)
    assert section_max_widths(html) == section_max_widths(theirs)
    assert outlook_widths(html) == outlook_widths(theirs)


def expected_by_rules(layout: str, html: str) -> None:
    """Without official MJML: sections are the body's width, or the body's less the padding of their wrapper."""
    source = prepare((BUILTIN_TEMPLATES / f"{layout}.mjml").read_text(), lambda f: (BUILTIN_TEMPLATES / f).read_text())
    body = int((re.search(r'<mj-body\b[^>]*\bwidth="(\d+)px"', source) or [0, 600])[1])
    allowed = {f"{body}px"}
    for tag in re.findall(r"<mj-wrapper\b[^>]*>", source):
        sides = {k: int(v) for k, v in re.findall(r'padding-(left|right)="(\d+)px"', tag)}
        allowed.add(f"{body - sides.get('left', 0) - sides.get('right', 0)}px")
    assert set(section_max_widths(html)) <= allowed


def test_includes_are_pasted_and_zero_padding_gets_units():
    files = {"card.mjml": '<mj-section><mj-column><mj-include path="inner.mjml" /></mj-column></mj-section>',
             "inner.mjml": "<mjml><mj-body><mj-text>hi</mj-text></mj-body></mjml>",
             "loop.mjml": '<mj-include path="loop.mjml"/>'}
    source = '<mj-wrapper padding="0 12px"><mj-include path="card.mjml" /><mj-include path="x.css" type="css"/></mj-wrapper>'
    out = prepare(source, files.__getitem__)
    assert "<mj-text>hi</mj-text>" in out and 'path="card.mjml"' not in out
    assert '<mj-include path="x.css" type="css"/>' in out  # left for the compiler
    assert '<mj-wrapper padding="0px 12px">' in out
    assert zero_with_units('<mj-section padding="0 12px 0" padding-left="9px"><mj-text padding="0">') == (
        '<mj-section padding="0px 12px 0px" padding-left="9px"><mj-text padding="0">')
    assert zero_with_units('<mj-wrapper padding="5px 10">') == '<mj-wrapper padding="5px 10">'
    with pytest.raises(ValueError, match="include loop"):
        expand_includes('<mj-include path="loop.mjml"/>', files.__getitem__)
