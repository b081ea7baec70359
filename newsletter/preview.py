"""The local preview web app and the public one-click unsubscribe endpoint (Starlette).

Every page of an edition comes from `build_edition`, the same code path as sending,
so what the browser shows is what a subscriber would get.

The preview shows every subscriber's mail, so it is private: `Guard` refuses a
`Host` header that is not one of `allowed_hosts` (a page on another site that
rebinds its DNS name to 127.0.0.1 sends its own name) and, given a password,
asks for it (HTTP basic auth). `/healthz` answers everyone, for probes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from datetime import date
from typing import Callable
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.feedback import LABELS, verify_feedback_token
from newsletter.models import Subscriber
from newsletter.render import RenderedEdition, TemplateError
from newsletter.unsubscribe import verify_token

WIDTHS = {"wide": 600, "narrow": 320}
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-src 'self'; form-action 'self'"
MAIL_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src * data:"

PAGES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{% block title %}{% endblock %}</title>
<style>
body { font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0; padding: 24px; background: #f5f6f8; color: #1f2328; }
@media (prefers-color-scheme: dark) { body { background: #0f1115; color: #e6e8eb; }
  .panel { background: #1b1e24 !important; border-color: #2b3038 !important; } a { color: #8ab4f8; } }
a { color: #0b57d0; } h1 { font-size: 20px; margin: 0 0 12px; }
.panel { background: #fff; border: 1px solid #dfe3e8; border-radius: 10px; padding: 16px 20px; margin: 0 auto 16px; max-width: 980px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #dfe3e8; }
.muted { color: #6b7280; } .toggle a, .toggle strong { margin-right: 10px; }
iframe { display: block; margin: 0 auto; border: 1px solid #dfe3e8; border-radius: 8px; background: #fff; height: 80vh; }
button { font: inherit; padding: 8px 16px; border-radius: 8px; border: 0; background: #0b57d0; color: #fff; cursor: pointer; }
</style></head><body>{% block body %}{% endblock %}</body></html>""",
    "index.html": """{% extends "base.html" %}{% block title %}Preview · {{ day }}{% endblock %}{% block body %}
<div class="panel"><h1>Editions for {{ day }}</h1>
<form method="get" action="/"><label>Date <input type="date" name="date" value="{{ day }}"></label> <button>Show</button></form></div>
<div class="panel"><table><thead><tr><th>Subscriber</th><th>Mode</th><th>Template</th><th>Papers</th><th></th></tr></thead><tbody>
{% for row in rows %}<tr><td><a href="{{ row.base }}?date={{ day }}">{{ row.subscriber.email }}</a>
{% if row.subscriber.name %}<span class="muted">{{ row.subscriber.name }}</span>{% endif %}</td>
<td>{{ row.subscriber.mode }}</td><td>{{ row.subscriber.template }}</td>
<td>{% if row.error %}template error: {{ row.error }}{% elif row.count is none %}<span class="muted">no edition</span>{% else %}{{ row.count }}{% endif %}</td>
<td>{% if row.count is not none %}<a href="{{ row.base }}/text?date={{ day }}">text</a> · <a href="{{ row.base }}/eml?date={{ day }}">.eml</a>{% endif %}</td></tr>
{% else %}<tr><td colspan="5" class="muted">No subscribers.</td></tr>{% endfor %}
</tbody></table></div>{% endblock %}""",
    "edition.html": """{% extends "base.html" %}{% block title %}{{ edition.subject }}{% endblock %}{% block body %}
<div class="panel"><p class="muted"><a href="/?date={{ day }}">All subscribers</a> · {{ email }}</p>
<h1>{{ edition.subject }}</h1>
<form method="get" action="{{ base }}"><label>Date <input type="date" name="date" value="{{ day }}"></label>
<input type="hidden" name="width" value="{{ width }}"> <button>Show</button></form>
<p class="toggle">{% for name, pixels in widths.items() %}{% if name == width %}<strong>{{ name }} ({{ pixels }} px)</strong>
{% else %}<a href="{{ base }}?date={{ day }}&amp;width={{ name }}">{{ name }} ({{ pixels }} px)</a>{% endif %}{% endfor %}
· <a href="{{ base }}/text?date={{ day }}">plain text</a> · <a href="{{ base }}/eml?date={{ day }}">download .eml</a></p></div>
<iframe title="email" sandbox="allow-popups allow-popups-to-escape-sandbox" src="{{ base }}/html?date={{ day }}" width="{{ widths[width] }}"></iframe>
{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block title %}{{ heading }}{% endblock %}{% block body %}
<div class="panel"><h1>{{ heading }}</h1><p>{{ message }}</p>
{% if action %}<form method="post" action="{{ action }}"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button>Unsubscribe</button></form>{% endif %}</div>{% endblock %}""",
    "feedback.html": """{% extends "base.html" %}{% block title %}{{ heading }}{% endblock %}{% block body %}
<div class="panel"><h1>{{ heading }}</h1><p>{{ message }}</p>
{% if action %}<form method="post" action="{{ action }}"><input type="hidden" name="feedback" value="confirm">
<button>{{ button }}</button></form>{% endif %}</div>{% endblock %}""",
}


