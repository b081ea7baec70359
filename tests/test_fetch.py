"""Fetching over HTTP with recorded responses (httpx.MockTransport); nothing real is slept or sent."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import httpx
import pytest

from newsletter.sources.fetch import (
    FetchError,
    RateLimiter,
    fetch_arxiv_listing,
    fetch_arxiv_query,
    fetch_hf_daily,
)

FIXTURES = Path(__file__).parent / "fixtures"
DAILY = (FIXTURES / "hf-api" / "daily_papers.json").read_bytes()
WEEKEND = (FIXTURES / "hf-api" / "daily_papers_weekend.json").read_bytes()
LISTING = (FIXTURES / "arxiv" / "rss_listing.xml").read_bytes()
QUERY = (FIXTURES / "arxiv" / "api_query_testing.xml").read_bytes()
DAY = date(2026, 9, 23)


class FakeTime:
    """A clock that only moves when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(*responses) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client answering each request with the next of `responses` (a Response, or an exception to raise)."""
    requests: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler)), requests


def ok(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body)


def test_hf_daily_success():
    client, requests = client_for(ok(DAILY))
    fake = FakeTime()
    result = fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert [p.id for p in result.papers] == ["2609.24984", "2412.20138", "2503.11576", "2609.24981"]
    assert (result.format, result.warnings, fake.sleeps) == ("hf-api", [], [])
    (request,) = requests
    assert request.url.host == "huggingface.co" and request.url.path == "/api/daily_papers"
    assert dict(request.url.params) == {"date": "2026-09-23", "limit": "100", "p": "0"}
    assert request.headers["User-Agent"].startswith("newsletter/0.1.0 (self-hosted research paper digest")


def test_hf_daily_pages_until_a_short_page():
    items = json.loads(DAILY)
    client, requests = client_for(
        ok(json.dumps(items[:2]).encode()), ok(json.dumps(items[2:]).encode()), ok(b"[]")
    )
    result = fetch_hf_daily(DAY, client=client, limit=2)
    assert [r.url.params["p"] for r in requests] == ["0", "1", "2"]
    assert all(r.url.params["limit"] == "2" for r in requests)
    assert len(result.papers) == 4 and result.warnings == []


def test_hf_daily_stops_when_a_page_repeats():
    client, requests = client_for(ok(DAILY), ok(DAILY))
    result = fetch_hf_daily(DAY, client=client, limit=4)
    assert len(requests) == 2 and len(result.papers) == 4


def test_weekend_is_an_empty_result_not_an_error():
    client, requests = client_for(ok(WEEKEND))
    result = fetch_hf_daily(date(2026, 9, 26), client=client)
    assert (result.papers, result.warnings, len(requests)) == ([], [], 1)


def test_429_with_retry_after_then_success():
    client, requests = client_for(httpx.Response(429, headers={"Retry-After": "7"}), ok(DAILY))
    fake = FakeTime()
    result = fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert fake.sleeps == [7.0]
    assert len(requests) == 2 and len(result.papers) == 4


def test_503_twice_then_success_backs_off_exponentially():
    client, requests = client_for(httpx.Response(503), httpx.Response(503), ok(DAILY))
    fake = FakeTime()
    result = fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert fake.sleeps == [1.0, 2.0]
    assert len(result.papers) == 4


def test_connection_error_is_retried():
    client, requests = client_for(httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out"), ok(DAILY))
    fake = FakeTime()
    result = fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert fake.sleeps == [1.0, 2.0]
    assert len(requests) == 3 and len(result.papers) == 4


def test_gives_up_after_max_attempts_with_a_one_line_error():
    client, requests = client_for(*[httpx.Response(503)] * 4)
    fake = FakeTime()
    with pytest.raises(FetchError) as caught:
        fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    message = str(caught.value)
    assert message == (
        "GET https://huggingface.co/api/daily_papers?date=2026-09-23&limit=100&p=0: "
        "gave up after 4 attempts: HTTP 503 Service Unavailable"
    )
    assert "\n" not in message
    assert len(requests) == 4 and fake.sleeps == [1.0, 2.0, 4.0]


def test_connection_errors_until_giving_up():
    client, _ = client_for(*[httpx.ConnectError("Name or service not known")] * 4)
    with pytest.raises(FetchError, match="gave up after 4 attempts: ConnectError: Name or service not known$"):
        fetch_hf_daily(DAY, client=client, sleep=FakeTime().sleep)


def test_client_errors_are_not_retried():
    client, requests = client_for(httpx.Response(404))
    with pytest.raises(FetchError, match=r"^GET https://huggingface.co/api/daily_papers\?.*: HTTP 404 Not Found$"):
        fetch_hf_daily(DAY, client=client, sleep=FakeTime().sleep)
    assert len(requests) == 1


def test_other_http_errors_are_not_retried():
    client, requests = client_for(httpx.TooManyRedirects("Exceeded maximum allowed redirects."))
    with pytest.raises(FetchError, match=r"p=0: TooManyRedirects: Exceeded maximum allowed redirects.$"):
        fetch_hf_daily(DAY, client=client, sleep=FakeTime().sleep)
    assert len(requests) == 1


def test_retry_after_as_an_http_date():
    client, _ = client_for(httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ok(WEEKEND))
    fake = FakeTime()
    fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert fake.sleeps == [1.0]    # a date in the past: fall back to the backoff


def test_too_long_retry_after_gives_up_at_once():
    client, requests = client_for(httpx.Response(429, headers={"Retry-After": "3600"}))
    fake = FakeTime()
    with pytest.raises(FetchError, match="the server asks to wait 3600 s, more than 120 s"):
        fetch_hf_daily(DAY, client=client, sleep=fake.sleep)
    assert fake.sleeps == []


def test_arxiv_listing():
    client, requests = client_for(ok(LISTING))
    fake = FakeTime()
    result = fetch_arxiv_listing("cs.AI", client=client, limiter=RateLimiter(3.0, clock=fake.clock, sleep=fake.sleep))
    assert str(requests[0].url) == "https://rss.arxiv.org/atom/cs.AI"
    assert (result.format, len(result.papers), result.warnings) == ("arxiv", 7, [])
    assert result.papers[0].authors == ["Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang"]
    with pytest.raises(ValueError, match="not an arXiv category"):
        fetch_arxiv_listing("cs.AI/../x", client=client)


def test_arxiv_query():
    client, requests = client_for(ok(QUERY))
    fake = FakeTime()
    limiter = RateLimiter(3.0, clock=fake.clock, sleep=fake.sleep)
    result = fetch_arxiv_query("all:testing", 10, client=client, limiter=limiter)
    params = requests[0].url.params
    assert requests[0].url.host == "export.arxiv.org"
    assert (params["search_query"], params["max_results"], params["start"]) == ("all:testing", "10", "0")
    assert len(result.papers) == 10 and result.papers[0].id == "2202.12139"
    with pytest.raises(ValueError, match="max_results"):
        fetch_arxiv_query("all:x", 0, client=client, limiter=limiter)


def test_arxiv_requests_are_spaced_three_seconds_apart():
    fake = FakeTime()
    limiter = RateLimiter(3.0, clock=fake.clock, sleep=fake.sleep)
    client, requests = client_for(ok(LISTING), ok(LISTING), httpx.Response(503), ok(QUERY))
    fetch_arxiv_listing("cs.AI", client=client, limiter=limiter, sleep=fake.sleep)
    assert fake.sleeps == []                       # the first request goes at once
    fake.now += 1.0                                # one second of other work
    fetch_arxiv_listing("cs.LG", client=client, limiter=limiter, sleep=fake.sleep)
    assert fake.sleeps == [2.0]                    # waits the remaining two seconds
    fetch_arxiv_query("all:testing", client=client, limiter=limiter, sleep=fake.sleep)
    # 3 s before the query, 1 s backoff after its 503, then 2 s more to keep 3 s between requests
    assert fake.sleeps == [2.0, 3.0, 1.0, 2.0]
    assert len(requests) == 4
