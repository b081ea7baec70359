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
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import inscriptis
import jinja2
import mjml

from newsletter import mjml_source
from newsletter.display import ABSTRACT_CHARS, AUTHOR_CHARS, LINK_CHARS, NAME_CHARS, ORGANIZATION_CHARS, SUBJECT_CHARS, TITLE_CHARS, shown
from newsletter.keywords import parse_keywords
from newsletter.models import Pick, Subscriber

# an installed wheel ships the templates inside the package; a checkout keeps them in the repository's templates/
_PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILTIN_TEMPLATES = _PACKAGE_TEMPLATES if _PACKAGE_TEMPLATES.is_dir() else _PACKAGE_TEMPLATES.parent.parent / "templates"
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
INCLUDE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_./-]*")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SUBJECT_FIELDS = {"count": 10, "topics": "trending papers", "date": "25 Nov 2026", "name": "Ada"}
ABSTRACT_WORDS = 60
PREHEADER_CHARS = 140
TOPICS_CHARS = 120   # the topics in the subject and headline
WHY_CHARS = 500      # a pick's reasons, and the footer's "you get this because"


class TemplateError(Exception):
    """A template is missing or does not compile; the message names the file."""


@dataclass
class RenderSettings:
    """What the renderer needs from the config."""

    newsletter_name: str
    base_url: str
    address: str = ""
    subject: str = "{count} new papers on {topics} · {date}"
    templates_dir: Path | None = None
    language: str = "en"

    def __post_init__(self):
        if self.templates_dir is not None and not Path(self.templates_dir).is_dir():
            raise ValueError(f"templates_dir: {self.templates_dir} is not a directory")
        try:
            self.subject.format(**SUBJECT_FIELDS)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"subject: bad placeholder {error} in {self.subject!r} (use {{count}}, {{topics}}, {{date}}, {{name}})"
            ) from None


@dataclass
class RenderedEdition:
    """The rendered parts of one email; `count` is the number of papers in it."""

    subject: str
    html: str
    text: str
    count: int = 0


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


def keywords(subscriber: Subscriber) -> list[str]:
    """The topics the subscriber asked for, as written but without weights; no exclusions; none in trending mode."""
    if subscriber.mode == "trending":
        return []
    return [k.text for k in parse_keywords(list(subscriber.keywords)) if not k.exclude]


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
def cut_words(text: str, limit: int = ABSTRACT_WORDS) -> tuple[str, bool]:
    """The first `limit` words of `text` (whitespace collapsed) and whether anything was cut.

    Cached: the same abstracts come round for subscriber after subscriber.
    """
    words = text.split(None, limit)
    if len(words) <= limit:
        return " ".join(words), False
    return " ".join(words[:limit]).rstrip(".,;:") + "…", True


def safe_link(url: str) -> str:
    """The url if it is http(s) and of a sane length, else empty: a feed cannot slip a `javascript:`
    link, or a megabyte of one, into a mail."""
    ok = url.startswith(("https://", "http://")) and len(url) <= LINK_CHARS and shown(url) == url
    return url if ok else ""


def preheader(titles: list[str]) -> str:
    """The hidden inbox preview line: the first titles, cut near `PREHEADER_CHARS`."""
    text = " · ".join(titles)
    if len(text) <= PREHEADER_CHARS:
        return text
    return text[:PREHEADER_CHARS].rsplit(" ", 1)[0] + "…"


