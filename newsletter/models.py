"""The plain records that flow between the stages (README: "How it works").

`Paper`, `Pick` and `Edition` are dataclasses (cheap to build by the hundred
thousand); `Subscriber` is a pydantic model because it comes from user files
and must be validated.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator, model_validator

ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})(v\d+)?$")
FEEDBACK_SHARE = 0.3  # similar share a keyword or trending profile gains once it has "more like this" feedback
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def normalise_title(title: str) -> str:
    """Case-fold, drop punctuation and collapse whitespace: the key for title-only papers."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def strip_arxiv_version(arxiv_id: str) -> str:
    """`2412.20138v2` -> `2412.20138`; other strings are returned stripped."""
    arxiv_id = arxiv_id.strip()
    match = ARXIV_ID.search(arxiv_id)
    return match.group(1) if match else arxiv_id


def paper_id(arxiv_id: str | None, title: str) -> str:
    """The stable paper id: the arXiv id where known, else `t:` + a hash of the normalised title."""
    if arxiv_id:
        return strip_arxiv_version(arxiv_id)
    digest = hashlib.sha1(normalise_title(title).encode("utf-8")).hexdigest()[:16]
    return f"t:{digest}"


@dataclass(slots=True)
class Paper:
    """One paper as a source saw it, or as the store merged it from several sources.

    Unknown values stay `None` (never 0): `upvotes=None` means the source did not
    show a count, `author_count=None` that it did not say how many authors.
    """

    id: str
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    author_count: int | None = None
    organization: str | None = None
    published: date | None = None
    upvotes: int | None = None
    url: str | None = None
    arxiv_id: str | None = None
    github_repo: str | None = None
    github_stars: int | None = None
    ai_keywords: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    @classmethod
    def create(cls, title: str, *, arxiv_id: str | None = None, **fields) -> "Paper":
        """Build a paper, deriving its id (and a default author count) from what is given."""
        arxiv_id = strip_arxiv_version(arxiv_id) if arxiv_id else None
        title = " ".join(title.split())
        paper = cls(id=paper_id(arxiv_id, title), title=title, arxiv_id=arxiv_id, **fields)
        if paper.author_count is None and paper.authors:
            paper.author_count = len(paper.authors)
        return paper

    @property
    def link(self) -> str:
        """Where the title links to: the arXiv abstract page, else the source's own url."""
        if self.arxiv_id:
            return f"https://arxiv.org/abs/{self.arxiv_id}"
        return self.url or ""


Mode = Literal["trending", "keywords", "mixed", "similar"]
Frequency = Literal["daily", "weekly"]
WEEK_DAYS = 7  # a weekly edition covers the seven days ending on its date


