"""Render one subscriber's edition: MJML compiled once per template, Jinja per subscriber.

A template is a set of files looked up by name in the user's `templates_dir` first,
then in the built-in `templates/`: `<name>.mjml` (the layout, which pulls in parts such
as `paper.mjml` with `<mj-include>`) and `<name>.txt` (the text/plain part). The MJML
is compiled to HTML once and kept until one of the files it used changes; Jinja (with
autoescape on) then fills the compiled HTML for each subscriber.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import mjml

from newsletter import mjml_source
from newsletter.display import ABSTRACT_CHARS, AUTHOR_CHARS, LINK_CHARS, NAME_CHARS, ORGANIZATION_CHARS, SUBJECT_CHARS, TITLE_CHARS, listed, shown
from newsletter.keywords import parse_keywords
from newsletter.models import Paper, Pick, Subscriber
from newsletter.shared_render import SharedRenders, shareable

# an installed wheel ships the templates inside the package; a checkout keeps them in the repository's templates/
_PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILTIN_TEMPLATES = _PACKAGE_TEMPLATES if _PACKAGE_TEMPLATES.is_dir() else _PACKAGE_TEMPLATES.parent.parent / "templates"
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
INCLUDE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_./-]*")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SUBJECT_FIELDS = {
    "count": 10, "topics": "trending papers", "date": "25 Nov 2026", "day": "25 Nov", "name": "Ada",
    "top": "A title", "more": 9, "period": "today",
}
SUMMARY_SENTENCES = 2
SUMMARY_CHARS = 260
TOP_TITLE_CHARS = 70
PREHEADER_CHARS = 140
TOPICS_CHARS = 120   # the topics in the subject and headline
WHY_CHARS = 500      # a pick's reasons, and the footer's "you get this because"
TEXT_WIDTH = 76
ACCENT = "#0b57d0"
HF_PAPER = "https://huggingface.co/papers/{}"
# a sentence ends at . ! ? followed by a space and a capital, digit or quote, but not after "e.g.", "et al." and the like
SENTENCE_END = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bal\.)(?<!\bvs\.)(?<!\bcf\.)(?<!\bFig\.)(?<!\bEq\.)(?<!\bSec\.)(?<!\bet\.)"
    r"(?<=[.!?])\s+(?=[\"“(A-Z0-9])"
)


class TemplateError(Exception):
    """A template is missing or does not compile; the message names the file."""


@dataclass
class RenderSettings:
    """What the renderer needs from the config; an empty `subject` means the natural subjects (see `subject_line`)."""

    newsletter_name: str
    base_url: str
    address: str = ""
    subject: str = ""
    templates_dir: Path | None = None
    language: str = "en"
    logo_url: str = ""
    accent_color: str = ACCENT

    def __post_init__(self):
        if self.templates_dir is not None and not Path(self.templates_dir).is_dir():
            raise ValueError(f"templates_dir: {self.templates_dir} is not a directory")
        try:
            self.subject.format(**SUBJECT_FIELDS)
        except (KeyError, IndexError, ValueError) as error:
            names = ", ".join("{" + name + "}" for name in SUBJECT_FIELDS)
            raise ValueError(f"subject: bad placeholder {error} in {self.subject!r} (use {names})") from None


@dataclass
class RenderedEdition:
    """The rendered parts of one email; `count` is the number of papers in it."""

    subject: str
    html: str
    text: str
    count: int = 0
    encoded: bytes | None = field(default=None, repr=False, compare=False)  # the HTML's UTF-8, when made with it

    @functools.cached_property
    def html_utf8(self) -> bytes:
        """The HTML as sent (the size budget measures it, the message carries it): encoded once."""
        return self.encoded if self.encoded is not None else self.html.encode("utf-8")


@dataclass(frozen=True)
class EmptyNote:
    """Why an edition has no papers: one sentence per cause, for the short "nothing today" email."""

    reasons: tuple[str, ...]


def template_names(templates_dir: Path | None) -> list[str]:
    """The templates a subscriber's `template` may name: the `<name>.mjml` files in `templates_dir`
    and the built-in folder that hold a whole `<mjml>` document (not a part such as `paper.mjml`)."""
    names = set()
    for directory in ([Path(templates_dir)] if templates_dir else []) + [BUILTIN_TEMPLATES]:
        for path in directory.glob("*.mjml"):
            try:
                with path.open("rb") as handle:
                    head = handle.read(4096)
            except OSError:
                continue
            if b"<mjml" in head and TEMPLATE_NAME.fullmatch(path.stem):
                names.add(path.stem)
    return sorted(names)


def unknown_template(name: str, names: list[str]) -> str | None:
    """The problem with a subscriber's `template = name`, or None when `names` has it."""
    if name in names:
        return None
    return f"no template {name!r} (have: {', '.join(names) or 'none'})"


