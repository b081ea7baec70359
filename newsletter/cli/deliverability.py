"""`dkim keygen`, `dkim check`: the DKIM key and an offline check of a signed edition; `bounces`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from newsletter.cli.common import DateOption, app, builder_for, fail, find_subscriber, loaded_subscribers, open_store, out, parse_day

dkim_app = typer.Typer(help="DKIM signing: make a key and its DNS record, check a signed edition offline.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")

TXT_CHUNK = 255  # one character-string in a DNS TXT record


def zone_line(selector: str, domain: str, record: str) -> str:
    """The TXT record as a zone-file line, split into 255-character strings (an RSA-2048 key is longer)."""
    strings = " ".join(f'"{record[i : i + TXT_CHUNK]}"' for i in range(0, len(record), TXT_CHUNK))
    return f"{selector}._domainkey.{domain}. IN TXT ( {strings} )"


@dkim_app.command("keygen")
def dkim_keygen(
    domain: Annotated[str, typer.Option("--domain", help="The signing domain: your From domain (or a parent of it).")],
    selector: Annotated[str, typer.Option("--selector", help="A name for this key, e.g. news2026; rotate by making a new one.")],
    kind: Annotated[str, typer.Option("--type", help="rsa (RSA-2048, verified by every receiver) or ed25519 (RFC 8463).")] = "rsa",
    key_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the private key (default: dkim-SELECTOR.pem).")] = None,
) -> None:
    """Write a new DKIM private key (PEM, mode 600) and print the DNS TXT record to publish and the [dkim] table."""
    from newsletter.config import LIST_ID
    from newsletter.dkim_signing import DkimError, generate_key, parse_key

    domain, selector = domain.strip().lower().rstrip("."), selector.strip().lower()
    if not LIST_ID.fullmatch(domain):
        fail(f"--domain: expected a domain like example.org, got {domain!r}", code=2)
    if not selector or not all(c.isalnum() or c in "-_" for c in selector):
        fail(f"--selector: use letters, digits, '-' and '_', got {selector!r}", code=2)
    path = key_file or Path(f"dkim-{selector}.pem")
    if path.exists():
        fail(f"{path}: already exists; not overwriting a key (choose another --out or --selector)", code=2)
    try:
        pem = generate_key(kind)
    except DkimError as error:
        fail(str(error), code=2)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
    except OSError as error:
        fail(f"{path}: cannot write the key: {error.strerror or error}", code=2)
    record = parse_key(pem, str(path)).dns_record()
    out.print(f"Wrote the private key to {path} (keep it secret; mode 600).", markup=False)
    out.print(f"\nPublish this TXT record at {selector}._domainkey.{domain}:\n", markup=False)
    out.print(zone_line(selector, domain, record), markup=False)
    out.print("\nand add to the config:\n", markup=False)
    out.print(f'[dkim]\ndomain = "{domain}"\nselector = "{selector}"\nprivate_key_file = "{path}"', markup=False)


@dkim_app.command("check")
def dkim_check(
    ctx: typer.Context,
    subscriber: Annotated[Optional[str], typer.Option("--subscriber", "-s", help="Whose edition to render (default: the first active subscriber).")] = None,
    eml: Annotated[Optional[Path], typer.Option("--eml", help="Check this message file instead of rendering an edition.")] = None,
    day: DateOption = None,
) -> None:
    """Verify a rendered edition's DKIM signature against the configured key, with no DNS look-up.

    Checks that the signature verifies and covers From, List-Unsubscribe and List-Unsubscribe-Post
    (RFC 8058). It does not check that the DNS record is published: compare `dkim keygen`'s output
    with `dig TXT SELECTOR._domainkey.DOMAIN` for that.
    """
    from newsletter.dkim_signing import DkimError, load_key, verify
    from newsletter.pipeline import local_today

    config = ctx.obj.config()
    if config.dkim is None:
        fail(f"{config.path.name}: no [dkim] table: signing is off (see `newsletter dkim keygen`)", code=2)
    try:
        key = load_key(config)
    except DkimError as error:
        fail(str(error), code=2)
    if eml is not None:
        try:
            data, what = eml.read_bytes(), str(eml)
        except OSError as error:
            fail(f"{eml}: cannot read: {error.strerror or error}", code=2)
    else:
        if subscriber:
            sub = find_subscriber(config, subscriber)
        else:
            sub = next((s for s in loaded_subscribers(config).subscribers if s.active), None)
            if sub is None:
                fail("no active subscriber to render an edition for (pass --subscriber or --eml)", code=2)
        edition_day = parse_day(day) or local_today(sub)
        with open_store(config) as store:
            builder = builder_for(config, store)
            picks = builder.select(sub, edition_day) or []
            _, data = builder.build(sub, edition_day, picks)
        what = f"the {edition_day} edition for {sub.email}"
    result = verify(data, key, config.dkim.domain, config.dkim.selector)
    if not result.ok:
        fail(f"{what}: DKIM fails: {result.detail}")
    missing = [h for h in ("from", "list-unsubscribe", "list-unsubscribe-post") if h not in result.signed]
    if missing:
        fail(f"{what}: the signature verifies but does not cover {', '.join(missing)} (RFC 8058 needs them)")
    out.print(f"{what}: DKIM ok ({result.detail})", markup=False)


@app.command()
def bounces(
    ctx: typer.Context,
    maildir: Annotated[Optional[Path], typer.Option("--maildir", help="Read this Maildir instead of the [bounces] source.")] = None,
    mbox: Annotated[Optional[Path], typer.Option("--mbox", help="Read this mbox file instead of the [bounces] source.")] = None,
) -> None:
    """Read bounce reports (DSNs) from the [bounces] mailbox: suppress hard bounces, count soft ones.

    An address that hard-bounces (no such user or domain) is suppressed at once with the reason;
    one that soft-bounces [bounces] soft_limit editions in a row (default 3) is suppressed too.
    IMAP messages are marked seen; a report read twice counts once. `newsletter run` does this
    on the [bounces] poll schedule. `subscribers enable EMAIL` takes an address back.
    """
    from rich.table import Table

    from newsletter.bounces import BounceSourceError, read_configured

    if maildir and mbox:
        fail("--maildir and --mbox: give one", code=2)
    config = ctx.obj.config()
    with open_store(config) as store:
        try:
            run = read_configured(config, store, maildir=maildir, mbox=mbox)
        except BounceSourceError as error:
            fail(str(error), code=2)
    out.print(f"Read {run.messages} messages: {run.reports} bounce reports, {len(run.hard)} hard and {len(run.soft)} soft "
              f"bounces{f', {run.already_seen} already counted' if run.already_seen else ''}.", markup=False)
    if run.hard or run.soft:
        table = Table("email", "bounce", "reason", "suppressed", title="Bounces")
        suppressed = dict(run.suppressed)
        for address, reason in run.hard:
            table.add_row(Text(address), "hard", Text(reason), "yes" if address in suppressed else "already")
        for address, reason, streak in run.soft:
            table.add_row(Text(address), f"soft ({streak} in a row)", Text(reason), "yes" if address in suppressed else "no")
        out.print(table)