def create_app(
    *,
    list_subscribers: Callable[[], list[Subscriber]],
    build_edition: Callable[[str, date], tuple[RenderedEdition, bytes] | None],
    suppress: Callable[[str], None] | None,
    secret_key: bytes,
    preview: bool = True,
    allowed_hosts: set[str] | None = None,
    password: str | None = None,
    record_feedback: Callable[[str, str, str], None] | None = None,
    paper_title: Callable[[str], str | None] | None = None,
):
    """The web app. `build_edition(email, day)` gives the rendered edition and its MIME bytes,
    or None when there is none; `suppress(email)` records an unsubscribe (None: the
    unsubscribe pages are shown but nothing is recorded, as in the preview);
    `record_feedback(email, paper_id, kind)` a "more/fewer like this" click on a paper that
    `paper_title(paper_id)` knows (None: the pages are shown, nothing is recorded).

    With `preview=False` only `/unsubscribe`, `/feedback` and `/healthz` are served (for a public host).
    `allowed_hosts` (names without port) and `password` guard every other path.
    """
    pages = jinja2.Environment(loader=jinja2.DictLoader(PAGES), autoescape=True, undefined=jinja2.StrictUndefined)

    def page(name: str, status: int = 200, **context) -> HTMLResponse:
        html = pages.get_template(name).render(context)
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": PAGE_POLICY})

    def message(heading: str, text: str, status: int = 200, action: str = "") -> HTMLResponse:
        return page("message.html", status, heading=heading, message=text, action=action)

    def with_edition(show: Callable[..., Response]) -> Callable[[Request], Response]:
        """An endpoint that finds the edition for the path's email and `?date=`, then calls `show`."""

        def endpoint(request: Request) -> Response:
            email = request.path_params["email"]
            day = _day(request)
            if day is None:
                return message("Bad date", "date: expected YYYY-MM-DD", 400)
            try:
                built = build_edition(email, day)
            except TemplateError as error:  # shown, so a template being edited can be fixed from the browser
                return message("Template error", str(error), 500)
            if built is None:
                return message("No edition", f"There is no edition for {email} on {day.isoformat()}.", 404)
            return show(request, email, day, *built)

        return endpoint

    def index(request: Request) -> Response:
        day = _day(request)
        if day is None:
            return message("Bad date", "date: expected YYYY-MM-DD", 400)
        rows = []
        for subscriber in list_subscribers():
            try:
                built, error = build_edition(subscriber.email, day), ""
            except TemplateError as problem:
                built, error = None, str(problem)
            count = built[0].count if built else None
            rows.append({"subscriber": subscriber, "count": count, "error": error, "base": _base(subscriber.email)})
        return page("index.html", day=day.isoformat(), rows=rows)

    def edition_page(request: Request, email: str, day: date, edition: RenderedEdition, raw: bytes) -> Response:
        width = request.query_params.get("width", "wide")
        return page(
            "edition.html",
            email=email,
            day=day.isoformat(),
            edition=edition,
            base=_base(email),
            width=width if width in WIDTHS else "wide",
            widths=WIDTHS,
        )

    def edition_html(request: Request, email: str, day: date, edition: RenderedEdition, raw: bytes) -> Response:
        return HTMLResponse(edition.html, headers={"Content-Security-Policy": MAIL_POLICY})

    def edition_text(request: Request, email: str, day: date, edition: RenderedEdition, raw: bytes) -> Response:
        return PlainTextResponse(edition.text)

    def edition_eml(request: Request, email: str, day: date, edition: RenderedEdition, raw: bytes) -> Response:
        filename = re.sub(r"[^A-Za-z0-9@._+-]", "_", f"{day.isoformat()}-{email}.eml")
        return Response(
            raw, media_type="message/rfc822", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        email = verify_token(token, secret_key)
        if email is None:
            return message("Link not valid", "This unsubscribe link is not valid. Use the link from your latest email.", 400)
        action = "?token=" + quote(token)  # relative: works behind a path prefix too
        if request.method == "POST":
            # RFC 8058: the one-click POST carries `List-Unsubscribe=One-Click` (as does the form below);
            # a bare POST (a link scanner, a prefetch) changes nothing
            try:
                form = await request.form()
            except Exception:  # a body that is not a form at all
                form = {}
            if form.get("List-Unsubscribe") != "One-Click":
                return message(
                    "Unsubscribe?", f"Stop sending this newsletter to {email}? (The request did not confirm it.)", 400,
                    action=action,
                )
            if suppress is None:
                return message("Preview", f"{email} would be unsubscribed now (preview: nothing was recorded).")
            suppress(email)
            return message("Unsubscribed", f"{email} will get no more emails from this newsletter.")
        return message("Unsubscribe?", f"Stop sending this newsletter to {email}?", action=action)

    async def feedback(request: Request) -> Response:
        token = request.query_params.get("token", "")
        found = verify_feedback_token(token, secret_key)
        title = paper_title(found[1]) if found and paper_title else None
        if found is None or title is None:
            return page("feedback.html", 400, heading="Link not valid", action="", button="",
                        message="This link is not valid (or the paper is no longer known). Use the links in your latest email.")
        email, paper_id, kind = found
        label = LABELS[kind]
        action = "?token=" + quote(token)
        question = f'Show {email} {"more" if kind == "more" else "fewer"} papers like "{title}"?'
        if request.method == "POST":
            try:
                form = await request.form()
            except Exception:  # a body that is not a form at all
                form = {}
            if form.get("feedback") != "confirm":  # a bare POST (a link scanner, a prefetch) changes nothing
                return page("feedback.html", 400, heading=f"{label}?", action=action, button=label, message=question)
            if record_feedback is None:
                return page("feedback.html", heading="Preview", action="", button="",
                            message="This is the preview: nothing was recorded.")
            record_feedback(email, paper_id, kind)
            return page("feedback.html", heading="Thank you", action="", button="",
                        message=f'Noted for {email}: {label.lower()} "{title}". Your next edition takes it into account.')
        return page("feedback.html", heading=f"{label}?", action=action, button=label, message=question)

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/healthz", healthz),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/feedback", feedback, methods=["GET", "POST"]),
    ]
    if preview:
        routes += [
            Route("/", index),
            Route("/s/{email}", with_edition(edition_page)),
            Route("/s/{email}/html", with_edition(edition_html)),
            Route("/s/{email}/text", with_edition(edition_text)),
            Route("/s/{email}/eml", with_edition(edition_eml)),
        ]
    web = Starlette(routes=routes)
    if allowed_hosts is None and password is None:
        return web
    return Guard(web, allowed_hosts=allowed_hosts, password=password)


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def host_name(header: str) -> str:
    """The name in a `Host` header, without the port and the IPv6 brackets, lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    """ASGI wrapper: `Host` must be one of `allowed_hosts` (when given); `password` (when given)
    must come as HTTP basic auth (any user name). `/healthz` is always open."""

    def __init__(self, app, *, allowed_hosts: set[str] | None, password: str | None):
        self.app = app
        self.allowed_hosts = {name.lower() for name in allowed_hosts} if allowed_hosts is not None else None
        self.password = password.encode("utf-8") if password else None

    def _authorised(self, header: bytes) -> bool:
        scheme, _, value = header.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, given = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.password)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/healthz":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.allowed_hosts is not None and host_name(headers.get(b"host", b"").decode("latin-1")) not in self.allowed_hosts:
            response = PlainTextResponse("Host not allowed: open the preview as http://127.0.0.1:PORT/\n", status_code=400)
        elif self.password is not None and not self._authorised(headers.get(b"authorization", b"")):
            response = PlainTextResponse(
                "Password required\n", status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="newsletter preview", charset="UTF-8"'},
            )
        else:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)


def _base(email: str) -> str:
    """The path of one subscriber's pages."""
    return "/s/" + quote(email, safe="")


def _day(request: Request) -> date | None:
    """The `date` query parameter (today when absent), or None when it is not YYYY-MM-DD."""
    value = request.query_params.get("date")
    if not value:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