def format_date(day: date) -> str:
    """`25 Nov 2026`, the same in every locale."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def short_date(day: date) -> str:
    """`1 Dec`: the date in a subject line."""
    return f"{day.day} {MONTHS[day.month - 1]}"


def keywords(subscriber: Subscriber) -> list[str]:
    """The topics the subscriber asked for, as written but without weights; no exclusions; none in trending
    or similar mode (a similar edition is about the reader's library)."""
    if subscriber.mode in ("trending", "similar"):
        return []
    return [k.text for k in parse_keywords(list(subscriber.keywords)) if not k.exclude]


def matched_topics(wanted: list[str], picks: list[Pick]) -> list[str]:
    """The subscriber's topics that today's picks matched (their reasons quote them), else all of them."""
    said = " ".join(reason for pick in picks for reason in pick.reasons)
    found = [topic for topic in wanted if f'"{topic}"' in said]
    return found or wanted


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word near `limit` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def byline(authors: list[str], author_count: int | None, organization: str | None) -> str:
    """`A, B, C et al. · Org`; `12 authors` when only the count is known; empty when nothing is.

    Each name and the organisation are cut for display (see `newsletter.display`)."""
    if authors:
        people = ", ".join(shown(a, AUTHOR_CHARS) for a in authors[:3]) + (" et al." if len(authors) > 3 else "")
    elif author_count:
        people = f"{author_count} author{'s' if author_count != 1 else ''}"
    else:
        people = ""
    return " · ".join(part for part in (people, shown(organization, ORGANIZATION_CHARS)) if part)


@functools.lru_cache(maxsize=4096)
def cut_summary(text: str, sentences: int = SUMMARY_SENTENCES, limit: int = SUMMARY_CHARS) -> tuple[str, bool]:
    """About two sentences of `text`, cut at a sentence boundary, and whether anything was cut.

    Whole sentences are kept while they fit in `limit` characters (at most `sentences`
    of them); a first sentence longer than that is cut at a word, with an ellipsis.
    Cached: the same abstracts come round for subscriber after subscriber.
    """
    text = " ".join(text.split())
    if not text:
        return "", False
    parts = SENTENCE_END.split(text)
    kept = parts[0]
    for part in parts[1:sentences]:
        if len(kept) + 1 + len(part) > limit:
            break
        kept += " " + part
    if len(kept) > limit:
        return shorten(kept, limit), True
    return kept, len(kept) < len(text)


def safe_link(url: str) -> str:
    """The url if it is http(s), of a sane length and names a paper, else empty.

    A feed cannot slip a `javascript:` link, or a megabyte of one, into a mail, and a search
    page (older page dumps stored a Hugging Face search for the title) is not dressed up as the paper.
    """
    if not (url.startswith(("https://", "http://")) and len(url) <= LINK_CHARS and shown(url) == url):
        return ""
    parts = urlsplit(url)
    if parts.path.rstrip("/") in ("/papers", "/search") and "q=" in parts.query:
        return ""
    return url


def preheader(titles: list[str]) -> str:
    """The hidden inbox preview line: the first titles, cut near `PREHEADER_CHARS`."""
    text = " · ".join(titles)
    if len(text) <= PREHEADER_CHARS:
        return text
    return text[:PREHEADER_CHARS].rsplit(" ", 1)[0] + "…"


def wrap_text(text: str, width: int = TEXT_WIDTH, *, remember: bool = True) -> str:
    """The plain-text part with every line wrapped at `width` columns, keeping each line's indent.

    Words are never split, so only a word longer than the line (a URL) passes `width`,
    on a line of its own after the indent. Lines without a link (titles, abstracts) come
    round edition after edition and are wrapped once; a line with a link carries the
    reader's signed token, and a line with `remember` False a reader's own values:
    caching those would only push the others out.
    """
    if "\n" not in text and (len(text) <= width or len(text.split(maxsplit=1)) == 1):
        return text  # one line that stays (a reader's link or short line in a shared edition), without the join
    return "\n".join(
        line if len(line) <= width or len(line.split(maxsplit=1)) == 1  # a lone link stays
        else wrap_line(line, width) if remember and "://" not in line else _wrap_line(line, width)
        for line in text.split("\n")
    )


NUMBERED = re.compile(r"\d+\. ")  # a numbered title: its next lines go under the title, not under the number


def _wrap_line(line: str, width: int) -> str:
    """One long line wrapped (see `wrap_text`)."""
    indent = line[: len(line) - len(line.lstrip())]
    number = NUMBERED.match(line)
    lines, current, first = [], "", True
    for word in line.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current, first = "", False
        current = f"{current} {word}" if current else (indent if first or number is None else " " * number.end()) + word
    lines.append(current)
    return "\n".join(lines)


wrap_line = functools.lru_cache(maxsize=8192)(_wrap_line)


def subject_line(subscriber: Subscriber, day: date, picks: list[Pick], wanted: list[str], note: bool) -> str:
    """The natural subject: `Trending today: <top title> and 7 more`, `Your papers: quantization, RL · 1 Dec`,
    `Like your library: <top title> and 9 more`."""
    period = "this week" if subscriber.weekly else "today"
    if note or not picks:
        return f"Nothing new {period} · {short_date(day)}" if subscriber.weekly else f"No new papers today · {short_date(day)}"
    if wanted:
        topics = matched_topics(wanted, picks)
        label = "Your papers this week" if subscriber.weekly else "Your papers"
        return f"{label}: {shorten(', '.join(topics[:3]), TOP_TITLE_CHARS)} · {short_date(day)}"
    more = f" and {len(picks) - 1} more" if len(picks) > 1 else ""
    label = ("Like your library" + (" this week" if subscriber.weekly else "")) if subscriber.likes_library else f"Trending {period}"
    return f"{label}: {shorten(picks[0].paper.title, TOP_TITLE_CHARS)}{more}"


@dataclass(slots=True)
class Item:
    """The templates' view of one pick (`item`): plain attributes, which Jinja reads fastest."""

    number: int
    title: str
    link: str  # where the title and "Read more" go: the arXiv page, else the source's own paper page, else ""
    arxiv_url: str
    hf_url: str
    byline: str
    published: str
    upvotes: int | None
    summary: str  # the stored one-sentence TL;DR when there is one, else about two sentences of the abstract
    tldr: bool
    cut: bool  # the summary is shorter than the abstract: worth a "Read more"
    why: str
    followed: bool  # pinned because a followed author wrote it

    more_url: str = ""  # signed "more like this" / "fewer like this" links (newsletter/feedback.py)
    fewer_url: str = ""

    @property
    def abstract(self) -> str:
        """The summary, under the name older templates use."""
        return self.summary

    @classmethod
    def of(cls, number: int, pick: Pick, tldr: str | None = None, links: tuple[str, str] = ("", "")) -> "Item":
        """The view of the `number`th pick; `tldr` is its stored summary, if any; `links` its feedback URLs."""
        why, followed = _why(tuple(pick.reasons))
        return cls(number=number, **paper_view(pick.paper, tldr), why=why, followed=followed,
                   more_url=links[0], fewer_url=links[1])


@functools.lru_cache(maxsize=20_000)
def _why(reasons: tuple[str, ...]) -> tuple[str, bool]:
    """A pick's "Why:" line, and whether it was pinned for a followed author (the same reasons come round often)."""
    return shown("; ".join(reasons), WHY_CHARS), any(reason.endswith("whom you follow") for reason in reasons)


def paper_view(paper: Paper, tldr: str | None) -> dict:
    """An `Item`'s fields that depend on the paper alone, cleaned for display (a shared dict: do not change it).

    Memoised on everything they are made from: the same papers come round for subscriber after
    subscriber, and cleaning an abstract of up to 8,000 characters is most of an item's cost.
    """
    return _paper_view(paper.title, paper.abstract, tuple(paper.authors), paper.author_count, paper.organization,
                       paper.published, paper.upvotes, paper.url, paper.arxiv_id, tldr)


@functools.lru_cache(maxsize=20_000)
def _paper_view(title, abstract, authors, author_count, organization, published, upvotes, url, arxiv_id, tldr) -> dict:
    summary, cut = cut_summary(shown(abstract, ABSTRACT_CHARS))
    cut = cut or len(abstract or "") > ABSTRACT_CHARS
    if tldr:
        summary, cut = shown(tldr, ABSTRACT_CHARS), bool(abstract)
    arxiv = f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else ""
    return {
        "title": shown(title, TITLE_CHARS),
        "link": arxiv or safe_link(url or ""),
        "arxiv_url": arxiv,
        "hf_url": HF_PAPER.format(arxiv_id) if arxiv_id else "",
        "byline": byline(authors, author_count, organization),
        "published": format_date(published) if published else "",
        "upvotes": upvotes,
        "summary": summary,
        "tldr": bool(tldr),
        "cut": cut,
    }


class Renderer:
    """Turns (subscriber, date, picks) into a `RenderedEdition`, reusing compiled templates."""

    def __init__(self, settings: RenderSettings, *, recheck_seconds: float = 0.0):
        """`recheck_seconds`: how long a compiled template is trusted before its files are looked at again;
        0 (the preview) looks on every render, a send run a few seconds: once per chunk, not per edition."""
        self.settings = settings
        self.recheck_seconds = recheck_seconds
        self._checked: dict[str, float] = {}
        self.dirs = [Path(settings.templates_dir)] if settings.templates_dir else []
        self.dirs.append(BUILTIN_TEMPLATES)
        self.html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        self.text_env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._compiled: dict[str, tuple[list[str], tuple, jinja2.Template, jinja2.Template | None, bool]] = {}
        self.shared = SharedRenders(wrap_text)

    def render(
        self,
        subscriber: Subscriber,
        day: date,
        picks: list[Pick],
        *,
        unsubscribe_url: str,
        profile_url: str | None = None,
        view_url: str = "",
        archive_url: str = "",
        summaries: dict[str, str] | None = None,
        note: EmptyNote | None = None,
        feedback_links: list[tuple[str, str]] | None = None,
        omitted: int = 0,
    ) -> RenderedEdition:
        """Render one edition; raises `TemplateError` for a missing or broken template.

        `summaries` maps paper ids to stored TL;DRs; `note` makes the short email of a day with no papers;
        `feedback_links` holds each pick's ("more like this", "fewer like this") URLs;
        `omitted` is how many picks the size budget left out (newsletter/budget.py).
        """
        name = subscriber.template
        html_template, text_template, shared = self._template(name)
        context = self.context(
            subscriber, day, picks, unsubscribe_url, profile_url,
            view_url=view_url, archive_url=archive_url, summaries=summaries, note=note, feedback_links=feedback_links,
            omitted=omitted,
        )

        def parts(values: dict) -> tuple[str, str]:
            try:
                html = html_template.render(values)
                text = text_template.render(values) if text_template is not None else text_of(html)
            except jinja2.TemplateError as error:
                raise TemplateError(f"template {name!r}: {error}") from None
            return html, text

        if shared:
            html, text, utf8 = self.shared.render((html_template, text_template), context, parts)
        else:
            html, text = parts(context)
            text, utf8 = wrap_text(text), None
        return RenderedEdition(subject=context["subject"], html=html, text=text, count=len(picks), encoded=utf8)

    def check(self, name: str) -> str | None:
        """None when template `name` is found and compiles, else the problem (naming the file)."""
        try:
            self._template(name)
        except TemplateError as error:
            return str(error)
        return None

    def context(
        self,
        subscriber: Subscriber,
        day: date,
        picks: list[Pick],
        unsubscribe_url: str,
        profile_url: str | None = None,
        *,
        view_url: str = "",
        archive_url: str = "",
        summaries: dict[str, str] | None = None,
        note: EmptyNote | None = None,
        feedback_links: list[tuple[str, str]] | None = None,
        omitted: int = 0,
    ) -> dict:
        """The values the templates see for one edition (every one is listed in docs/templates.md)."""
        settings = self.settings
        count = len(picks)
        wanted = keywords(subscriber)
        library = subscriber.likes_library
        topic_text = shown(", ".join(wanted[:3]), TOPICS_CHARS) or ("papers like your library" if library else "trending papers")
        date_label = format_date(day)
        weekly = subscriber.weekly
        period = "this week" if weekly else "today"
        name = shown(subscriber.name, NAME_CHARS).strip()
        if settings.subject:
            more = max(count - 1, 0)
            top = shorten(picks[0].paper.title, TOP_TITLE_CHARS) if picks else ""
            subject = settings.subject.format(
                count=count, topics=topic_text, date=date_label, day=short_date(day), name=name,
                top=top, more=more, period=period,
            )
        else:
            subject = subject_line(subscriber, day, picks, wanted, note is not None)
        asked = ["new papers on " + ", ".join(wanted)] if wanted else []
        if library:
            asked.append("papers like the ones in your library" if asked else "new papers like the ones in your library")
        if subscriber.mode in ("trending", "mixed") and (subscriber.mode == "trending" or subscriber.trending_share > 0 or not asked):
            asked.append("the most upvoted new papers")
        reason = listed(asked)
        if subscriber.authors:
            reason += " and the papers of " + ", ".join(subscriber.authors)
        if weekly:
            reason += ", once a week"
        noun = "paper" if count == 1 else "papers"
        if not count:
            headline = "Nothing new this week" if weekly else "No new papers today"
        elif wanted:
            headline = f"{count} new {noun} on {topic_text}" + (" this week" if weekly else "")
        elif library:
            headline = f"{count} new {noun} like your library" + (" this week" if weekly else "")
        else:
            headline = f"{count} trending {noun} {period}"
        if count:
            intro = "here is this week's best, best matches first." if weekly and (wanted or library) else (
                "here are this week's most upvoted papers." if weekly else (
                    "here is what's new, best matches first." if wanted or library else "here is what's trending."))
        else:
            intro = "there is nothing to send you " + period + "."
        first_name = shown(subscriber.first_name, NAME_CHARS)
        summaries = summaries or {}
        if omitted:  # the size budget's note; the "View in browser" page has every pick (the layout links it)
            intro += f" {omitted} more {'paper' if omitted == 1 else 'papers'} did not fit in this email."
        return {
            "lang": settings.language,
            "subject": shown(" ".join(subject.split()), SUBJECT_CHARS),
            "newsletter_name": settings.newsletter_name,
            "base_url": settings.base_url,
            "address": settings.address,
            "logo_url": safe_link(settings.logo_url),
            "accent_color": settings.accent_color,
            "date_label": date_label,
            "weekly": weekly,
            "period": period,
            "count": count,
            "topics": topic_text,
            "headline": headline,
            "greeting": f"Hi {first_name}," if first_name else "Hello,",
            "first_name": first_name,
            "intro": intro,
            "note": list(note.reasons) if note else [],
            "preheader": preheader([shown(pick.paper.title, PREHEADER_CHARS) for pick in picks[:3]]) if picks else (
                " ".join(note.reasons) if note else headline),
            "omitted": omitted,
            "items": [
                Item.of(number, pick, summaries.get(pick.paper.id), feedback_links[number - 1] if feedback_links else ("", ""))
                for number, pick in enumerate(picks, 1)
            ],
            "why_you_get_this": shown(f"You get this email because {subscriber.email} subscribed to "
                                      f"{settings.newsletter_name} for {reason}.", WHY_CHARS),
            "email": subscriber.email,
            "name": name,
            "unsubscribe_url": unsubscribe_url,
            "profile_url": profile_url,
            "view_url": view_url,
            "archive_url": archive_url,
        }

    def _template(self, name: str) -> tuple[jinja2.Template, jinja2.Template | None, bool]:
        """The compiled HTML template for `name`, its text template (None: derive the text from the HTML),
        and whether readers of the same edition can share one rendering of them (newsletter/shared_render.py).

        Recompiles when any file the MJML used, or a file that would now shadow it, changed
        (looked at once per `recheck_seconds`).
        """
        if not TEMPLATE_NAME.fullmatch(name):
            raise TemplateError(f"template {name!r}: use letters, digits, '-' and '_' only")
        cached = self._compiled.get(name)
        now = time.monotonic()
        if cached and now - self._checked[name] < self.recheck_seconds:
            return cached[2:]
        if cached and cached[1] == self._signature(cached[0]):
            self._checked[name] = now
            return cached[2:]
        used = [f"{name}.txt"]
        sources: list[tuple[Path, str]] = []
        problems: list[TemplateError] = []

        def read(file: str) -> str:
            try:
                path, text = self._read(file.removeprefix("./"), used)
            except TemplateError as error:  # the compiler would hide it behind its own message
                problems.append(error)
                raise
            sources.append((path, text))
            return text

        layout = read(f"{name}.mjml")
        try:
            source = mjml_source.prepare(layout, read)  # MRML's width bugs worked around; see mjml_source
            compiled = mjml_source.finish(
                mjml.mjml2html(source, include_loader=read, disable_comments=True, fonts={})
            )
        except TemplateError:
            raise problems[0] from None
        except (ValueError, RuntimeError) as error:
            raise (problems[0] if problems else TemplateError(f"{sources[0][0]}: {error}")) from None
        try:
            template = self.html_env.from_string(compiled)
        except jinja2.TemplateSyntaxError as error:
            raise self._locate(error, sources) from None
        text_template, shared = None, False
        if sources[0][0].with_name(f"{name}.txt").is_file():
            try:
                text_template = self.text_env.get_template(f"{name}.txt")
                text_source = self.text_env.loader.get_source(self.text_env, f"{name}.txt")[0]
                shared = shareable(self.html_env.parse(compiled)) and shareable(self.text_env.parse(text_source))
            except jinja2.TemplateError as error:
                raise TemplateError(f"template {name!r}: {error}") from None
        self._compiled[name] = (used, self._signature(used), template, text_template, shared)
        self._checked[name] = now
        return template, text_template, shared

    def _locate(self, error: jinja2.TemplateSyntaxError, sources: list[tuple[Path, str]]) -> TemplateError:
        """Name the file and line of a Jinja syntax error found in the compiled HTML."""
        for path, text in sources:
            try:
                self.html_env.parse(text)
            except jinja2.TemplateSyntaxError as found:
                return TemplateError(f"{path}:{found.lineno}: {found.message}")
        return TemplateError(f"{sources[0][0]}: {error.message}")

    def _read(self, file: str, used: list[str]) -> tuple[Path, str]:
        """Read a template file from the first directory that has it, noting its name in `used`."""
        if not INCLUDE_PATH.fullmatch(file) or ".." in file.split("/"):
            raise TemplateError(f"{file}: template paths are plain relative names")
        used.append(file)
        for directory in self.dirs:
            path = directory / file
            if path.is_file():
                return path, path.read_text(encoding="utf-8")
        raise TemplateError(f"{file}: not found in {', '.join(str(d) for d in self.dirs)}")

    def _signature(self, files: list[str]) -> tuple:
        """The modification time of every candidate path of `files` (None where absent)."""
        return tuple(_mtime(directory / file) for file in files for directory in self.dirs)


def text_of(html: str) -> str:
    """The text/plain part of a template that has no `<name>.txt`: the HTML as text."""
    import inscriptis  # with lxml, imported by the templates that need it only

    return inscriptis.get_text(html).strip() + "\n"


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None

