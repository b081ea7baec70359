"""`init`: a new site folder (a commented config and an empty subscribers folder), and what to do next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import app, fail, out
from newsletter.config import display_path

CONFIG_TEMPLATE = """\
# newsletter configuration, written by `newsletter init`. Relative paths resolve against this
# file's folder. Secrets never go in this file: the unsubscribe signing key and the SMTP
# password come from environment variables. Before real mail, see "Going live" in the README.

[newsletter]
name = "Papers digest"
from = "Papers digest <digest@example.org>"   # SET: your From address (its domain needs SPF, DKIM, DMARC)
base_url = "http://127.0.0.1:8025"            # SET: the public https URL `newsletter serve` runs behind
address = ""                                  # a postal address for the footer (the law wants one in many countries)
secret_env = "NEWSLETTER_SECRET"              # the variable holding the unsubscribe signing key

[store]
path = "newsletter.db"                        # SQLite: papers, the delivery ledger, unsubscribes (back it up)

[sources]
fetch = ["hf", "arxiv:cs.LG"]                 # what `newsletter run` downloads on [schedule] fetch, and at start
# inputs = ["papers/*.jsonl"]                 # your own files: ingested by `send`, `ingest` and `run`

[subscribers]
dir = "subscribers"                           # one TOML file each: `newsletter subscribers add EMAIL`

[delivery]
backend = "file"                              # .eml files in outbox/ until you set "smtp"

[delivery.file]
dir = "outbox"

[delivery.smtp]                               # used once backend = "smtp"
host = "localhost"                            # your relay (smtp.example.net), or your own MTA on this machine
port = 587
security = "starttls"                         # none | starttls (587) | ssl (465)
# username = "digest"
# password_env = "SMTP_PASSWORD"              # the NAME of the variable holding the password

# [dkim]                                      # `newsletter dkim keygen` prints this table for you

[schedule]
fetch = "0 */3 * * *"                         # crontab, UTC
catch_up_hours = 6                            # after a restart, send editions missed in the last 6 hours
"""

NEXT_STEPS = """\
Next steps:
  cd {folder}
  newsletter subscribers add you@example.org --timezone Europe/London --send-at 07:30 --keyword "large language models"
  newsletter fetch hf && newsletter send --dry-run      # what would go out; nothing is sent
Before real mail (README: "Going live"):
  - config.toml: [newsletter] from = your address, base_url = the public https URL of `newsletter serve`
  - config.toml: [delivery] backend = "smtp", and [delivery.smtp] host, port, security = "starttls", username, password_env
  - export NEWSLETTER_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')   # keep it: old links need it
  - DKIM: newsletter dkim keygen --domain example.org --selector news1   # prints the DNS record and the [dkim] table
  - DNS of the From domain: SPF (your relay's servers), the DKIM record, DMARC
  - run `newsletter serve` (behind https) and `newsletter run` under systemd: deploy/"""


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="The site folder (created if missing).")] = Path(".")) -> None:
    """Start a site: DIR/config.toml (commented, real sources) and an empty DIR/subscribers/, then the next steps.

    Refuses to overwrite an existing config.toml.
    """
    config = directory / "config.toml"
    if config.exists():
        fail(f"{display_path(config)}: already exists; not overwritten (edit it, or init another folder)")
    try:
        (directory / "subscribers").mkdir(parents=True, exist_ok=True)
        with config.open("x", encoding="utf-8") as handle:
            handle.write(CONFIG_TEMPLATE)
    except OSError as error:
        fail(f"{display_path(directory)}: cannot write the site: {error.strerror or error}")
    out.print(f"Wrote {display_path(config)} and {display_path(directory / 'subscribers')}/ (empty).", markup=False)
    out.print(NEXT_STEPS.format(folder=display_path(directory)), markup=False)