@dataclass(slots=True)
class Item:
    """The templates' view of one pick (`item`): plain attributes, which Jinja reads fastest."""

    number: int
    title: str
    link: str
    byline: str
    published: str
    upvotes: int | None
    abstract: str
    cut: bool
    why: str
    more_url: str = ""  # signed "more like this" / "fewer like this" links (newsletter/feedback.py)
    fewer_url: str = ""

    @classmethod
    def of(cls, number: int, pick: Pick, links: tuple[str, str] = ("", "")) -> "Item":
        """The view of the `number`th pick."""
        paper = pick.paper
        abstract, cut = cut_words(shown(paper.abstract, ABSTRACT_CHARS))
        return cls(
            number=number,
            title=shown(paper.title, TITLE_CHARS),
            link=safe_link(paper.link),
            byline=byline(paper.authors, paper.author_count, paper.organization),
            published=format_date(paper.published) if paper.published else "",
            upvotes=paper.upvotes,
            abstract=abstract,
            cut=cut or len(paper.abstract or "") > ABSTRACT_CHARS,
            why=shown("; ".join(pick.reasons), WHY_CHARS),
            more_url=links[0],
            fewer_url=links[1],
        )


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
        self._compiled: dict[str, tuple[list[str], tuple, jinja2.Template, jinja2.Template | None]] = {}

    def render(
        self,
        subscriber: Subscriber,
        day: date,
        picks: list[Pick],
        *,
        unsubscribe_url: str,
        profile_url: str | None = None,
        feedback_links: list[tuple[str, str]] | None = None,
        omitted: int = 0,
    ) -> RenderedEdition:
        """Render one edition; raises `TemplateError` for a missing or broken template.

        `feedback_links` holds each pick's ("more like this", "fewer like this") URLs;
        `omitted` is how many picks the size budget left out (newsletter/budget.py).
        """
        name = subscriber.template
        html_template, text_template = self._template(name)
        context = self.context(subscriber, day, picks, unsubscribe_url, profile_url, feedback_links, omitted=omitted)
        try:
            html = html_template.render(context)
            if text_template is not None:
                text = text_template.render(context)
            else:
                text = inscriptis.get_text(html).strip() + "\n"
        except jinja2.TemplateError as error:
            raise TemplateError(f"template {name!r}: {error}") from None
        return RenderedEdition(subject=context["subject"], html=html, text=text, count=len(picks))

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
        feedback_links: list[tuple[str, str]] | None = None,
        *,
        omitted: int = 0,
    ) -> dict:
        """The values the templates see for one edition."""
        settings = self.settings
        count = len(picks)
        wanted = keywords(subscriber)
        topic_text = shown(", ".join(wanted[:3]), TOPICS_CHARS) or "trending papers"
        date_label = format_date(day)
        name = shown(subscriber.name, NAME_CHARS).strip()
        subject = settings.subject.format(count=count, topics=topic_text, date=date_label, name=name)
        reason = "the most upvoted new papers"
        if wanted:
            reason = "new papers on " + ", ".join(wanted) + (" and " + reason if subscriber.mode == "mixed" else "")
        noun = "paper" if count == 1 else "papers"
        intro = ("here is what's new, best matches first." if wanted else "here is what's trending.") if count else (
            "nothing matched your profile today.")
        if omitted:  # the size budget's note; a "view in browser" link can point at the rest (`omitted` in templates)
            intro += f" {omitted} more {'paper' if omitted == 1 else 'papers'} did not fit in this email."
        return {
            "lang": settings.language,
            "subject": shown(" ".join(subject.split()), SUBJECT_CHARS),
            "newsletter_name": settings.newsletter_name,
            "base_url": settings.base_url,
            "address": settings.address,
            "date_label": date_label,
            "count": count,
            "topics": topic_text,
            "headline": f"{count} new {noun}" + (f" on {topic_text}" if wanted else "") if count else "No new papers today",
            "greeting": f"Hi {name}," if name else "Hello,",
            "intro": intro,
            "omitted": omitted,
            "preheader": preheader([shown(pick.paper.title, PREHEADER_CHARS) for pick in picks[:3]]),
            "items": [
                Item.of(number, pick, feedback_links[number - 1] if feedback_links else ("", ""))
                for number, pick in enumerate(picks, 1)
            ],
            "why_you_get_this": shown(f"You get this email because {subscriber.email} subscribed to "
                                      f"{settings.newsletter_name} for {reason}.", WHY_CHARS),
            "email": subscriber.email,
            "name": name,
            "unsubscribe_url": unsubscribe_url,
            "profile_url": profile_url,
        }

    def _template(self, name: str) -> tuple[jinja2.Template, jinja2.Template | None]:
        """The compiled HTML template for `name` and its text template (None: derive the text from the HTML).

        Recompiles when any file the MJML used, or a file that would now shadow it, changed
        (looked at once per `recheck_seconds`).
        """
        if not TEMPLATE_NAME.fullmatch(name):
            raise TemplateError(f"template {name!r}: use letters, digits, '-' and '_' only")
        cached = self._compiled.get(name)
        now = time.monotonic()
        if cached and now - self._checked[name] < self.recheck_seconds:
            return cached[2], cached[3]
        if cached and cached[1] == self._signature(cached[0]):
            self._checked[name] = now
            return cached[2], cached[3]
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
        text_template = None
        if sources[0][0].with_name(f"{name}.txt").is_file():
            try:
                text_template = self.text_env.get_template(f"{name}.txt")
            except jinja2.TemplateError as error:
                raise TemplateError(f"template {name!r}: {error}") from None
        self._compiled[name] = (used, self._signature(used), template, text_template)
        self._checked[name] = now
        return template, text_template

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


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None

