"""The size budget: every edition's HTML stays under `HTML_BUDGET`, whatever `max_items` says.

Gmail clips a message whose HTML passes ~102 KB and hides the rest behind a link,
footer and unsubscribe link included. An edition over budget is made smaller in
this order: abstracts shortened (down to none), then the
lowest picks dropped, until it fits. What was cut is logged, and the edition says
that more papers did not fit (the template sees `omitted`; the intro says it).
Most editions fit at once and are rendered once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from newsletter.models import Pick
from newsletter.render import RenderedEdition

HTML_BUDGET = 100_000  # bytes of HTML (UTF-8), a margin below Gmail's ~102 KB
ABSTRACT_STEPS = (40, 25, 15, 8, 0)  # words, tried in turn before any pick is dropped (0: title and byline only)

log = logging.getLogger("newsletter.budget")

# render(picks, omitted) -> the rendered edition
RenderFunction = Callable[[list[Pick], int], RenderedEdition]


@dataclass
class Fitted:
    """The edition that fits, the picks it holds, and what was cut to get there."""

    edition: RenderedEdition
    picks: list[Pick]
    abstract_words: int | None = None  # None: abstracts as the template cuts them
    dropped: int = 0

    @property
    def trimmed(self) -> bool:
        return self.abstract_words is not None or self.dropped > 0


def html_size(edition: RenderedEdition) -> int:
    return len(edition.html_utf8)


def cut_words(text: str, limit: int) -> tuple[str, bool]:
    """The first `limit` words of `text` (whitespace collapsed) and whether anything was cut."""
    words = text.split(None, limit)
    if len(words) <= limit:
        return " ".join(words), False
    return " ".join(words[:limit]).rstrip(".,;:") + "…", True


def shortened(picks: list[Pick], words: int) -> list[Pick]:
    """The picks with each abstract cut to `words` words (the papers themselves are not changed)."""
    return [replace(pick, paper=replace(pick.paper, abstract=cut_words(pick.paper.abstract, words)[0] if words else ""))
            for pick in picks]


def fit(render: RenderFunction, picks: list[Pick], *, budget: int = HTML_BUDGET, who: str = "") -> Fitted:
    """Render `picks` within `budget` bytes of HTML: shorter abstracts first, then fewer picks."""
    edition = render(picks, 0)
    size = html_size(edition)
    if size <= budget or not picks:
        return Fitted(edition, picks)
    first_size = size
    for words in ABSTRACT_STEPS:
        short = shortened(picks, words)
        edition = render(short, 0)
        size = html_size(edition)
        if size <= budget:
            fitted = Fitted(edition, picks, abstract_words=words)
            _log(who, first_size, fitted, budget)
            return fitted
    # drop the lowest picks: estimate from the size per pick, then step until it fits
    base = html_size(render([], len(picks)))
    kept = len(picks)
    while kept > 1 and size > budget:
        per_pick = max((size - base) / kept, 1)
        kept = max(1, min(kept - 1, int((budget - base) / per_pick)))
        edition = render(short[:kept], len(picks) - kept)
        size = html_size(edition)
    fitted = Fitted(edition, picks[:kept], abstract_words=ABSTRACT_STEPS[-1], dropped=len(picks) - kept)
    _log(who, first_size, fitted, budget, [pick.paper.id for pick in picks[kept:]])
    return fitted


def _log(who: str, first_size: int, fitted: Fitted, budget: int, dropped_ids: list[str] = ()) -> None:
    cuts = [f"abstracts cut to {fitted.abstract_words} words" if fitted.abstract_words else "abstracts left out"]
    if fitted.dropped:
        shown = ", ".join(dropped_ids[:10]) + (f" and {len(dropped_ids) - 10} more" if len(dropped_ids) > 10 else "")
        cuts.append(f"the {fitted.dropped} lowest picks dropped ({shown})")
    log.warning(
        "%s%d KB of HTML is over the %d KB budget (Gmail clips at 102 KB): %s; now %d KB",
        f"{who}: " if who else "", round(first_size / 1000), budget // 1000, " and ".join(cuts),
        round(html_size(fitted.edition) / 1000),
    )
