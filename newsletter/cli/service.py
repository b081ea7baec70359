"""`preview`, `serve`, `run` and `worker`: the long-running processes."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from newsletter.app import base_url_warning, make_service
from newsletter.cli.common import app, builder_for, err, fail, loaded_subscribers, open_store, require_signing_key
from newsletter.config import Config


PREVIEW_PASSWORD_ENV = "NEWSLETTER_PREVIEW_PASSWORD"


def serve_app(config: Config, host: str, port: int, *, preview: bool) -> None:
    """Run the web app (preview pages and/or the unsubscribe endpoints) with uvicorn.

    `serve` is public and signs nothing: it needs the real secret to check links.
    The preview signs its editions with a key made for this process only, so a
    downloaded .eml carries no unsubscribe link that works anywhere else, and its
    own unsubscribe page records nothing. It answers only loopback `Host` names
    when bound to loopback, and wants the password in $NEWSLETTER_PREVIEW_PASSWORD
    on any other address.
    """
    import uvicorn

    from newsletter.delivery.smtp import is_loopback
    from newsletter.pipeline import EditionBuilder
    from newsletter.preview import LOOPBACK_NAMES, create_app

    password = os.environ.get(PREVIEW_PASSWORD_ENV) or None
    guard: dict = {}
    if preview:
        loaded_subscribers(config, quiet=True)  # exit now if the folder is missing
        if is_loopback(host):
            guard = {"allowed_hosts": LOOPBACK_NAMES | {host.strip("[]").lower()}, "password": password}
        elif password is None:
            fail(f"--host {host}: the preview shows every subscriber's mail; on an address other than loopback it needs "
                 f"a password: set {PREVIEW_PASSWORD_ENV} (HTTP basic auth), or keep --host 127.0.0.1", code=2)
        else:
            guard = {"password": password}
    else:
        require_signing_key(config, public=True)
    with open_store(config) as store:
        builder = EditionBuilder(config, store, key=secrets.token_bytes(32)) if preview else builder_for(config, store)

        def build_edition(email: str, day: date):
            subscriber = loaded_subscribers(config, quiet=True, must_exist=False).find(email)
            return builder.edition(subscriber, day) if subscriber else None

        def recorded_edition(email: str, day: date):
            subscriber = loaded_subscribers(config, quiet=True, must_exist=False).find(email)
            built = builder.recorded(subscriber, day) if subscriber else None
            return built[0] if built else None

        def list_editions(email: str):
            return [(entry.edition_date, entry.subject) for entry in store.editions_of(email) if entry.state == "sent"]

        web = create_app(
            list_subscribers=lambda: loaded_subscribers(config, must_exist=False).subscribers,
            build_edition=build_edition,
            suppress=None if preview else (lambda email: store.suppress(email, reason="one-click unsubscribe")),
            secret_key=builder.key,
            preview=preview,
            recorded_edition=recorded_edition,
            list_editions=list_editions,
            record_feedback=None if preview else store.add_feedback,
            paper_title=lambda paper_id: getattr(store.get_papers([paper_id]).get(paper_id), "title", None),
            **guard,
        )
        what = "preview" if preview else "public pages (unsubscribe, view in browser, past editions, feedback)"
        shown = f"[{host}]" if ":" in host else host
        locked = (f"; password required (HTTP basic auth, any user name, the password in {PREVIEW_PASSWORD_ENV})"
                  if guard.get("password") else "")
        err.print(f"Serving the {what} on http://{shown}:{port}/{locked} (Ctrl-C to stop)", markup=False)
        uvicorn.run(web, host=host, port=port, log_level="warning")


HostOption = Annotated[str, typer.Option(help="Address to bind; keep 127.0.0.1 unless you mean to expose it.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]


@app.command()
def preview(ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = 8025) -> None:
    """Preview every subscriber's digest in the browser (HTML at 320/600 px, text, .eml) for any date.

    Pages are built by the same code as `send`; templates are re-read on each request.
    Private: on loopback (the default) only loopback Host names are answered; on any
    other --host a password is required, from $NEWSLETTER_PREVIEW_PASSWORD (HTTP basic auth).
    Unsubscribe links in the preview work only in this preview and record nothing.
    """
    serve_app(ctx.obj.config(), host, port, preview=True)


@app.command()
def serve(ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = 8025) -> None:
    """Serve the public pages under [newsletter] base_url: one-click unsubscribe (RFC 8058),
    "View in browser" (/view/DATE), "Past editions" (/archive) and each paper's "more like this" /
    "fewer like this" links (a confirmation page, then a POST), each behind a signed link.

    Needs the signing secret (the variable named by [newsletter] secret_env).
    /healthz answers "ok" for load balancers and container health checks.
    """
    serve_app(ctx.obj.config(), host, port, preview=False)



@app.command()
def run(
    ctx: typer.Context,
    log_file: Annotated[Optional[Path], typer.Option(help="Also write the log to this file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the scheduler service: fetch papers on [schedule] fetch, send each group at its local time.

    One job per (time zone, send time, days) group; missed editions from the last
    [schedule] catch_up_hours are sent on start. Stop with SIGTERM or Ctrl-C:
    sends in flight finish first.
    """
    from newsletter.scheduler import AlreadyRunning

    config = ctx.obj.config()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose else logging.WARNING)
    require_signing_key(config)
    loaded_subscribers(config, quiet=True)  # exit now if the folder is missing
    if warning := base_url_warning(config):
        logging.getLogger("newsletter").warning(warning)
    with open_store(config) as store:
        service = make_service(config, store)
        try:
            service.start()
        except AlreadyRunning as error:
            fail(f"error: {error}", code=1)
    if not service.shutdown_clean:
        raise typer.Exit(1)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="Processes sending at once (default: CPU count).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Worker name, e.g. w1@%h (default: celery@HOST).")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a Celery worker: sends the shards that `send --workers celery` and `run` enqueue (README: "Scaling out").

    Stop with SIGTERM or Ctrl-C: shards in progress finish first.
    """
    if ctx.obj.db:
        fail("--db: not with worker (workers open the store in [store] of the config their tasks name)", code=2)
    config = ctx.obj.config()
    require_signing_key(config)
    with open_store(config):
        pass  # fail now, not in every task, when the store cannot be opened
    try:
        from newsletter.workers import run_worker
    except ImportError as missing:
        fail(f"worker: needs the celery extra ({missing.name} is not installed): pip install 'newsletter[postgres,celery]'", code=2)

    run_worker(config, concurrency=concurrency, name=name, loglevel=loglevel.upper())

