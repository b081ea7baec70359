"""The parallel local executor: one worker process per core sends a share of the subscribers.

The workers are forked after the config and the subscribers are loaded, so they
start at once and share that memory (copy-on-write; `gc.freeze()` keeps the
collector from touching it). Each opens its own store connection and backend
and takes its ledger rows through claims under its own owner (`pipeline.Claim`,
with its pid), so two workers, or an overlapping run, never send the same
edition. Their progress and their summaries are added up in the parent. A
worker dies with the parent (a `kill -9` of `send` stops them all: after it,
no orphan goes on sending while a rerun starts).

Shares are fixed (every Nth due subscriber), which spreads the work evenly
without a queue between processes. An SMTP backend's `concurrency` and
`rate_limit` keep their meaning for the whole run: each worker gets its part,
and there are never more workers than connections (so at most `concurrency`
messages are ever in flight, whatever the number of cores).
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import multiprocessing
import os
import queue
import signal
from collections.abc import Sequence

from newsletter.config import Config
from newsletter.delivery import create_backend
from newsletter.models import Subscriber
from newsletter.pipeline import Claim, ProgressCallback, RunSummary, new_owner, run_edition
from newsletter.store import Store

POLL_SECONDS = 0.2


def available_cores() -> int:
    """The cores this process may run on (the default number of worker processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(config: Config, wanted: int) -> int:
    """How many workers to run: `wanted`, but never more than an SMTP backend's connections."""
    if config.delivery.backend == "smtp":
        return max(1, min(wanted, config.delivery.backend_options.get("concurrency", 4)))
    return max(1, wanted)


def backend_options_for(config: Config, processes: int) -> dict:
    """The backend's options for one of `processes` workers: an SMTP connection count and rate limit split."""
    options = dict(config.delivery.backend_options)
    if config.delivery.backend == "smtp":
        options["concurrency"] = max(1, options.get("concurrency", 4) // processes)
        if options.get("rate_limit"):
            options["rate_limit"] = options["rate_limit"] / processes
    return options


def add_up(summaries: Sequence[RunSummary]) -> RunSummary:
    """One summary for the whole run: counts added, lists joined, sets merged."""
    total = RunSummary(dry_run=summaries[0].dry_run, skip_empty=summaries[0].skip_empty)
    for field in dataclasses.fields(RunSummary):
        values = [getattr(s, field.name) for s in summaries]
        first = values[0]
        if isinstance(first, bool):
            continue
        if isinstance(first, int):
            setattr(total, field.name, sum(values))
        elif isinstance(first, list):
            setattr(total, field.name, [item for value in values for item in value])
        elif isinstance(first, set):
            setattr(total, field.name, set().union(*values))
        elif field.name == "stopped":
            total.stopped = next((value for value in values if value), None)
    return total


def run_parallel(
    config: Config,
    subscribers: Sequence[Subscriber],
    *,
    processes: int,
    on_progress: ProgressCallback | None = None,
    **options,
) -> RunSummary:
    """`run_edition` over `processes` forked workers; raises the first worker's error after all have stopped."""
    processes = worker_count(config, processes)
    context = multiprocessing.get_context("fork")
    reports = context.Queue()
    workers = [
        context.Process(
            target=_work,
            args=(config, list(subscribers[index::processes]), index, processes, os.getpid(), reports, options),
            name=f"newsletter-send-{index}",
        )
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    summaries = [RunSummary(dry_run=False, skip_empty=options.get("skip_empty", True)) for _ in workers]
    finished: set[int] = set()
    errors: list[BaseException] = []
    try:
        while len(finished) < len(workers):
            try:
                kind, index, payload = reports.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for index, worker in enumerate(workers):
                    if index not in finished and worker.exitcode is not None and reports.empty():
                        finished.add(index)
                        errors.append(RuntimeError(f"send worker {index} died (exit code {worker.exitcode})"))
                continue
            if kind == "error":
                finished.add(index)
                errors.append(payload)
                continue
            summaries[index] = payload
            if kind == "done":
                finished.add(index)
            if on_progress is not None:
                on_progress(add_up(summaries))
    finally:
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]
    return add_up(summaries)


def _work(
    config: Config, share: list[Subscriber], index: int, processes: int, parent: int, reports, options: dict
) -> None:
    """In a worker process: send this share with its own store, backend and claims, reporting as it goes."""
    try:
        _die_with_parent(parent)
        claim = Claim(new_owner("send"), config.delivery.lease_seconds)
        backend = create_backend(
            config.delivery.backend, backend_options_for(config, processes), base_dir=config.base_dir
        )
        with Store(config.store_url) as store, backend:
            summary = run_edition(
                config, store, share, backend=backend, claim=claim,
                on_progress=lambda progress: reports.put(("progress", index, copy.deepcopy(progress))), **options,
            )
        reports.put(("done", index, summary))
    except BaseException as exc:  # noqa: BLE001 - the parent re-raises it
        try:
            reports.put(("error", index, exc))
        except Exception:  # an exception that cannot be pickled
            reports.put(("error", index, RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        reports.close()
        reports.join_thread()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when the parent dies; exit now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker outliving its parent finishes its share
        return
    if os.getppid() != parent:
        os._exit(1)
