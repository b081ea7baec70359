"""TeX in source text (arXiv above all): accents, dashes and text macros decoded, math left as written.

arXiv metadata is typed in TeX: `Andr\\'e`, `G\\"odel`, `{\\'e}`, `1--10`, `\\emph{…}`.
pylatexenc turns those into Unicode. Math (`$O(n^2)$`, `\\(…\\)`) stays verbatim:
half-decoding it (`\\alpha` to α but `^2` as typed) reads worse than the TeX
readers of papers know. An unknown macro is kept as typed rather than dropped,
and `%` and `&` are themselves, never a TeX comment (that would eat the rest of
the line) or an alignment tab. Text with no backslash, brace or `--` is returned as it is, at no cost.
"""

from __future__ import annotations

import functools
import re

from pylatexenc.latex2text import LatexNodes2Text

from newsletter.models import Paper, paper_id

TEX_HINT = re.compile(r"[\\{}]|--")
LITERAL = re.compile(r"(?<!\\)([%&])")  # a percent sign and an ampersand, not a comment or an alignment tab
MACRO_WITH_ARGUMENTS = re.compile(r"\\([A-Za-z]+)((?:\{[^{}\\]*\})+)")
PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
FONT_SWITCHES = frozenset({"em", "it", "bf", "sc", "rm", "sl", "tt", "sf", "normalfont", "itshape", "bfseries"})


class _Decoder(LatexNodes2Text):
    """LatexNodes2Text keeping unknown macros as typed (its default drops them); old font switches go."""

    def macro_node_to_text(self, node):
        if node.macroname in FONT_SWITCHES:
            return ""
        if self.latex_context.get_macro_spec(node.macroname) is None:
            return node.latex_verbatim()
        return super().macro_node_to_text(node)


@functools.lru_cache(maxsize=1)
def _decoder() -> _Decoder:
    return _Decoder(math_mode="verbatim", strict_latex_spaces=True)


@functools.lru_cache(maxsize=8192)
def decode_tex(text: str) -> str:
    """`text` with TeX accents, dashes and text macros as Unicode; whitespace runs collapsed when decoded."""
    if not text or not TEX_HINT.search(text):
        return text
    decoder = _decoder()
    kept: list[str] = []

    def keep_unknown(match: re.Match) -> str:  # `\newmacro{x}` stays whole, braces and all
        if decoder.latex_context.get_macro_spec(match[1]) is not None:
            return match[0]
        kept.append(match[0])
        return f"\ue000{len(kept) - 1}\ue001"

    try:
        decoded = decoder.latex_to_text(LITERAL.sub(r"\\\1", MACRO_WITH_ARGUMENTS.sub(keep_unknown, text)))
    except Exception:  # pylatexenc is tolerant, but a source's text must never stop an ingest
        return text
    return " ".join(PLACEHOLDER.sub(lambda m: kept[int(m[1])], decoded).split())


def decode_paper(paper: Paper) -> Paper:
    """`paper` with its title, abstract, author names and organisation decoded (in place, returned).

    A title-only paper's id is a hash of its title: it follows the decoded title, so the same
    paper typed with `\\'e` and with `é` is one paper.
    """
    title = " ".join(decode_tex(paper.title).split())
    if title != paper.title and paper.id == paper_id(paper.arxiv_id, paper.title):
        paper.id = paper_id(paper.arxiv_id, title)
    paper.title = title
    paper.abstract = decode_tex(paper.abstract)
    paper.authors = [decode_tex(name) for name in paper.authors]
    if paper.organization:
        paper.organization = decode_tex(paper.organization)
    return paper
