"""Download papers over HTTP (httpx) and parse them with the offline parsers.

Every request carries a descriptive User-Agent and a timeout; 429, 5xx and
connection errors are retried with exponential backoff, honouring `Retry-After`.
arXiv asks for at most one request every 3 seconds: all arXiv calls share one
`RateLimiter`. Sleep and clock functions are injectable so tests never wait.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from newsletter import __version__
from newsletter.sources import ParseResult, parse_bytes

USER_AGENT = f"newsletter/{__version__} (self-hosted research paper digest; python-httpx)"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
HF_DAILY_URL = "https://huggingface.co/api/daily_papers"
ARXIV_LISTING_URL = "https://rss.arxiv.org/atom/{}"
ARXIV_QUERY_URL = "https://export.arxiv.org/api/query"
CATEGORY = re.compile(r"[a-z-]+(?:\.[A-Za-z-]+)?")
MAX_HF_PAGES = 50


class FetchError(Exception):
    """A download failed for good; the message is one line naming the URL and the reason."""


class RateLimiter:
    """At most one request per `interval` seconds (arXiv asks for 3)."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.last: float | None = None

    def wait(self) -> None:
        """Sleep until `interval` has passed since the previous request, then mark this one."""
        if self.last is not None:
            remaining = self.last + self.interval - self.clock()
            if remaining > 0:
                self.sleep(remaining)
        self.last = self.clock()


ARXIV_LIMITER = RateLimiter(3.0)


def get(
    client: httpx.Client,
    url: str,
    params: dict | None = None,
    *,
    attempts: int = 4,
    backoff: float = 1.0,
    max_wait: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    limiter: RateLimiter | None = None,
) -> httpx.Response:
    """GET with retries on 429/5xx/connection errors; raise FetchError when it cannot succeed."""
    target = str(httpx.URL(url, params=params))
    attempt = 0
    while True:
        attempt += 1
        if limiter is not None:
            limiter.wait()
        delay = backoff * 2 ** (attempt - 1)
        try:
            response = client.get(url, params=params, headers={"User-Agent": USER_AGENT})
        except httpx.TransportError as error:
            problem = f"{type(error).__name__}: {error or 'connection failed'}"
        except httpx.HTTPError as error:   # too many redirects, undecodable body: retrying will not help
            raise FetchError(f"GET {target}: {type(error).__name__}: {error}") from None
        else:
            status = response.status_code
            if status < 400:
                return response
            problem = f"HTTP {status} {response.reason_phrase}".rstrip()
            if status != 429 and status < 500:
                raise FetchError(f"GET {target}: {problem}")
            delay = _retry_after(response) or delay
        if attempt >= attempts:
            raise FetchError(f"GET {target}: gave up after {attempts} attempts: {problem}")
        if delay > max_wait:
            raise FetchError(f"GET {target}: {problem}; the server asks to wait {delay:.0f} s, more than {max_wait:.0f} s")
        sleep(delay)


def fetch_hf_daily(
    day: date,
    *,
    client: httpx.Client | None = None,
    limit: int = 100,
    sleep: Callable[[float], None] = time.sleep,
) -> ParseResult:
    """The Hugging Face daily papers of `day`, paging p=0,1,... until a short page."""
    with _client(client) as http:
        result = ParseResult(f"{HF_DAILY_URL}?date={day.isoformat()}", "hf-api")
        seen: set[str] = set()
        for page in range(MAX_HF_PAGES):
            params = {"date": day.isoformat(), "limit": limit, "p": page}
            response = get(http, HF_DAILY_URL, params, sleep=sleep)
            part = parse_bytes(response.content, "hf-api", name=str(response.url))
            result.warnings.extend(part.warnings)
            new = [p for p in part.papers if p.id not in seen]
            seen.update(p.id for p in new)
            result.papers.extend(new)
            if not new or _item_count(response) < limit:
                break
        return result


def fetch_arxiv_listing(
    category: str,
    *,
    client: httpx.Client | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ParseResult:
    """Today's arXiv listing feed for a category such as `cs.AI` (new, cross-list and replaced)."""
    if not CATEGORY.fullmatch(category):
        raise ValueError(f"not an arXiv category: {category!r} (e.g. cs.AI, stat.ML, hep-th)")
    with _client(client) as http:
        response = get(http, ARXIV_LISTING_URL.format(category), sleep=sleep, limiter=limiter or ARXIV_LIMITER)
        return parse_bytes(response.content, "arxiv", name=str(response.url))


def fetch_arxiv_query(
    query: str,
    max_results: int = 100,
    *,
    client: httpx.Client | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ParseResult:
    """An arXiv export API search (`search_query` syntax, e.g. `cat:cs.CL AND ti:llm`), newest first."""
    if not 1 <= max_results <= 2000:
        raise ValueError(f"max_results must be between 1 and 2000, got {max_results}")
    params = {
        "search_query": query,
        "start": 0,
        "max_results": max_results,
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    with _client(client) as http:
        response = get(http, ARXIV_QUERY_URL, params, sleep=sleep, limiter=limiter or ARXIV_LIMITER)
        return parse_bytes(response.content, "arxiv", name=str(response.url))


def _client(client: httpx.Client | None) -> contextlib.AbstractContextManager[httpx.Client]:
    """The caller's client as is, or one of our own that is closed afterwards."""
    if client is not None:
        return contextlib.nullcontext(client)
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _item_count(response: httpx.Response) -> int:
    """How many items a daily papers page held, counting any the parser skipped."""
    try:
        items = json.loads(response.content)
    except ValueError:
        return 0
    return len(items) if isinstance(items, list) else 0
