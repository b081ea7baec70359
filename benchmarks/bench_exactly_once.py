"""Exactly once, measured: overlapping runs, kill -9 mid-send, and what per-message recording costs.

Three parts, each its own subcommand (default: all three):

- `throughput`: `newsletter send` of 5,000 editions through the `file` backend,
  timed end to end as a user runs it (one process per run, a fresh store and
  outbox each time). `--baseline DIR` also times another checkout (e.g. the
  code before the streamed ledger: `git archive <commit> | tar -x -C DIR`) in
  the same run, alternating, and prints the ratio.
- `overlap`: two `newsletter send` processes started together on one SQLite
  store, sending by SMTP into a loopback sink: duplicates and what each said.
- `crash`: `kill -9` of an SMTP `send` after a quarter, half and three
  quarters of 2,000 messages, then a rerun: messages lost and duplicated per
  kill point (duplicates must stay within the SMTP `concurrency`).

    python benchmarks/bench_exactly_once.py [throughput|overlap|crash] [--repeat 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MESSAGE_ID = re.compile(rb"\r\nMessage-ID: (<[^>\r\n]+>)\r\n", re.IGNORECASE)


def write_setup(folder: Path, subscribers: int, delivery: str) -> Path:
    """The example config with `delivery` as its [delivery] sections, and `subscribers` subscriber files."""
    shutil.copy(REPO / "config.example.toml", folder / "config.toml")
    shutil.copytree(REPO / "examples" / "papers", folder / "examples" / "papers")
    people = folder / "examples" / "subscribers"
    people.mkdir(parents=True)
    for n in range(subscribers):
        (people / f"r{n:05d}.toml").write_text(
            f'email = "reader{n:05d}@example.org"\nmode = "trending"\nmax_items = 5\nmax_age_days = 3650\n'
        )
    config = folder / "config.toml"
    text = config.read_text()
    config.write_text(text[: text.index("[delivery]")] + delivery + text[text.index("[schedule]") :])
    return config


def newsletter(code: Path, *args: str, cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(code), "NEWSLETTER_SECRET": "bench-secret", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "newsletter", *args], cwd=cwd, env=env, **popen)


# -- throughput ----------------------------------------------------------------------------


def time_send(code: Path, editions: int) -> float:
    """Seconds for one `newsletter send` of `editions` editions through the file backend (ingest done before)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_setup(folder, editions, '[delivery]\nbackend = "file"\n\n[delivery.file]\ndir = "outbox"\n\n')
        ingest = newsletter(code, "ingest", "examples/papers/hf-page-000.txt", "examples/papers/hf-page-004.txt",
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert ingest.wait() == 0
        started = time.perf_counter()
        run = newsletter(code, "send", "--no-ingest", "--date", "2024-12-11", cwd=folder,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = run.communicate()
        elapsed = time.perf_counter() - started
        assert run.returncode == 0, err.decode()
        written = len(list((folder / "outbox").glob("*.eml")))
        assert written == editions, f"{written} files for {editions} editions: {out.decode()} {err.decode()}"
        return elapsed


def throughput(args) -> None:
    editions = args.editions
    runs: dict[str, list[float]] = collections.defaultdict(list)
    codes = {"this checkout": REPO}
    if args.baseline:
        codes["baseline"] = Path(args.baseline).resolve()
    for repeat in range(args.repeat):
        order = list(codes.items())
        for label, code in order if repeat % 2 == 0 else order[::-1]:  # alternate who goes first
            runs[label].append(time_send(code, editions))
    print(f"newsletter send, {editions} editions, file backend ({args.repeat} runs each, alternating):")
    for label, times in runs.items():
        rates = sorted(editions / t for t in times)
        print(f"  {label:14} {statistics.median(times):6.2f} s median   {rates[0]:,.0f}–{rates[-1]:,.0f} editions/s")
    if "baseline" in runs:
        ratio = statistics.median(runs["baseline"]) / statistics.median(runs["this checkout"])
        print(f"  speed vs baseline: {ratio:.2f}x (above 1: this checkout is faster)")


# -- a loopback SMTP sink in this process ---------------------------------------------------------


class Sink:
    """aiosmtpd handler counting every Message-ID it accepts, a little slow like a real server."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.ids: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        await asyncio.sleep(self.delay)
        found = MESSAGE_ID.search(envelope.original_content or envelope.content)
        with self.lock:
            self.ids.append(found.group(1) if found else b"?")
        return "250 2.0.0 queued"


def start_sink(delay: float):
    from aiosmtpd.controller import Controller

    from tests.smtp_fixtures import free_port

    sink = Sink(delay)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    return sink, controller


def smtp_delivery(port: int, concurrency: int) -> str:
    return (f'[delivery]\nbackend = "smtp"\n\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "none"\nconcurrency = {concurrency}\n\n')


def overlap(args) -> None:
    subscribers = args.subscribers
    for attempt in range(args.repeat):
        sink, controller = start_sink(0.002)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                write_setup(folder, subscribers, smtp_delivery(controller.port, 4))
                assert newsletter(REPO, "ingest", "examples/papers/hf-page-000.txt", cwd=folder,
                                  stdout=subprocess.DEVNULL).wait() == 0
                runs = [newsletter(REPO, "send", "--no-ingest", "--date", "2024-12-11", cwd=folder,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
                said = [run.communicate()[0] for run in runs]
        finally:
            controller.stop()
        counts = collections.Counter(sink.ids)
        duplicates = sum(n - 1 for n in counts.values())
        sent = [re.search(r"│ sent\s+│\s+(\d+)", text) for text in said]
        elsewhere = [re.search(r"claimed by another run\s+│\s+(\d+)", text) for text in said]
        parts = [f"run {n + 1}: sent {s.group(1) if s else '?'}, "
                 f"{e.group(1) if e else 0} claimed by the other" for n, (s, e) in enumerate(zip(sent, elsewhere))]
        print(f"overlap #{attempt + 1}: {subscribers} subscribers, two `send` at once: received {len(counts)} distinct, "
              f"{duplicates} duplicates; " + "; ".join(parts))


def crash(args) -> None:
    subscribers, concurrency = args.subscribers, 4
    for point in (0.25, 0.5, 0.75):
        for attempt in range(args.repeat):
            sink, controller = start_sink(0.002)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    write_setup(folder, subscribers, smtp_delivery(controller.port, concurrency))
                    assert newsletter(REPO, "ingest", "examples/papers/hf-page-000.txt", cwd=folder,
                                      stdout=subprocess.DEVNULL).wait() == 0
                    run = newsletter(REPO, "send", "--no-ingest", "--date", "2024-12-11", cwd=folder,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    while len(sink.ids) < subscribers * point and run.poll() is None:
                        time.sleep(0.002)
                    run.send_signal(signal.SIGKILL)
                    run.wait()
                    time.sleep(0.3)
                    at_kill = len(sink.ids)
                    rerun = newsletter(REPO, "send", "--no-ingest", "--date", "2024-12-11", cwd=folder,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    rerun.wait()
            finally:
                controller.stop()
            counts = collections.Counter(sink.ids)
            lost = subscribers - len(counts)
            duplicates = sum(n - 1 for n in counts.values())
            print(f"kill -9 at {point:.0%} ({at_kill} received): lost {lost}, duplicates {duplicates} "
                  f"(concurrency {concurrency})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=["throughput", "overlap", "crash", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--editions", type=int, default=5000)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--baseline", help="another checkout to time `throughput` against")
    args = parser.parse_args()
    for part in ("throughput", "overlap", "crash"):
        if args.part in (part, "all"):
            globals()[part](args)


if __name__ == "__main__":
    main()
