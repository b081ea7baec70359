"""Editions per second of a whole `newsletter send`, as a process, against the naive way in the same run.

The set-up, made once per size in a work directory: the four sample pages of
tests/fixtures/hf-pages ingested into a SQLite store, N subscriber files (one
third trending, two thirds with two keywords each), the `file` backend.

Timed, end to end (process start included), each repeated:
- `python -m newsletter send --no-ingest` on a fresh copy of the ingested store;
  editions/s = .eml files written / wall time, and per CPU-second (user + system,
  worker processes included: the figure a loaded machine disturbs least); peak
  RSS of the largest process, from wait4. The store's subscriber cache is warm,
  as on any run after the first;
- the naive way, as a process too, on a sample of the same subscribers: read
  each TOML file, loop over every paper to score it, Jinja over the MJML source,
  `mjml2html`, `EmailMessage`, write the file.

Before each timed run the previous outbox is moved aside, not deleted: on this
machine's filesystem (ext4 without a journal) creating many files right after
deleting many costs extra while it scans the freed inodes. The moved outboxes
are deleted at the very end, after every size, outside any timing (deleting one size's files would slow the next size's first runs).
The checkout's bytecode is compiled first, as an install does: a fresh clone run
with PYTHONDONTWRITEBYTECODE would otherwise compile the project in every process.

    python benchmarks/bench_send.py [--sizes 500 5000 20000] [--repeat 3] [--naive-sample 600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "tests" / "fixtures" / "hf-pages").glob("*.txt"))
DAY = "2024-12-10"
TOPICS = [
    "language models", "diffusion", "reinforcement learning", "agents", "video", "reasoning", "vision",
    "3d", "benchmark", "quantization", "robot", "multimodal", "attention", "code", "speech", "retrieval",
]
CONFIG = """\
[newsletter]
name = "Papers digest"
from = "Papers digest <digest@example.org>"
base_url = "https://papers.example.org"
address = "1 Example Street"

[store]
path = "{store}"

[sources]
page_date = "{day}"

[subscribers]
dir = "subscribers"

[delivery]
backend = "file"

[delivery.file]
dir = "outbox"
"""


def subscriber_file(n: int) -> str:
    head = f'email = "reader{n}@example.org"\nname = "Reader {n}"\ntimezone = "UTC"\nmax_items = 10\nmax_age_days = 3650\n'
    if n % 3 == 0:
        return head + 'mode = "trending"\n'
    first, second = TOPICS[n % len(TOPICS)], TOPICS[(n * 7 + 3) % len(TOPICS)]
    if first == second:
        second = TOPICS[(n + 1) % len(TOPICS)]
    return head + f'mode = "keywords"\nkeywords = ["{first}", "{second}"]\n'


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": "benchmark-secret"}


def compile_checkout() -> None:
    """Compile the checkout's bytecode once, as installing the package does: with PYTHONDONTWRITEBYTECODE set
    (as on this machine) a fresh clone's every timed process would compile the project from source (~0.2 s)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "newsletter")], check=True)


def prepare(work: Path, count: int) -> None:
    """Config, subscriber files and the ingested store (`ingested.db`) for `count` subscribers."""
    (work / "subscribers").mkdir(parents=True)
    for n in range(count):
        (work / "subscribers" / f"reader{n:06d}.toml").write_text(subscriber_file(n))
    (work / "ingest.toml").write_text(CONFIG.format(store="ingested.db", day=DAY))
    (work / "config.toml").write_text(CONFIG.format(store="run.db", day=DAY))
    newsletter = [sys.executable, "-m", "newsletter", "--config", str(work / "ingest.toml")]
    subprocess.run([*newsletter, "ingest", *map(str, PAGES)], check=True, env=environment(), capture_output=True)
    # a daily run finds the subscriber files it parsed yesterday in the store's cache: warm it (records nothing)
    subprocess.run([*newsletter, "send", "--dry-run", "--no-ingest", "--date", DAY], check=True, env=environment(),
                   capture_output=True)