class Subscriber(BaseModel):
    """One reader's profile, read from a TOML file in `[subscribers] dir`."""

    # defer_build: the validator (and email-validator's import) is built on first use, which a `send`
    # finding every file in the store's cache never comes to (see config.load_subscribers)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    email: EmailStr
    name: str = ""
    timezone: str = "UTC"
    send_at: time = time(7, 30)
    frequency: Frequency = "daily"
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS))
    mode: Mode = "trending"
    keywords: list[str] = Field(default_factory=list, validate_default=True)
    max_items: int = Field(default=10, ge=1, le=100)
    min_upvotes: int | None = Field(default=None, ge=0)
    max_age_days: int = Field(default=7, ge=1)
    trending_share: float = Field(default=0.3, ge=0.0, le=1.0)
    # mode "similar" / "mixed": papers like the ones in this library file (relative to the subscriber file)
    library: Path | None = Field(default=None, validate_default=True)
    similar_share: float | None = Field(default=None, ge=0.0, le=1.0)
    template: str = "digest"
    active: bool = True
    authors: list[str] = Field(default_factory=list)
    # what a day with nothing to send does: skip it, or send a short note saying why; None: `[schedule] skip_empty`
    empty: Literal["skip", "note"] | None = None

    @field_validator("authors")
    @classmethod
    def _named_authors(cls, value: list[str]) -> list[str]:
        names = [" ".join(name.split()) for name in value]
        if any(not name for name in names):
            raise ValueError("an author name is empty")
        return names

    @field_validator("days")
    @classmethod
    def _weekly_has_one_day(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("frequency") == "weekly" and len(value) != 1:
            raise ValueError(f'frequency "weekly" needs exactly one day, e.g. days = ["mon"] (got {value})')
        return value

    @model_validator(mode="after")
    def _weekly_default_day(self) -> "Subscriber":
        if self.frequency == "weekly" and "days" not in self.model_fields_set:
            object.__setattr__(self, "days", ["mon"])  # a weekly edition without days comes on Mondays
        return self

    @property
    def likes_library(self) -> bool:
        """Whether a library shapes the picks: a `similar` or `mixed` profile that names one."""
        return self.library is not None and self.mode in ("similar", "mixed")

    @property
    def weekly(self) -> bool:
        return self.frequency == "weekly"

    @property
    def window_days(self) -> int:
        """How many days back an edition may reach: the week for a weekly edition, else `max_age_days`."""
        return WEEK_DAYS - 1 if self.weekly else self.max_age_days

    @property
    def first_name(self) -> str:
        """`Ada` for "Ada Lovelace" (and for "Lovelace, Ada"); empty when there is no name."""
        name = self.name.strip()
        if "," in name:
            name = name.partition(",")[2].strip() or name.partition(",")[0]
        return name.split()[0] if name.split() else ""

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str) -> str:
        return value.lower()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("send_at", mode="before")
    @classmethod
    def _parse_send_at(cls, value):
        if isinstance(value, str):
            match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
            if not match or int(match[1]) > 23 or int(match[2]) > 59:
                raise ValueError(f"expected a time like \"07:30\", got {value!r}")
            return time(int(match[1]), int(match[2]))
        return value

    @field_validator("days", mode="before")
    @classmethod
    def _parse_days(cls, value):
        if isinstance(value, str):
            value = [value]
        days = []
        for day in value:
            key = str(day).strip().lower()[:3]
            if key not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r} (use mon, tue, wed, thu, fri, sat, sun)")
            days.append(key)
        return days

    @field_validator("keywords")
    @classmethod
    def _keywords_for_keyword_mode(cls, value: list[str], info: ValidationInfo) -> list[str]:
        mode = info.data.get("mode")
        if mode == "keywords" and not [k for k in value if not k.strip().startswith("-")]:
            raise ValueError(f"mode {mode!r} needs at least one keyword that is not an exclusion")
        return value

    @field_validator("library")
    @classmethod
    def _library_for_similar_mode(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        mode = info.data.get("mode")
        positive = [k for k in info.data.get("keywords", []) if not k.strip().startswith("-")]
        if mode == "similar" and value is None:
            raise ValueError('mode "similar" needs a library file, e.g. library = "my-library.bib"')
        if mode == "mixed" and value is None and not positive:
            raise ValueError("mode 'mixed' needs at least one keyword that is not an exclusion, or a library")
        return value

    @field_validator("similar_share")
    @classmethod
    def _shares_fit(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value + info.data.get("trending_share", 0.0) > 1.0:
            raise ValueError("trending_share + similar_share must be at most 1")
        return value

    def shares(self, has_positives: bool = False) -> tuple[float, float]:
        """(similar, trending) shares of the slots; the rest are keyword picks.

        A keyword or trending profile with "more like this" feedback gets `FEEDBACK_SHARE` similar picks.
        """
        if self.mode == "similar":
            return 1.0, 0.0
        if self.mode == "mixed":
            trending = self.trending_share
            if self.library is None and not has_positives:
                return 0.0, trending
            keywords = bool([k for k in self.keywords if not k.strip().startswith("-")])
            similar = self.similar_share
            if similar is None:
                similar = (1.0 - trending) / 2 if keywords else 1.0 - trending
            return similar, trending
        trending = 1.0 if self.mode == "trending" else 0.0
        if has_positives:
            return FEEDBACK_SHARE, trending - FEEDBACK_SHARE if trending else 0.0
        return 0.0, trending

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def sends_on(self, day: date) -> bool:
        """Whether this subscriber wants an edition on `day` (their local date)."""
        return WEEKDAYS[day.weekday()] in self.days


@dataclass(slots=True)
class Pick:
    """A paper chosen for a subscriber, with its score and why it was chosen."""

    paper: Paper
    score: float
    reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Edition:
    """One subscriber's email for one date."""

    subscriber: Subscriber
    date: date
    picks: list[Pick]
    subject: str = ""
    html: str = ""
    text: str = ""
    message_id: str = ""
    left_out: list[Pick] = field(default_factory=list)  # picks the size budget kept out of the email

    @property
    def count(self) -> int:
        """How many papers the edition carries."""
        return len(self.picks)
