"""TeX in source text: real arXiv escapes decoded, math and plain text left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter.models import Paper
from newsletter.sources import parse_file
from newsletter.tex import decode_tex

FEEDS = Path(__file__).parent / "fixtures" / "arxiv"


@pytest.mark.parametrize(
    "tex, text",
    [
        (r"Paulo Andr\'e Lima de Castro", "Paulo André Lima de Castro"),
        (r"Kurt G\"odel", "Kurt Gödel"),
        (r"{\'e}cole", "école"),
        (r"J{\"u}rgen M\"{u}ller", "Jürgen Müller"),
        (r"S{\o}ren \AA{}ngstr\"om", "Søren Ångström"),
        (r"Fran\c{c}ois Pe\~na Dvo\v{r}\'ak", "François Peña Dvořák"),
        (r"pages 1--10 --- a dash", "pages 1–10 — a dash"),
        (r"\emph{Attention} is \textbf{all} you need", "Attention is all you need"),
        (r"{\em Old} font switch", "Old font switch"),
        (r"30\% better", "30% better"),
        ("5% better -- and the rest of the line stays", "5% better – and the rest of the line stays"),
        (r"R&D \& more -- yes", "R&D & more – yes"),
        (r"a tie: Fig.~3 of {BERT}", "a tie: Fig. 3 of BERT"),
    ],
)
def test_real_escapes(tex, text):
    assert decode_tex(tex) == text


@pytest.mark.parametrize(
    "math",
    [r"in $O(n^2)$ time", r"a $\mathcal{O}(n \log n)$ bound", r"inline \(x_1 + \alpha\) math", r"cost $\$5$ each"],
)
def test_math_is_left_as_typed(math):
    assert decode_tex(math) == math


@pytest.mark.parametrize(
    "plain",
    ["Attention Is All You Need", "~10x faster", "C++ and 3 < 4 > 2", "x^2 and a_b, 50% off", "", "https://example.org/a_b?x=1"],
)
def test_plain_text_is_unchanged(plain):
    assert decode_tex(plain) == plain


def test_unknown_macros_are_kept_and_broken_tex_does_not_raise():
    assert decode_tex(r"the \newmacro{x} stays") == r"the \newmacro{x} stays"
    assert decode_tex("{Unclosed brace") == "Unclosed brace"
    assert decode_tex(r"x \textit{y") == "x y"


def test_arxiv_feed_with_escapes():
    result = parse_file(FEEDS / "api_tex_escapes.xml")
    assert result.warnings == []
    first, second = result.papers
    assert first.title == "Reinforcement Learning for Portfolio Management: A Étude of Risk–Return Trade-offs"
    assert first.authors == ["Paulo André Lima de Castro", "Jürgen Müller", "Søren Kierkegaard", "François Peña"]
    assert "mean–variance" in first.abstract and "30% higher" in first.abstract
    assert "$O(n^2)$" in first.abstract and r"$\mathcal{O}(n^3)$" in first.abstract
    assert "naïve" in first.abstract and "Schrödinger" in first.abstract and "Gödel" in first.abstract
    assert "for 5% of the worst cases too — see" in first.abstract  # a bare % is not a comment
    assert second.title == "Plain title with no TeX: 3 < 4 & C++ – or not?"
    assert second.abstract.endswith(r"the unknown \newmacro{x} kept as typed.")


def test_every_source_and_the_title_key_see_decoded_text(tmp_path):
    line = {"title": r"Caf\'e {\'e}t\'e", "abstract": r"30\% --- ok", "authors": [r"Andr\'e"]}
    path = tmp_path / "papers.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (paper,) = parse_file(path).papers
    assert (paper.title, paper.abstract, paper.authors) == ("Café été", "30% — ok", ["André"])
    assert paper.id == Paper.create("Café été").id