def timed(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """Run `command`; its wall time (s), CPU time (s, children included) and peak RSS (MB, the largest process)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{errors}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def move_aside(work: Path, outbox: str, graveyard: Path) -> None:
    if (work / outbox).exists():
        os.rename(work / outbox, graveyard / f"{outbox}-{time.monotonic_ns()}")


def run_send(work: Path, graveyard: Path) -> tuple[int, float, float, float]:
    move_aside(work, "outbox", graveyard)
    for suffix in ("", "-wal", "-shm"):
        (work / f"run.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(work / "ingested.db", work / "run.db")
    os.sync()
    seconds, cpu, peak = timed(
        [sys.executable, "-m", "newsletter", "--config", "config.toml", "send", "--no-ingest", "--date", DAY], work
    )
    return len(os.listdir(work / "outbox")), seconds, cpu, peak


def run_naive(work: Path, graveyard: Path, sample: int) -> tuple[int, float, float]:
    move_aside(work, "naive-outbox", graveyard)
    os.sync()
    seconds, cpu, _ = timed([sys.executable, __file__, "--naive", str(work), "--naive-sample", str(sample)], work)
    return len(os.listdir(work / "naive-outbox")), seconds, cpu


def naive(work: Path, sample: int) -> None:
    """The naive way, for `sample` subscribers: what one would write without this project's stages."""
    import email.policy
    import re
    import sqlite3
    import tomllib
    from datetime import date, timedelta
    from email.headerregistry import Address
    from email.message import EmailMessage

    import jinja2
    import mjml

    from newsletter.render import BUILTIN_TEMPLATES

    source = (BUILTIN_TEMPLATES / "digest.mjml").read_text()
    source = re.sub(r'<mj-include path="([^"]+)"\s*/>', lambda m: (BUILTIN_TEMPLATES / m[1]).read_text(), source)
    environment = jinja2.Environment(autoescape=True)
    template = environment.from_string(source)
    text_template = jinja2.Environment().from_string((BUILTIN_TEMPLATES / "digest.txt").read_text())
    day = date.fromisoformat(DAY)
    with sqlite3.connect(work / "run.db") as db:
        rows = db.execute("SELECT title, abstract, url, upvotes, published FROM papers").fetchall()
    outbox = work / "naive-outbox"
    outbox.mkdir()
    for path in sorted((work / "subscribers").glob("*.toml"))[:sample]:
        profile = tomllib.loads(path.read_text())
        since = day - timedelta(days=profile.get("max_age_days", 7))
        scored = []
        for title, abstract, url, upvotes, published in rows:
            if published and not since.isoformat() <= published <= DAY:
                continue
            text = f"{title} {abstract}".lower()
            if profile.get("mode") == "trending":
                score = upvotes or 0
            else:
                score = sum(text.count(keyword) for keyword in profile["keywords"])
            if score:
                scored.append((score, title, abstract, url))
        scored.sort(key=lambda item: -item[0])
        items = [
            {"number": n, "title": title, "link": url or "", "byline": "", "published": "", "upvotes": None,
             "abstract": " ".join((abstract or "").split()[:60]), "cut": True, "why": "matches"}
            for n, (_, title, abstract, url) in enumerate(scored[: profile.get("max_items", 10)], 1)
        ]
        context = {
            "lang": "en", "subject": f"{len(items)} new papers", "newsletter_name": "Papers digest",
            "base_url": "https://papers.example.org", "address": "1 Example Street", "date_label": DAY,
            "count": len(items), "topics": "", "headline": f"{len(items)} new papers", "greeting": "Hello,",
            "intro": "here is what's new.", "preheader": "", "items": items, "why_you_get_this": "",
            "email": profile["email"], "name": profile.get("name", ""),
            "unsubscribe_url": f"https://papers.example.org/u/{profile['email']}", "profile_url": None,
        }
        html = mjml.mjml2html(template.render(context), disable_comments=True, fonts={})
        message = EmailMessage()
        message["From"] = "Papers digest <digest@example.org>"
        message["To"] = Address(profile.get("name", ""), addr_spec=profile["email"])
        message["Subject"] = context["subject"]
        message["Message-ID"] = f"<{profile['email']}.{DAY}@example.org>"
        message.set_content(text_template.render(context))
        message.add_alternative(html, subtype="html")
        (outbox / f"{profile['email']}.eml").write_bytes(message.as_bytes(policy=email.policy.SMTP))


def spread(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}–{high:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=600, help="subscribers the naive way renders (default 600)")
    parser.add_argument("--naive", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        sys.path.insert(0, str(REPO))
        naive(args.naive, args.naive_sample)
        return
    print(f"cores: {os.cpu_count()}; {args.repeat} runs each; the naive way on {args.naive_sample} subscribers")
    compile_checkout()
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:  # deleted once, after every size's runs
        for count in args.sizes:
            work, graveyard = Path(tmp) / f"work-{count}", Path(tmp) / f"moved-aside-{count}"
            graveyard.mkdir()
            prepare(work, count)
            fast, naive_rates, fast_cpu, naive_cpu, peaks = [], [], [], [], []
            for _ in range(args.repeat):
                sent, seconds, cpu, peak = run_send(work, graveyard)
                if sent != count:
                    raise SystemExit(f"expected {count} editions, got {sent}")
                fast.append(sent / seconds)
                fast_cpu.append(sent / cpu)
                peaks.append(peak)
                made, seconds, cpu = run_naive(work, graveyard, min(args.naive_sample, count))
                naive_rates.append(made / seconds)
                naive_cpu.append(made / cpu)
            ratios = [f / n for f, n in zip(fast, naive_rates)]
            cpu_ratios = [f / n for f, n in zip(fast_cpu, naive_cpu)]
            print(f"{count:>7,} subscribers: newsletter send {spread(fast)} editions/s, naive {spread(naive_rates)}/s, "
                  f"ratio {min(ratios):.1f}–{max(ratios):.1f}x (wall); per CPU-second {spread(fast_cpu)} vs "
                  f"{spread(naive_cpu)}, {min(cpu_ratios):.1f}–{max(cpu_ratios):.1f}x; peak RSS {spread(peaks)} MB",
                  flush=True)

if __name__ == "__main__":
    main()
