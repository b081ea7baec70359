"""The `newsletter` command line (Typer): one module per command group, each thin over `newsletter.app`.

`common` holds the shared consoles and options; `site` (init), `papers` (ingest, papers,
fetch), `subscribers`, `editions` (select, render, send, status) and `service`
(preview, serve, run, worker) and `deliverability` (dkim, bounces) register their commands on `app` when imported.
"""

from __future__ import annotations

import gc
import os
import sys

# before numpy loads: OpenBLAS would start a spinning thread per core for the small matrix work here,
# costing more CPU than it saves (and once more in every worker process)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

gc.disable()  # the imports make objects that live as long as the process: collecting meanwhile finds nothing
from newsletter.cli import site, papers, subscribers, editions, service, deliverability  # noqa: E402, F401, I001  (importing registers the commands, in this order)
from newsletter.cli.common import app  # noqa: E402

gc.freeze()  # nor later: the first collection after enabling would scan all of them (~40 ms) and free next to nothing
gc.enable()

__all__ = ["app", "main"]


GLOBAL_OPTIONS = ("--config", "-c", "--db")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--config`/`--db` given after the command to the front, so both
    `newsletter --config X send` and `newsletter send --config X` work."""
    front, rest = [], []
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        elif name in GLOBAL_OPTIONS and index + 1 < len(args):
            front.extend(args[index : index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def main() -> None:
    """Console-script entry point."""
    app(args=hoist_global_options(sys.argv[1:]), prog_name="newsletter")
